/**
 * Every cache in the service is bounded by entries AND by bytes (a few large
 * hostile values must not exhaust the heap). This is the one constructor they
 * use: an lru-cache with `maxSize` and a per-entry size estimate.
 */
import { LRUCache } from 'lru-cache';

/** Fixed cost we charge per entry on top of its payload: key slot, node, object headers. */
export const ENTRY_OVERHEAD_BYTES = 96;

/** Heap bytes of a JS string, conservatively (two bytes per UTF-16 unit plus a header). */
export function stringBytes(s: string): number {
  return 16 + 2 * s.length;
}

export interface ByteLruOptions<K, V> {
  /** Most entries kept. */
  readonly max: number;
  /** Most estimated bytes kept (keys, values and per-entry overhead). */
  readonly maxBytes: number;
  /** Estimated heap bytes of one value (the key and overhead are added here). */
  readonly sizeOf: (value: V, key: K) => number;
  /** Optional time to live in ms. */
  readonly ttl?: number;
}

/** Keys are strings or numbers; a string key is charged by its length. */
export function byteLru<K extends string | number, V extends NonNullable<unknown>>(o: ByteLruOptions<K, V>): LRUCache<K, V> {
  return new LRUCache<K, V>({
    max: Math.max(1, o.max),
    maxSize: Math.max(1, o.maxBytes),
    // An entry larger than the whole budget is not stored (lru-cache refuses it) rather than flushing everything.
    maxEntrySize: Math.max(1, o.maxBytes),
    sizeCalculation: (v, k) => Math.max(1, Math.ceil(o.sizeOf(v, k) + (typeof k === 'string' ? stringBytes(k) : 8) + ENTRY_OVERHEAD_BYTES)),
    ...(o.ttl !== undefined && o.ttl > 0 ? { ttl: o.ttl } : {}),
  });
}
