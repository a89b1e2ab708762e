// Plugin configuration: reading buffer 7 in on_configure, and checked access to the
// JSON object (unknown keys refused, typed getters, one error format).
import { proxy_get_buffer_bytes } from "./imports";
import { BufferType, LogLevel, Status } from "./enums";
import { OUT, eqLit, bufPtr, bufLen, lowerInPlace } from "./bytes";
import { log } from "./hostcalls";
import { JValue, JsonParser, J_ARR, J_NUM, J_OBJ, J_STR } from "./json";

// Reads pluginConfig (buffer 7). Returns a heap block (caller frees) and its length in OUT+4.
export function readPluginConfig(len: u32): usize {
  store<usize>(OUT + 4, 0);
  if (len == 0) return 0;
  if (proxy_get_buffer_bytes(BufferType.PluginConfiguration, 0, <i32>len, OUT, OUT + 4) != Status.Ok) return 0;
  return load<usize>(OUT);
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
  log(LogLevel.Error, "passgate " + filter + ": bad pluginConfig: " + msg + "; fix the WasmPlugin pluginConfig");
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
