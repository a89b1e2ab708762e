// trace: keeps a valid W3C traceparent, drops an invalid one, converts B3 (multi or
// single header) when present, otherwise generates ids from WASI random_get. Never
// touches x-request-id. Exposes the trace id as filter state (wasm.<property>) and
// returns it to the client in a response header.
import {
  proxy_replace_header_map_value, proxy_remove_header_map_value, proxy_set_property, random_get,
} from "../abi/imports";
import {
  eqLit, bufPtr, bufLen, getPairs, lit, lowerInPlace, readConfigObject, configError, J_STR, J_BOOL,
  jget, isHex, copyBytes, defineCounter, incCounter, ACTION_CONTINUE, MAP_REQUEST_HEADERS,
  MAP_RESPONSE_HEADERS,
} from "../abi/index";

export {
  malloc, proxy_on_memory_allocate, proxy_abi_version_0_2_1, proxy_on_vm_start,
  proxy_on_context_create, proxy_on_done,
} from "../abi/index";

let responseHeader = lit("x-trace-id");
let propertyName = lit("trace_id");
let acceptB3 = true;
let sampleGenerated = false;
let generatedMetric: i32 = -1;
let b3Metric: i32 = -1;
let invalidMetric: i32 = -1;

// Trace id per stream, for the response header (the request map is gone by then).
const traces = new Map<u32, ArrayBuffer>();

// "00-" + 32 hex + "-" + 16 hex + "-" + 2 hex: the only shape version 00 allows.
const TP: usize = memory.data(55);
const RND: usize = memory.data(24);

const KEYS: Array<string> = ["responseHeader", "property", "acceptB3", "sampleGenerated"];

const FILTER = "trace";

export function proxy_on_configure(root: u32, len: u32): bool {
  let rh = lit("x-trace-id");
  let prop = lit("trace_id");
  let b3 = true;
  let sample = false;
  const cfg = readConfigObject(FILTER, len, KEYS);
  if (cfg === null) return false;
  let v = jget(cfg, "responseHeader");
  if (v !== null) {
    if (v.kind != J_STR) return configError(FILTER, "responseHeader must be a string (\"\" disables it)");
    rh = v.str!;
    lowerInPlace(rh);
  }
  v = jget(cfg, "property");
  if (v !== null) {
    if (v.kind != J_STR) return configError(FILTER, "property must be a string (\"\" disables it)");
    prop = v.str!;
  }
  v = jget(cfg, "acceptB3");
  if (v !== null) {
    if (v.kind != J_BOOL) return configError(FILTER, "acceptB3 must be true or false");
    b3 = v.b;
  }
  v = jget(cfg, "sampleGenerated");
  if (v !== null) {
    if (v.kind != J_BOOL) return configError(FILTER, "sampleGenerated must be true or false");
    sample = v.b;
  }
  responseHeader = rh;
  propertyName = prop;
  acceptB3 = b3;
  sampleGenerated = sample;
  if (generatedMetric < 0) generatedMetric = defineCounter("passgate_trace_generated");
  if (b3Metric < 0) b3Metric = defineCounter("passgate_trace_from_b3");
  if (invalidMetric < 0) invalidMetric = defineCounter("passgate_trace_invalid_dropped");
  __collect();
  return true;
}

function allHex(p: usize, n: usize): bool {
  for (let i: usize = 0; i < n; i++) if (!isHex(load<u8>(p + i))) return false;
  return true;
}

function allZero(p: usize, n: usize): bool {
  for (let i: usize = 0; i < n; i++) if (load<u8>(p + i) != 48) return false;
  return true;
}

// W3C trace-context level 1, version 00 only; lowercase hex; ids not all zeros.
function validTraceparent(p: usize, n: usize): bool {
  if (n != 55) return false;
  if (load<u8>(p) != 48 || load<u8>(p + 1) != 48) return false;
  if (load<u8>(p + 2) != 45 || load<u8>(p + 35) != 45 || load<u8>(p + 52) != 45) return false;
  if (!allHex(p + 3, 32) || !allHex(p + 36, 16) || !allHex(p + 53, 2)) return false;
  return !allZero(p + 3, 32) && !allZero(p + 36, 16);
}

// Writes a traceparent into TP from a 16- or 32-hex trace id and a 16-hex span id.
function composeTP(tid: usize, tl: usize, sid: usize, sampled: bool): void {
  store<u8>(TP, 48); store<u8>(TP + 1, 48); store<u8>(TP + 2, 45);
  memory.fill(TP + 3, 48, 32 - tl); // 64-bit B3 ids are left-padded with zeros
  memory.copy(TP + 3 + 32 - tl, tid, tl);
  store<u8>(TP + 35, 45);
  memory.copy(TP + 36, sid, 16);
  store<u8>(TP + 52, 45);
  store<u8>(TP + 53, 48);
  store<u8>(TP + 54, sampled ? 49 : 48);
}

// B3 trace ids are 16 or 32 lowercase hex; span ids exactly 16. Zero ids are invalid.
function b3TraceId(p: usize, n: usize): bool {
  return (n == 32 || n == 16) && allHex(p, n) && !allZero(p, n);
}
function b3SpanId(p: usize, n: usize): bool {
  return n == 16 && allHex(p, n) && !allZero(p, n);
}

function b3Sampled(p: usize, n: usize): bool {
  return eqLit(p, n, "1") || eqLit(p, n, "d") || eqLit(p, n, "true");
}

const HEX = "0123456789abcdef";

export function proxy_on_request_headers(ctx: u32, nh: u32, eos: u32): i32 {
  const h = getPairs(MAP_REQUEST_HEADERS);
  if (h === null) return ACTION_CONTINUE;
  let tp: usize = 0, tpl: usize = 0, tpCount = 0, tracestate = false;
  let xt: usize = 0, xtl: usize = 0, xs: usize = 0, xsl: usize = 0;
  let smp: usize = 0, smpl: usize = 0, flags = false, b3: usize = 0, b3l: usize = 0;
  for (let i = 0; i < h.count; i++) {
    const k = unchecked(h.kp[i]);
    const n = unchecked(h.kl[i]);
    // Cheap first-byte filter: only names starting with 't', 'x' or 'b' matter.
    const c = n > 0 ? load<u8>(k) : 0;
    if (c == 116) {
      if (eqLit(k, n, "traceparent")) { tpCount++; tp = unchecked(h.vp[i]); tpl = unchecked(h.vl[i]); }
      else if (eqLit(k, n, "tracestate")) tracestate = true;
    } else if (c == 120 && n > 5 && load<u8>(k + 1) == 45 && load<u8>(k + 2) == 98) {
      if (eqLit(k, n, "x-b3-traceid")) { xt = unchecked(h.vp[i]); xtl = unchecked(h.vl[i]); }
      else if (eqLit(k, n, "x-b3-spanid")) { xs = unchecked(h.vp[i]); xsl = unchecked(h.vl[i]); }
      else if (eqLit(k, n, "x-b3-sampled")) { smp = unchecked(h.vp[i]); smpl = unchecked(h.vl[i]); }
      else if (eqLit(k, n, "x-b3-flags")) flags = eqLit(unchecked(h.vp[i]), unchecked(h.vl[i]), "1");
    } else if (c == 98 && eqLit(k, n, "b3")) { b3 = unchecked(h.vp[i]); b3l = unchecked(h.vl[i]); }
  }
  let keep = tpCount == 1 && validTraceparent(tp, tpl);
  if (keep) memory.copy(TP, tp, 55);
  else {
    if (tpCount > 0) incCounter(invalidMetric);
    let converted = false;
    if (acceptB3 && xtl > 0 && b3TraceId(xt, xtl) && b3SpanId(xs, xsl)) {
      composeTP(xt, xtl, xs, flags || b3Sampled(smp, smpl));
      converted = true;
    } else if (acceptB3 && b3l > 0) {
      // b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]]
      let d1: usize = 0;
      while (d1 < b3l && load<u8>(b3 + d1) != 45) d1++;
      if (d1 < b3l && b3TraceId(b3, d1)) {
        const s = b3 + d1 + 1;
        const rest = b3l - d1 - 1;
        let d2: usize = 0;
        while (d2 < rest && load<u8>(s + d2) != 45) d2++;
        if (b3SpanId(s, d2)) {
          let sampled = false;
          if (d2 < rest) {
            const f = s + d2 + 1;
            let fl: usize = 0;
            while (fl < rest - d2 - 1 && load<u8>(f + fl) != 45) fl++;
            sampled = b3Sampled(f, fl);
          }
          composeTP(b3, d1, s, sampled);
          converted = true;
        }
      }
    }
    if (converted) incCounter(b3Metric);
    else {
      random_get(RND, 24);
      // All-zero ids are invalid; the odds are 2^-128, but never emit one.
      store<u8>(RND + 15, load<u8>(RND + 15) | 1);
      store<u8>(RND + 23, load<u8>(RND + 23) | 1);
      const hex = changetype<usize>(HEX);
      let o = TP + 3;
      for (let i: usize = 0; i < 24; i++) {
        if (i == 16) { store<u8>(o++, 45); }
        const b = load<u8>(RND + i);
        store<u8>(o++, load<u8>(hex + ((<usize>b >> 4) << 1)));
        store<u8>(o++, load<u8>(hex + ((<usize>b & 15) << 1)));
      }
      store<u8>(TP, 48); store<u8>(TP + 1, 48); store<u8>(TP + 2, 45);
      store<u8>(TP + 52, 45); store<u8>(TP + 53, 48); store<u8>(TP + 54, sampleGenerated ? 49 : 48);
      incCounter(generatedMetric);
    }
    // replace removes every copy (including invalid duplicates), then appends ours.
    const name = memory.data<u8>([116, 114, 97, 99, 101, 112, 97, 114, 101, 110, 116]);
    proxy_replace_header_map_value(MAP_REQUEST_HEADERS, name, 11, TP, 55);
    if (tracestate) {
      // tracestate belongs to the traceparent we just dropped (W3C: discard it too).
      const ts = memory.data<u8>([116, 114, 97, 99, 101, 115, 116, 97, 116, 101]);
      proxy_remove_header_map_value(MAP_REQUEST_HEADERS, ts, 10);
    }
  }
  h.free();
  if (bufLen(propertyName) > 0) proxy_set_property(bufPtr(propertyName), bufLen(propertyName), TP + 3, 32);
  if (bufLen(responseHeader) > 0) traces.set(ctx, copyBytes(TP + 3, 32));
  return ACTION_CONTINUE;
}

export function proxy_on_response_headers(ctx: u32, nh: u32, eos: u32): i32 {
  if (bufLen(responseHeader) > 0 && traces.has(ctx)) {
    const t = traces.get(ctx);
    proxy_replace_header_map_value(MAP_RESPONSE_HEADERS, bufPtr(responseHeader), bufLen(responseHeader), bufPtr(t), 32);
  }
  return ACTION_CONTINUE;
}

export function proxy_on_delete(ctx: u32): void {
  traces.delete(ctx);
  __collect();
}
