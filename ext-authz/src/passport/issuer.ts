/**
 * Signs Passports and keeps them: a Passport is cached per (facts fingerprint,
 * device, auth method, level, relay facts) and reused until `reuseFraction`
 * of its lifetime has passed, so a warm Check does a map read and no crypto.
 * One signature in flight per key, so a burst of cold Checks signs once.
 */
import { randomUUID } from 'node:crypto';
import { CompactSign } from 'jose';
import type { LRUCache } from 'lru-cache';
import { byteLru, stringBytes } from '../resilience/byte-lru.js';
import type { PassportClaims } from './model.js';
import { buildClaims, protectedHeader, type ClaimsInput } from './claims.js';
import type { KeyRing } from './keys.js';

export interface IssuedPassport {
  readonly token: string;
  readonly claims: PassportClaims;
  /** Epoch ms after which a fresh Passport is signed instead. */
  readonly reuseUntil: number;
  /** Small, shared audit record: no per-Check allocation. */
  readonly audit: { readonly kid: string; readonly jti: string };
}

export type IssueInput = Omit<ClaimsInput, 'issuer' | 'audience' | 'jti'>;

const encoder = new TextEncoder();

export class PassportIssuer {
  private readonly cache: LRUCache<string, IssuedPassport>;
  private readonly pending = new Map<string, Promise<IssuedPassport>>();
  private readonly header: { alg: string; typ: string; kid: string };
  signatures = 0;

  constructor(
    readonly ring: KeyRing,
    private readonly issuer: string,
    private readonly audience: string | readonly string[],
    private readonly reuseFraction: number,
    maxEntries: number,
    private readonly maxBytes: number,
    private readonly onSign?: () => void,
    maxCacheBytes = 64 * 1024 * 1024,
  ) {
    // A token and its claims are about the same size; the claims object costs roughly twice its JSON.
    this.cache = byteLru<string, IssuedPassport>({ max: maxEntries, maxBytes: maxCacheBytes, sizeOf: (p) => 256 + 3 * stringBytes(p.token) });
    this.header = protectedHeader(ring.active.alg, ring.active.kid);
  }

  /** A cached Passport still worth reusing, if any. */
  cached(key: string, nowMs: number): IssuedPassport | undefined {
    const hit = this.cache.get(key);
    return hit !== undefined && nowMs < hit.reuseUntil ? hit : undefined;
  }

  /** Signs (once per key at a time) and caches. Rejects only on a signing fault. */
  sign(key: string, input: IssueInput): Promise<IssuedPassport> {
    const pending = this.pending.get(key);
    if (pending !== undefined) return pending;
    const p = this.signNow(input).then((issued) => {
      this.cache.set(key, issued);
      return issued;
    });
    this.pending.set(key, p);
    void p.finally(() => this.pending.delete(key)).catch(() => undefined);
    return p;
  }

  /**
   * One throwaway signature with the active key (start-up warm-up): the first
   * real Passport then finds the key material and the signing path ready.
   * Neither cached nor counted.
   */
  async warm(): Promise<void> {
    await new CompactSign(encoder.encode('{"warm-up":true}')).setProtectedHeader(this.header).sign(this.ring.active.privateKey);
  }

  private async signNow(input: IssueInput): Promise<IssuedPassport> {
    const jti = randomUUID();
    const claims = buildClaims({ ...input, issuer: this.issuer, audience: this.audience, jti });
    const token = await new CompactSign(encoder.encode(JSON.stringify(claims))).setProtectedHeader(this.header).sign(this.ring.active.privateKey);
    this.signatures++;
    this.onSign?.();
    // The config-load size check makes this unreachable; kept so a bug can never emit an oversized header.
    if (token.length > this.maxBytes) throw new Error(`Passport is ${token.length} bytes, over limits.maxHeaderBytes (${this.maxBytes})`);
    const lifetimeMs = (claims.exp - claims.iat) * 1000;
    return { token, claims, reuseUntil: claims.iat * 1000 + lifetimeMs * this.reuseFraction, audit: { kid: this.ring.active.kid, jti } };
  }
}
