/**
 * Bearer tokens whose signature verified, by their exact text (signature
 * included, so a changed byte is a miss). Saves the crypto.verify of every
 * reuse of a token; the time and claim checks still run per request. An entry
 * lives at most `ttlMs` (so a key removed from the JWKS stops counting soon)
 * and never past the token's `exp`. Bounded by entries and bytes (the token's text and its parsed claims
 * and header, which can be many times the text).
 */
import { LRUCache } from 'lru-cache';
import { jsonBytes } from '../resilience/byte-lru.js';

/** Generic over what a verification yields, so this file needs nothing from the verifier (no import cycle). */
type Verified = { readonly claims: Readonly<Record<string, unknown>>; readonly header?: Readonly<Record<string, unknown>> };

export class VerifiedTokenCache<V extends Verified = Verified> {
  private readonly cache: LRUCache<string, V>;

  constructor(maxEntries: number, maxBytes: number, private readonly ttlMs: number) {
    this.cache = new LRUCache({ max: maxEntries, maxSize: maxBytes, sizeCalculation: (v, k) => 2 * k.length + 512 + jsonBytes(v.claims) + (v.header === undefined ? 0 : jsonBytes(v.header)), ttl: ttlMs, ttlAutopurge: false });
  }

  get(token: string): V | undefined {
    return this.cache.get(token);
  }

  set(token: string, v: V, now: number): void {
    const exp = v.claims['exp'];
    const ttl = typeof exp === 'number' ? Math.min(this.ttlMs, exp * 1000 - now) : this.ttlMs;
    if (ttl > 0) this.cache.set(token, v, { ttl });
  }

  get size(): number {
    return this.cache.size;
  }
}
