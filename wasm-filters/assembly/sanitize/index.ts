// sanitize: strips headers a client must not set, refuses request smuggling shapes,
// control characters, bad names and oversized header sets; trims values; strips
// fingerprinting response headers. Reads all request headers with one host call.
import {
  proxy_get_property, proxy_set_header_map_pairs, proxy_remove_header_map_value,
} from "../abi/imports";
import {
  OUT, eqLit, startsLit, eqBytes, bufPtr, bufLen, getPairs, encodePairs, lit, readConfigObject,
  configError, J_STR, J_BOOL, jget, jint, lowerNames, sendLocalReply, defineCounter, incCounter, Pairs,
  ACTION_CONTINUE, ACTION_PAUSE, MAP_REQUEST_HEADERS, MAP_RESPONSE_HEADERS,
} from "../abi/index";

export {
  malloc, proxy_on_memory_allocate, proxy_abi_version_0_2_1, proxy_on_vm_start,
  proxy_on_context_create, proxy_on_done, proxy_on_delete,
} from "../abi/index";

const UNDERSCORE_DROP: i32 = 0;
const UNDERSCORE_REJECT: i32 = 1;
const UNDERSCORE_ALLOW: i32 = 2;

// Active configuration (replaced as a whole by on_configure).
let extraNames = new Array<ArrayBuffer>();
let extraPrefixes = new Array<ArrayBuffer>();
let responseNames = defaultResponseNames();
let underscorePolicy = UNDERSCORE_DROP;
const DEFAULT_MAX_HEADERS: i64 = 100; // Envoy's default max_headers_count
const DEFAULT_MAX_BYTES: i64 = 60 * 1024; // Envoy's default max_request_headers_kb
let maxHeaders = DEFAULT_MAX_HEADERS;
let maxBytes = DEFAULT_MAX_BYTES;
let trimWhitespace = true;
let rejectedMetric: i32 = -1;
let strippedMetric: i32 = -1;

function defaultResponseNames(): Array<ArrayBuffer> {
  const a = new Array<ArrayBuffer>();
  a.push(lit("server"));
  a.push(lit("x-powered-by"));
  a.push(lit("x-envoy-upstream-service-time"));
  return a;
}

const KEYS: Array<string> = [
  "removeRequestHeaders", "removeRequestHeaderPrefixes", "removeResponseHeaders",
  "underscoreHeaders", "maxRequestHeaders", "maxRequestHeaderBytes", "trimWhitespace",
];

const FILTER = "sanitize";

// Returning false makes Envoy (and our host) refuse the plugin.
export function proxy_on_configure(root: u32, len: u32): bool {
  let names = new Array<ArrayBuffer>();
  let prefixes = new Array<ArrayBuffer>();
  let resp = defaultResponseNames();
  let policy = UNDERSCORE_DROP;
  let mh = DEFAULT_MAX_HEADERS;
  let mb = DEFAULT_MAX_BYTES;
  let trim = true;
  const cfg = readConfigObject(FILTER, len, KEYS);
  if (cfg === null) return false;
  let v = jget(cfg, "removeRequestHeaders");
  if (v !== null) {
    const l = lowerNames(v);
    if (l === null) return configError(FILTER, "removeRequestHeaders must be an array of strings");
    names = l;
  }
  v = jget(cfg, "removeRequestHeaderPrefixes");
  if (v !== null) {
    const l = lowerNames(v);
    if (l === null) return configError(FILTER, "removeRequestHeaderPrefixes must be an array of strings");
    for (let i = 0; i < l.length; i++) {
      if (l[i].byteLength == 0) return configError(FILTER, "removeRequestHeaderPrefixes must not contain \"\" (it would strip every header)");
    }
    prefixes = l;
  }
  v = jget(cfg, "removeResponseHeaders");
  if (v !== null) {
    const l = lowerNames(v);
    if (l === null) return configError(FILTER, "removeResponseHeaders must be an array of strings");
    resp = l;
  }
  v = jget(cfg, "underscoreHeaders");
  if (v !== null) {
    const s = v.kind == J_STR ? v.str! : new ArrayBuffer(0);
    if (eqLit(bufPtr(s), bufLen(s), "drop")) policy = UNDERSCORE_DROP;
    else if (eqLit(bufPtr(s), bufLen(s), "reject")) policy = UNDERSCORE_REJECT;
    else if (eqLit(bufPtr(s), bufLen(s), "allow")) policy = UNDERSCORE_ALLOW;
    else return configError(FILTER, "underscoreHeaders must be \"drop\", \"reject\" or \"allow\"");
  }
  v = jget(cfg, "maxRequestHeaders");
  if (v !== null) {
    mh = jint(v);
    if (mh <= 0) return configError(FILTER, "maxRequestHeaders must be a positive integer");
  }
  v = jget(cfg, "maxRequestHeaderBytes");
  if (v !== null) {
    mb = jint(v);
    if (mb <= 0) return configError(FILTER, "maxRequestHeaderBytes must be a positive integer");
  }
  v = jget(cfg, "trimWhitespace");
  if (v !== null) {
    if (v.kind != J_BOOL) return configError(FILTER, "trimWhitespace must be true or false");
    trim = v.b;
  }
  extraNames = names;
  extraPrefixes = prefixes;
  responseNames = resp;
  underscorePolicy = policy;
  maxHeaders = mh;
  maxBytes = mb;
  trimWhitespace = trim;
  if (rejectedMetric < 0) rejectedMetric = defineCounter("passgate_sanitize_rejected");
  if (strippedMetric < 0) strippedMetric = defineCounter("passgate_sanitize_stripped_headers");
  __collect(); // drop the JSON tree and the previous configuration
  return true;
}

// Headers only the gateway may set (Envoy does not strip these itself).
function isSpoofable(k: usize, n: usize): bool {
  if (n == 0) return false;
  const c = load<u8>(k);
  if (c == 120) { // 'x'
    if (startsLit(k, n, "x-passgate-") || startsLit(k, n, "x-original-")) return true;
    return eqLit(k, n, "x-passport") || eqLit(k, n, "x-real-ip") || eqLit(k, n, "x-client-ip") ||
      eqLit(k, n, "x-forwarded-host") || eqLit(k, n, "x-forwarded-port") ||
      eqLit(k, n, "x-forwarded-prefix");
  }
  if (c == 116) return eqLit(k, n, "true-client-ip");
  if (c == 102) return eqLit(k, n, "forwarded");
  return false;
}

function isConfigured(k: usize, n: usize): bool {
  for (let i = 0; i < extraNames.length; i++) {
    const b = unchecked(extraNames[i]);
    if (eqBytes(k, n, bufPtr(b), bufLen(b))) return true;
  }
  for (let i = 0; i < extraPrefixes.length; i++) {
    const b = unchecked(extraPrefixes[i]);
    const m = bufLen(b);
    if (n >= m && memory.compare(k, bufPtr(b), m) == 0) return true;
  }
  return false;
}

// RFC 9110 token characters (a leading ':' is allowed for HTTP/2 pseudo-headers).
function isTchar(c: u32): bool {
  if (c - 97 < 26 || c - 65 < 26 || c - 48 < 10) return true;
  return c == 33 || c == 35 || c == 36 || c == 37 || c == 38 || c == 39 || c == 42 || c == 43 ||
    c == 45 || c == 46 || c == 94 || c == 95 || c == 96 || c == 124 || c == 126;
}

// Reads connection.mtls (1 byte bool); only asked when an XFCC header is present.
function connectionIsMtls(): bool {
  const path = memory.data<u8>([99, 111, 110, 110, 101, 99, 116, 105, 111, 110, 0, 109, 116, 108, 115]);
  if (proxy_get_property(path, 15, OUT, OUT + 4) != 0) return false;
  const p = load<usize>(OUT);
  const n = load<usize>(OUT + 4);
  const r = n > 0 && load<u8>(p) != 0;
  if (p != 0) heap.free(p);
  return r;
}

function reject(status: i32, reason: string): i32 {
  incCounter(rejectedMetric);
  sendLocalReply(status, "passgate_sanitize." + reason,
    status == 431 ? "Request Header Fields Too Large\n" : "Bad Request\n");
  return ACTION_PAUSE; // stop: Envoy forces it anyway once a local reply is pending
}

export function proxy_on_request_headers(ctx: u32, nh: u32, eos: u32): i32 {
  const pairs = getPairs(MAP_REQUEST_HEADERS);
  if (pairs === null) return ACTION_CONTINUE;
  const r = inspect(pairs);
  pairs.free();
  return r;
}

function inspect(h: Pairs): i32 {
  const count = h.count;
  if (<i64>count > maxHeaders) return reject(431, "too_many_headers");
  if (<i64>h.bytes > maxBytes) return reject(431, "headers_too_large");
  const keep = new StaticArray<u8>(count);
  let changed = false;
  let removed: i64 = 0;
  let clCount = 0; // content-length elements seen
  let clValue: u64 = 0;
  let clFirst = -1; // index of the first content-length entry
  let clStart: usize = 0;
  let clLen: usize = 0;
  let te = false;
  let mtls = -1; // unknown until needed
  const kp = h.kp, kl = h.kl, vp = h.vp, vl = h.vl;
  for (let i = 0; i < count; i++) {
    const k = unchecked(kp[i]);
    const n = unchecked(kl[i]);
    let v = unchecked(vp[i]);
    let m = unchecked(vl[i]);
    unchecked(keep[i] = 1);
    // Name: tokens only; underscores per policy.
    if (n == 0) return reject(400, "invalid_header_name");
    let underscore = false;
    for (let j: usize = load<u8>(k) == 58 ? 1 : 0; j < n; j++) {
      const c = <u32>load<u8>(k + j);
      if (!isTchar(c)) return reject(400, "invalid_header_name");
      if (c == 95) underscore = true;
    }
    // Value: no CTLs except HTAB (CR, LF and NUL are how headers get split downstream).
    for (let j: usize = 0; j < m; j++) {
      const c = load<u8>(v + j);
      if ((c < 32 && c != 9) || c == 127) return reject(400, "control_character_in_header");
    }
    if (underscore) {
      if (underscorePolicy == UNDERSCORE_REJECT) return reject(400, "underscore_in_header_name");
      if (underscorePolicy == UNDERSCORE_DROP) { unchecked(keep[i] = 0); changed = true; removed++; continue; }
    }
    if (isSpoofable(k, n) || isConfigured(k, n)) {
      unchecked(keep[i] = 0); changed = true; removed++; continue;
    }
    if (eqLit(k, n, "x-forwarded-client-cert")) {
      if (mtls < 0) mtls = connectionIsMtls() ? 1 : 0;
      if (mtls == 0) { unchecked(keep[i] = 0); changed = true; removed++; continue; }
    }
    if (trimWhitespace) {
      const v0 = v, m0 = m;
      while (m > 0 && (load<u8>(v) == 32 || load<u8>(v) == 9)) { v++; m--; }
      while (m > 0 && (load<u8>(v + m - 1) == 32 || load<u8>(v + m - 1) == 9)) m--;
      if (v != v0 || m != m0) { unchecked(vp[i] = v); unchecked(vl[i] = m); changed = true; }
    }
    if (eqLit(k, n, "transfer-encoding")) te = true;
    else if (eqLit(k, n, "content-length")) {
      // Envoy folds repeated content-length into one "a,b" entry; look at every element.
      if (clFirst < 0) clFirst = i;
      else { unchecked(keep[i] = 0); changed = true; }
      let s = v;
      const end = v + m;
      while (true) {
        let e = s;
        while (e < end && load<u8>(e) != 44) e++;
        let a = s, b = e;
        while (a < b && (load<u8>(a) == 32 || load<u8>(a) == 9)) a++;
        while (b > a && (load<u8>(b - 1) == 32 || load<u8>(b - 1) == 9)) b--;
        if (a == b || b - a > 19) return reject(400, "invalid_content_length");
        let val: u64 = 0;
        for (let q = a; q < b; q++) {
          const c = <u32>load<u8>(q) - 48;
          if (c > 9) return reject(400, "invalid_content_length");
          val = val * 10 + <u64>c;
        }
        if (clCount > 0 && val != clValue) return reject(400, "conflicting_content_length");
        if (clCount == 0) { clStart = a; clLen = b - a; }
        clValue = val;
        clCount++;
        if (e >= end) break;
        s = e + 1;
      }
    }
  }
  if (te && clCount > 0) return reject(400, "transfer_encoding_with_content_length");
  if (clCount > 1) {
    // Same value repeated: forward it once, as RFC 9110 8.6 allows.
    unchecked(vp[clFirst] = clStart);
    unchecked(vl[clFirst] = clLen);
    changed = true;
  }
  if (changed) {
    const buf = encodePairs(count, kp, kl, vp, vl, keep, OUT + 8);
    proxy_set_header_map_pairs(MAP_REQUEST_HEADERS, buf, load<usize>(OUT + 8));
    heap.free(buf);
  }
  incCounter(strippedMetric, removed);
  return ACTION_CONTINUE;
}

export function proxy_on_response_headers(ctx: u32, nh: u32, eos: u32): i32 {
  // A few removes beat copying the whole map into the VM; remove is OK when absent.
  for (let i = 0; i < responseNames.length; i++) {
    const b = unchecked(responseNames[i]);
    proxy_remove_header_map_value(MAP_RESPONSE_HEADERS, bufPtr(b), bufLen(b));
  }
  return ACTION_CONTINUE;
}

