/**
 * Per-Check state shared by the stages of one chain. Created once per Check;
 * the arrays start empty and are only filled by stages that need them.
 */
import type { RequestView } from './request-view.js';
import type { FailureMode, GatewayConfig } from '../config/schema.js';
import type { SubjectKind } from './events.js';
import type { FactKey } from './facts.js';

/** What a stage may know of the gateway judging the request (routing compiles the full one). */
export interface GatewayInfo {
  readonly name: string;
  readonly kind: GatewayConfig['kind'];
  /** Whether x-forwarded-client-cert may be believed on this gateway (`trustXfcc`). */
  readonly trustXfcc: boolean;
  readonly challenge: string;
}

/** What a stage may know of the route it runs on. */
export interface RouteInfo {
  readonly name: string;
  readonly failureMode: FailureMode;
  /** The route's stages in order (a stage may need to know what runs around it). */
  readonly stages: readonly { readonly type: string }[];
}

/** Who the caller is, as decided by an identity stage (mTLS, JWT, ...). */
export interface Identity {
  /** Stable subject, e.g. a user id or a SPIFFE id. */
  readonly subject: string;
  readonly kind: 'user' | 'service' | 'developer' | 'anonymous';
  /** How it was established: `mtls`, `jwt`, `oauth2`... */
  readonly source: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly groups: readonly string[];
  /** Device the request comes from, when known. */
  readonly deviceId?: string;
}

/** An outcome the pipeline reports (to FDS counters, metrics). */
export interface Outcome {
  /** `auth_failure`, `bad_signature`, `denied_scope`, `request`... */
  readonly event: string;
  /** Which subject it is about: `user`, `device`, `ip`, `client`, `cert`. */
  readonly subjectKind: SubjectKind;
  readonly subject: string;
}

export type HeaderPair = readonly [string, string];

export class CheckContext {
  identity: Identity | undefined = undefined;
  /** Facts stages pass to later stages, by slot (see facts.ts); allocated on the first `set`. */
  private facts: unknown[] | undefined = undefined;
  /** Headers to set on the upstream request (overwrite semantics). */
  readonly upstreamHeaders: HeaderPair[] = [];
  /** Request headers to remove before upstream (e.g. a verified token); undefined until a stage asks. */
  removeUpstream: string[] | undefined = undefined;
  /** Headers to add to the response the client gets. */
  readonly responseHeaders: HeaderPair[] = [];
  /** Extra fields for the audit line. */
  readonly audit: Record<string, unknown> = {};
  readonly outcomes: Outcome[] = [];
  /** Set when a stage failed open: the upstream gets `x-passgate-degraded: true`. */
  degraded = false;

  constructor(
    readonly request: RequestView,
    readonly gateway: GatewayInfo,
    readonly route: RouteInfo,
    /** Epoch ms by which the answer must be on the wire. */
    readonly deadline: number,
    readonly traceId: string,
    readonly startedAt: number,
  ) {}

  /** Milliseconds left before the answer is due (never negative). */
  remainingMs(now = Date.now()): number {
    const left = this.deadline - now;
    return left > 0 ? left : 0;
  }

  setUpstreamHeader(name: string, value: string): void {
    for (let i = 0; i < this.upstreamHeaders.length; i++) {
      if (this.upstreamHeaders[i]![0] === name) {
        this.upstreamHeaders[i] = [name, value];
        return;
      }
    }
    this.upstreamHeaders.push([name, value]);
  }

  addResponseHeader(name: string, value: string): void {
    this.responseHeaders.push([name, value]);
  }

  /** The fact a previous stage of this Check set, if any. */
  get<T>(key: FactKey<T>): T | undefined {
    return this.facts?.[key.slot] as T | undefined;
  }

  set<T>(key: FactKey<T>, value: T): void {
    (this.facts ??= [])[key.slot] = value;
  }

  /**
   * Records an outcome for FDS counters. `event` must be one the reporting
   * stage type declares in its `events` (test/core/events-declared.test.ts
   * checks every call site).
   */
  report(event: string, subjectKind: SubjectKind, subject: string): void {
    this.outcomes.push({ event, subjectKind, subject });
  }
}
