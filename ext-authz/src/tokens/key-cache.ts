/**
 * Proof keys (DPoP `jwk` headers) imported once and reused by thumbprint of
 * the header text, so a client's second proof costs no import. Bounded by
 * entries and by bytes; an evicted key is simply imported again.
 */
import { LRUCache } from 'lru-cache';
import { importPublicJwk, keyBytes, type JwkImport } from './jwk.js';

export class ProofKeyCache {
  private readonly cache: LRUCache<string, JwkImport & { ok: true }>;

  constructor(maxEntries: number, maxBytes: number) {
    this.cache = new LRUCache({ max: maxEntries, maxSize: maxBytes, sizeCalculation: (v, k) => keyBytes(v.key) + k.length * 2 });
  }

  /** `jwk` is the parsed header member; `raw` a stable text of it (its JSON), the cache key. */
  get(jwk: unknown): JwkImport {
    const raw = JSON.stringify(jwk);
    if (raw === undefined || raw.length > 4096) return { ok: false, reason: 'invalid_jwk', detail: 'jwk is missing or larger than 4096 bytes' };
    const hit = this.cache.get(raw);
    if (hit) return hit;
    const r = importPublicJwk(jwk);
    if (r.ok) this.cache.set(raw, r);
    return r;
  }

  get size(): number {
    return this.cache.size;
  }
}
