/**
 * Proof keys (DPoP `jwk` headers) imported once and reused by their RFC 7638
 * thumbprint, so a client's second proof costs no import, and one key sent with
 * ever other extra members (`kid`, `alg`...) is one entry, not an import each
 * (each import holds ~6 KB of OpenSSL memory until collected). Bounded by
 * entries and by bytes; an evicted key is simply imported again.
 */
import { LRUCache } from 'lru-cache';
import { importPublicJwk, keyBytes, publicJwkCacheKey, type JwkImport } from './jwk.js';

export class ProofKeyCache {
  private readonly cache: LRUCache<string, JwkImport & { ok: true }>;

  constructor(maxEntries: number, maxBytes: number) {
    this.cache = new LRUCache({ max: maxEntries, maxSize: maxBytes, sizeCalculation: (v, k) => keyBytes(v.key) + k.length * 2 });
  }

  /** `jwk` is the parsed header member. */
  get(jwk: unknown): JwkImport {
    const raw = JSON.stringify(jwk);
    if (raw === undefined || raw.length > 4096) return { ok: false, reason: 'invalid_jwk', detail: 'jwk is missing or larger than 4096 bytes' };
    const key = publicJwkCacheKey(jwk);
    const hit = key === undefined ? undefined : this.cache.get(key);
    if (hit) return hit;
    const r = importPublicJwk(jwk);
    if (r.ok) this.cache.set(r.thumbprint, r);
    return r;
  }

  get size(): number {
    return this.cache.size;
  }
}
