// A header map with Envoy's HeaderMapImpl semantics as seen through proxy-wasm.
import { INLINE_HEADERS } from "./abi.js";
import type { HeaderList } from "./pairs.js";

/** ASCII-only lowercasing, like Envoy's LowerCaseString (no Unicode folding). */
export function lowerKey(k: string): string {
  // Every header of every stream passes here and is nearly always lowercase already:
  // a char scan is cheaper than a regex test.
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    if (c >= 65 && c <= 90) return k.replace(/[A-Z]/g, (u) => String.fromCharCode(u.charCodeAt(0) + 32));
  }
  return k;
}

export class HeaderMap {
  readonly entries: HeaderList = [];

  /** Builds a map the way Envoy's codecs do: every header goes through `add`. */
  static from(list: Iterable<readonly [string, string]>): HeaderMap {
    const m = new HeaderMap();
    for (const [k, v] of list) m.add(k, v);
    return m;
  }

  get size(): number {
    return this.entries.length;
  }

  /** Bytes of keys plus values (what Envoy's byteSize and get_header_map_size report). */
  byteSize(): number {
    let n = 0;
    for (const [k, v] of this.entries) n += k.length + v.length;
    return n;
  }

  /** First value only, as Envoy's get does. */
  get(key: string): string | undefined {
    const k = lowerKey(key);
    for (const e of this.entries) if (e[0] === k) return e[1];
    return undefined;
  }

  getAll(key: string): string[] {
    const k = lowerKey(key);
    return this.entries.filter((e) => e[0] === k).map((e) => e[1]);
  }

  /** Inline headers merge into the existing entry; others get a new entry. */
  add(key: string, value: string): void {
    const k = lowerKey(key);
    if (INLINE_HEADERS.has(k)) {
      for (const e of this.entries) {
        if (e[0] === k) {
          e[1] = e[1] === "" ? value : e[1] + (k === "cookie" ? "; " : ",") + value;
          return;
        }
      }
    }
    this.entries.push([k, value]);
  }

  /** Envoy's setCopy: an existing inline header is set in place; otherwise remove all, append. */
  replace(key: string, value: string): void {
    const k = lowerKey(key);
    if (INLINE_HEADERS.has(k)) {
      for (const e of this.entries) {
        if (e[0] === k) { e[1] = value; return; }
      }
    }
    this.remove(k);
    this.entries.push([k, value]);
  }

  remove(key: string): void {
    const k = lowerKey(key);
    for (let i = this.entries.length - 1; i >= 0; i--) if (this.entries[i]![0] === k) this.entries.splice(i, 1);
  }

  clear(): void {
    this.entries.length = 0;
  }

  toList(): HeaderList {
    return this.entries.map(([k, v]) => [k, v]);
  }
}
