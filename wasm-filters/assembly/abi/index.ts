// Thin proxy-wasm ABI 0.2.1 binding: memory exports, the ABI marker, byte helpers,
// pairs decoding/encoding, logging, a small JSON reader for pluginConfig, local replies.
// It works on raw (ptr, len) byte ranges so a request allocates almost nothing.
import {
  proxy_log, proxy_get_buffer_bytes, proxy_get_header_map_pairs, proxy_send_local_response,
  proxy_define_metric, proxy_increment_metric,
} from "./imports";

export const LOG_TRACE: i32 = 0;
export const LOG_DEBUG: i32 = 1;
export const LOG_INFO: i32 = 2;
export const LOG_WARN: i32 = 3;
export const LOG_ERROR: i32 = 4;
export const LOG_CRITICAL: i32 = 5;

export const ACTION_CONTINUE: i32 = 0;
export const ACTION_PAUSE: i32 = 1;

export const MAP_REQUEST_HEADERS: i32 = 0;
export const MAP_RESPONSE_HEADERS: i32 = 2;
export const BUFFER_PLUGIN_CONFIGURATION: i32 = 7;

// Two words the host writes pointer/length results into; static, so no allocation per call.
export const OUT: usize = memory.data(16);

// ---- exports every filter re-exports -------------------------------------------------

// Envoy looks up `malloc` first, then `proxy_on_memory_allocate`. Both hand out TLSF
// blocks the filter frees with heap.free after reading what the host copied in.
export function malloc(size: usize): usize {
  return heap.alloc(size);
}
export function proxy_on_memory_allocate(size: usize): usize {
  return heap.alloc(size);
}
// Envoy picks the ABI from this export's name; the body is never called.
export function proxy_abi_version_0_2_1(): void {}

// Default no-op callbacks (the host calls them when exported; Envoy does too).
export function proxy_on_vm_start(root: u32, vmConfigLen: u32): bool {
  return true;
}
export function proxy_on_context_create(ctx: u32, parent: u32): void {}
export function proxy_on_done(ctx: u32): bool {
  return true;
}
// The minimal runtime never collects on its own and only marks from globals, so we
// collect at the end of each stream, when no managed object is live on the stack.
export function proxy_on_delete(ctx: u32): void {
  __collect();
}

// Replaces AssemblyScript's `env.abort` import (Envoy has none): log, then trap so the
// host marks the VM failed instead of carrying on with a broken heap.
export function abortHandler(msg: string | null, file: string | null, line: u32, col: u32): void {
  let s = "abort: ";
  if (msg !== null) s += msg;
  if (file !== null) s += " at " + file + ":" + u32str(line);
  log(LOG_CRITICAL, s);
  unreachable();
}

// ---- bytes -------------------------------------------------------------------------------

export function u32str(v: u32): string {
  if (v == 0) return "0";
  let s = "";
  while (v > 0) {
    s = String.fromCharCode(48 + (v % 10)) + s;
    v /= 10;
  }
  return s;
}

// Copies an ASCII string into a fresh heap block (caller frees). Non-ASCII becomes '?':
// every string we send (logs, details, bodies, header names) is ASCII by construction.
export function ascii(s: string): usize {
  const n = s.length;
  const p = heap.alloc(n > 0 ? <usize>n : 1);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    store<u8>(p + <usize>i, c < 128 ? <u8>c : 63);
  }
  return p;
}

// Case-sensitive compare of bytes with an ASCII literal.
export function eqLit(p: usize, n: usize, lit: string): bool {
  return n == <usize>lit.length && startsLit(p, n, lit);
}

export function startsLit(p: usize, n: usize, lit: string): bool {
  const m = <usize>lit.length;
  if (n < m) return false;
  for (let i: usize = 0; i < m; i++) {
    if (<i32>load<u8>(p + i) != lit.charCodeAt(<i32>i)) return false;
  }
  return true;
}

export function eqBytes(a: usize, an: usize, b: usize, bn: usize): bool {
  return an == bn && memory.compare(a, b, an) == 0;
}

export function bufPtr(b: ArrayBuffer): usize {
  return changetype<usize>(b);
}
export function bufLen(b: ArrayBuffer): usize {
  return <usize>b.byteLength;
}

export function copyBytes(p: usize, n: usize): ArrayBuffer {
  const b = new ArrayBuffer(<i32>n);
  memory.copy(changetype<usize>(b), p, n);
  return b;
}

// An ASCII literal as bytes (header names the filters compare and send).
export function lit(s: string): ArrayBuffer {
  const p = ascii(s);
  const b = copyBytes(p, <usize>s.length);
  heap.free(p);
  return b;
}

// ASCII-lowercases in place (header names from pluginConfig).
export function lowerInPlace(b: ArrayBuffer): void {
  const p = bufPtr(b);
  for (let i: usize = 0; i < bufLen(b); i++) {
    const c = load<u8>(p + i);
    if (c >= 65 && c <= 90) store<u8>(p + i, c + 32);
  }
}

export function isHex(c: u32): bool {
  return (c - 48 < 10) || (c - 97 < 6);
}

// ---- logging, metrics, local replies ---------------------------------------------------

export function log(level: i32, msg: string): void {
  const p = ascii(msg);
  proxy_log(level, p, <usize>msg.length);
  heap.free(p);
}

export function defineCounter(name: string): i32 {
  const p = ascii(name);
  const r = proxy_define_metric(0, p, <usize>name.length, OUT);
  heap.free(p);
  return r == 0 ? load<i32>(OUT) : -1;
}

// Envoy refuses increments <= 0 (BAD_ARGUMENT), so zero is skipped here.
export function incCounter(id: i32, by: i64 = 1): void {
  if (id >= 0 && by > 0) proxy_increment_metric(id, by);
}

// grpc_status -1: not a gRPC reply (Envoy treats anything outside 0..16 as none).
export function sendLocalReply(status: i32, details: string, body: string): void {
  const d = ascii(details);
  const b = ascii(body);
  proxy_send_local_response(status, d, <usize>details.length, b, <usize>body.length, 0, 0, -1);
  heap.free(d);
  heap.free(b);
}

// ---- header pairs ---------------------------------------------------------------------

// Decoded view over a pairs buffer the host allocated with our malloc:
// u32 count, count x (u32 keyLen, u32 valueLen), then key\0 value\0 ...
export class Pairs {
  base: usize = 0; // heap block to free (0 when the host returned nothing)
  count: i32 = 0;
  // Parallel offsets: key ptr/len and value ptr/len for header i.
  kp: StaticArray<usize> = new StaticArray<usize>(0);
  kl: StaticArray<usize> = new StaticArray<usize>(0);
  vp: StaticArray<usize> = new StaticArray<usize>(0);
  vl: StaticArray<usize> = new StaticArray<usize>(0);
  bytes: usize = 0; // sum of key and value lengths (what Envoy's byteSize counts)

  free(): void {
    if (this.base != 0) heap.free(this.base);
    this.base = 0;
  }
}

// One host call for the whole map. Returns null when the map is unavailable.
export function getPairs(map: i32): Pairs | null {
  if (proxy_get_header_map_pairs(map, OUT, OUT + 4) != 0) return null;
  const base = load<usize>(OUT);
  const size = load<usize>(OUT + 4);
  const r = new Pairs();
  if (base == 0 || size < 4) return r;
  r.base = base;
  const n = load<u32>(base);
  // Reject a count that cannot fit (defends against a misbehaving host).
  if (<u64>n * 10 + 4 > <u64>size) { r.free(); return r; }
  const count = <i32>n;
  r.count = count;
  r.kp = new StaticArray<usize>(count);
  r.kl = new StaticArray<usize>(count);
  r.vp = new StaticArray<usize>(count);
  r.vl = new StaticArray<usize>(count);
  let d = base + 4 + 8 * <usize>count;
  const end = base + size;
  let bytes: usize = 0;
  for (let i = 0; i < count; i++) {
    const kl = <usize>load<u32>(base + 4 + 8 * <usize>i);
    const vl = <usize>load<u32>(base + 8 + 8 * <usize>i);
    if (d + kl + vl + 2 > end) { r.count = i; break; }
    unchecked(r.kp[i] = d);
    unchecked(r.kl[i] = kl);
    d += kl + 1;
    unchecked(r.vp[i] = d);
    unchecked(r.vl[i] = vl);
    d += vl + 1;
    bytes += kl + vl;
  }
  r.bytes = bytes;
  return r;
}

// Builds a pairs buffer (caller frees with heap.free) from parallel ranges, skipping
// entries whose keep flag is 0.
export function encodePairs(
  count: i32, kp: StaticArray<usize>, kl: StaticArray<usize>, vp: StaticArray<usize>,
  vl: StaticArray<usize>, keep: StaticArray<u8>, outLen: usize,
): usize {
  let n = 0;
  let size: usize = 4;
  for (let i = 0; i < count; i++) {
    if (unchecked(keep[i]) == 0) continue;
    n++;
    size += 10 + unchecked(kl[i]) + unchecked(vl[i]);
  }
  const p = heap.alloc(size);
  store<u32>(p, <u32>n);
  let h = p + 4;
  let d = p + 4 + 8 * <usize>n;
  for (let i = 0; i < count; i++) {
    if (unchecked(keep[i]) == 0) continue;
    const k = unchecked(kl[i]);
    const v = unchecked(vl[i]);
    store<u32>(h, <u32>k);
    store<u32>(h + 4, <u32>v);
    h += 8;
    memory.copy(d, unchecked(kp[i]), k);
    d += k;
    store<u8>(d++, 0);
    memory.copy(d, unchecked(vp[i]), v);
    d += v;
    store<u8>(d++, 0);
  }
  store<usize>(outLen, size);
  return p;
}

// ---- plugin configuration ----------------------------------------------------------------

// Reads pluginConfig (buffer 7). Returns a heap block (caller frees) and its length in OUT+4.
export function readPluginConfig(len: u32): usize {
  store<usize>(OUT + 4, 0);
  if (len == 0) return 0;
  if (proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, <i32>len, OUT, OUT + 4) != 0) return 0;
  return load<usize>(OUT);
}

// Minimal JSON tree: enough for pluginConfig objects (strings, numbers, bools, arrays).
export const J_NULL: u8 = 0;
export const J_BOOL: u8 = 1;
export const J_NUM: u8 = 2;
export const J_STR: u8 = 3;
export const J_ARR: u8 = 4;
export const J_OBJ: u8 = 5;

export class JValue {
  kind: u8 = J_NULL;
  b: bool = false;
  num: f64 = 0;
  str: ArrayBuffer | null = null; // UTF-8 bytes, escapes decoded
  items: Array<JValue> | null = null; // array items or object values
  keys: Array<ArrayBuffer> | null = null; // object keys
}

export class JsonParser {
  p: usize;
  end: usize;
  ok: bool = true;
  depth: i32 = 0;

  constructor(p: usize, n: usize) {
    this.p = p;
    this.end = p + n;
  }

  // Parses a whole document; null on any syntax error or trailing garbage.
  parse(): JValue | null {
    const v = this.value();
    this.ws();
    if (!this.ok || this.p != this.end) return null;
    return v;
  }

  ws(): void {
    while (this.p < this.end) {
      const c = load<u8>(this.p);
      if (c == 32 || c == 9 || c == 10 || c == 13) this.p++;
      else break;
    }
  }

  peek(): i32 {
    return this.p < this.end ? <i32>load<u8>(this.p) : -1;
  }

  lit(s: string): bool {
    if (!startsLit(this.p, this.end - this.p, s)) { this.ok = false; return false; }
    this.p += <usize>s.length;
    return true;
  }

  value(): JValue {
    const v = new JValue();
    this.ws();
    if (++this.depth > 32) { this.ok = false; return v; }
    const c = this.peek();
    if (c == 123) { // {
      v.kind = J_OBJ;
      const keys = new Array<ArrayBuffer>();
      const items = new Array<JValue>();
      this.p++;
      this.ws();
      if (this.peek() == 125) this.p++;
      else {
        while (this.ok) {
          this.ws();
          if (this.peek() != 34) { this.ok = false; break; }
          keys.push(this.string());
          this.ws();
          if (this.peek() != 58) { this.ok = false; break; }
          this.p++;
          items.push(this.value());
          if (this.listEnd(125)) break;
        }
      }
      v.keys = keys;
      v.items = items;
    } else if (c == 91) { // [
      v.kind = J_ARR;
      const items = new Array<JValue>();
      this.p++;
      this.ws();
      if (this.peek() == 93) this.p++;
      else {
        while (this.ok) {
          items.push(this.value());
          if (this.listEnd(93)) break;
        }
      }
      v.items = items;
    } else if (c == 34) {
      v.kind = J_STR;
      v.str = this.string();
    } else if (c == 116) {
      v.kind = J_BOOL; v.b = true; this.lit("true");
    } else if (c == 102) {
      v.kind = J_BOOL; this.lit("false");
    } else if (c == 110) {
      this.lit("null");
    } else if (c == 45 || (c >= 48 && c <= 57)) {
      v.kind = J_NUM;
      v.num = this.number();
    } else {
      this.ok = false;
    }
    this.depth--;
    return v;
  }

  // After an object member or array item: true at the closing bracket; a comma continues;
  // anything else is a syntax error.
  listEnd(close: i32): bool {
    this.ws();
    const d = this.peek();
    this.p++;
    if (d == close) return true;
    if (d != 44) this.ok = false;
    return false;
  }

  number(): f64 {
    let neg = false;
    if (this.peek() == 45) { neg = true; this.p++; }
    let v: f64 = 0;
    let digits = 0;
    while (this.peek() >= 48 && this.peek() <= 57) { v = v * 10 + <f64>(this.peek() - 48); this.p++; digits++; }
    if (digits == 0) this.ok = false;
    if (this.peek() == 46) {
      this.p++;
      let scale: f64 = 0.1;
      let fd = 0;
      while (this.peek() >= 48 && this.peek() <= 57) { v += scale * <f64>(this.peek() - 48); scale /= 10; this.p++; fd++; }
      if (fd == 0) this.ok = false;
    }
    if (this.peek() == 101 || this.peek() == 69) {
      this.p++;
      let eneg = false;
      if (this.peek() == 43 || this.peek() == 45) { eneg = this.peek() == 45; this.p++; }
      let e = 0;
      let ed = 0;
      while (this.peek() >= 48 && this.peek() <= 57) { if (e < 400) e = e * 10 + (this.peek() - 48); this.p++; ed++; }
      if (ed == 0) this.ok = false;
      for (let i = 0; i < e; i++) v = eneg ? v / 10 : v * 10;
    }
    return neg ? -v : v;
  }

  hex4(): i32 {
    let r = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.peek();
      this.p++;
      let d = -1;
      if (c >= 48 && c <= 57) d = c - 48;
      else if (c >= 97 && c <= 102) d = c - 87;
      else if (c >= 65 && c <= 70) d = c - 55;
      if (d < 0) { this.ok = false; return 0; }
      r = (r << 4) | d;
    }
    return r;
  }

  // Decodes a JSON string into UTF-8 bytes.
  string(): ArrayBuffer {
    this.p++; // opening quote
    // Decoded output is never longer than the source span (escapes shrink or keep size).
    const start = this.p;
    let q = start;
    while (q < this.end && load<u8>(q) != 34) q += load<u8>(q) == 92 ? 2 : 1;
    const tmp = heap.alloc(q - start + 1);
    let o = tmp;
    while (this.ok) {
      const c = this.peek();
      if (c < 0 || c < 32) { this.ok = false; break; }
      this.p++;
      if (c == 34) break;
      if (c != 92) { store<u8>(o++, <u8>c); continue; }
      const e = this.peek();
      this.p++;
      if (e == 34 || e == 92 || e == 47) store<u8>(o++, <u8>e);
      else if (e == 98) store<u8>(o++, 8);
      else if (e == 102) store<u8>(o++, 12);
      else if (e == 110) store<u8>(o++, 10);
      else if (e == 114) store<u8>(o++, 13);
      else if (e == 116) store<u8>(o++, 9);
      else if (e == 117) {
        const u = this.hex4();
        // \uXXXX is 6 source bytes and at most 3 UTF-8 bytes (surrogates become U+FFFD).
        if (u < 0x80) store<u8>(o++, <u8>u);
        else if (u < 0x800) { store<u8>(o++, <u8>(0xc0 | (u >> 6))); store<u8>(o++, <u8>(0x80 | (u & 63))); }
        else {
          const w = (u >= 0xd800 && u < 0xe000) ? 0xfffd : u;
          store<u8>(o++, <u8>(0xe0 | (w >> 12)));
          store<u8>(o++, <u8>(0x80 | ((w >> 6) & 63)));
          store<u8>(o++, <u8>(0x80 | (w & 63)));
        }
      } else { this.ok = false; break; }
    }
    const r = copyBytes(tmp, o - tmp);
    heap.free(tmp);
    return r;
  }
}

// Looks up an object member by ASCII key.
export function jget(obj: JValue, key: string): JValue | null {
  const keys = obj.keys;
  const items = obj.items;
  if (keys === null || items === null) return null;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (eqLit(bufPtr(k), bufLen(k), key)) return items[i];
  }
  return null;
}

// The first key of obj that is not in `allowed` (null when all are known).
// Unknown keys are refused so a typo in a security setting fails loudly.
export function unknownKey(obj: JValue, allowed: Array<string>): string | null {
  const keys = obj.keys;
  if (keys === null) return null;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    let found = false;
    for (let j = 0; j < allowed.length; j++) {
      if (eqLit(bufPtr(k), bufLen(k), allowed[j])) { found = true; break; }
    }
    if (!found) {
      let s = "";
      for (let j: usize = 0; j < bufLen(k); j++) s += String.fromCharCode(load<u8>(bufPtr(k) + j));
      return s;
    }
  }
  return null;
}

// Copies a string array of header names, lowercased. Null when not an array of strings.
export function lowerNames(v: JValue): Array<ArrayBuffer> | null {
  if (v.kind != J_ARR) return null;
  const items = v.items!;
  const out = new Array<ArrayBuffer>();
  for (let i = 0; i < items.length; i++) {
    const it = items[i];
    if (it.kind != J_STR) return null;
    const s = it.str!;
    lowerInPlace(s);
    out.push(s);
  }
  return out;
}

// Logs why pluginConfig was refused; returns false for on_configure to return (Envoy then
// rejects the plugin).
export function configError(filter: string, msg: string): bool {
  log(LOG_ERROR, "passgate " + filter + ": bad pluginConfig: " + msg + "; fix the WasmPlugin pluginConfig");
  return false;
}

// Reads pluginConfig (on_configure's length) as a JSON object whose keys are all in
// `allowed`. No config reads as {}. Null after logging the problem.
export function readConfigObject(filter: string, len: u32, allowed: Array<string>): JValue | null {
  const p = readPluginConfig(len);
  const n = load<usize>(OUT + 4);
  if (n == 0) {
    const empty = new JValue();
    empty.kind = J_OBJ;
    return empty;
  }
  const cfg = new JsonParser(p, n).parse();
  heap.free(p);
  if (cfg === null) { configError(filter, "not valid JSON"); return null; }
  if (cfg.kind != J_OBJ) { configError(filter, "must be a JSON object"); return null; }
  const unknown = unknownKey(cfg, allowed);
  if (unknown !== null) { configError(filter, "unknown key \"" + unknown + "\""); return null; }
  return cfg;
}

// A non-negative integer (as used by limits); -1 when the value is anything else.
export function jint(v: JValue): i64 {
  if (v.kind != J_NUM) return -1;
  const n = v.num;
  if (n < 0 || n > 4294967295 || Math.floor(n) != n) return -1;
  return <i64>n;
}
