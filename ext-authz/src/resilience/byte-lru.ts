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

/**
 * Heap a parsed JSON value holds (claims, headers): a few bytes of JSON can be tens of bytes of objects
 * (`{}` is 3 bytes of text, ~60 of heap), so caches of parsed JSON count this, not the text.
 */
export function jsonBytes(v: unknown, depth = 0): number {
  if (typeof v === 'string') return stringBytes(v);
  if (v === null || typeof v !== 'object') return 16;
  // JSON from a bounded token nests only so deep; past this, charge a flat amount rather than recurse.
  if (depth > 32) return 1024;
  if (Array.isArray(v)) {
    let n = 32;
    for (const x of v) n += 8 + jsonBytes(x, depth + 1);
    return n;
  }
  let n = 64;
  for (const k in v) n += 32 + stringBytes(k) + jsonBytes((v as Record<string, unknown>)[k], depth + 1);
  return n;
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
