/**
 * Where the user and device facts behind an identity come from. `lookup`
 * answers synchronously when it can (static directory, fresh cache entry)
 * and never throws: faults are `{kind: 'error'}` results.
 */
import { createHash } from 'node:crypto';
import type { Identity } from '../../pipeline/context.js';
import type { LookupResult } from './cached-http.js';

export interface UserFacts {
  readonly id: string;
  readonly roles: readonly string[];
  readonly scopes: readonly string[];
  /** Epoch seconds; when absent the Passport uses the fetch time / its own expiry. */
  readonly created?: number;
  readonly expires?: number;
}

export interface DeviceFacts {
  readonly id: string;
  readonly type: string;
  readonly os?: string;
  readonly appVersion?: string;
  readonly created?: number;
  readonly expires?: number;
}

export interface SourceFacts {
  readonly user: UserFacts;
  readonly device?: DeviceFacts;
  /**
   * Short hash of user + device facts, computed once per fetch: the Passport
   * cache key, so changed facts get a new Passport at once while a refetch
   * of identical facts keeps reusing the cached one.
   */
  readonly fingerprint: string;
  /** Epoch seconds when the facts were obtained. */
  readonly fetchedAt: number;
}

export interface PassportSource {
  readonly type: 'http' | 'static';
  lookup(identity: Identity, remainingMs: number): LookupResult<SourceFacts> | Promise<LookupResult<SourceFacts>>;
  close?(): void;
}

export function factsFingerprint(user: UserFacts, device: DeviceFacts | undefined): string {
  return createHash('sha256').update(JSON.stringify([user, device ?? null])).digest('base64url').slice(0, 22);
}
