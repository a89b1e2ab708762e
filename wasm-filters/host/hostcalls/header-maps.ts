// proxy_*_header_map_* : which map is reachable when, and Envoy's status codes for each.
import { MapType, Status, type StatusCode } from "../abi.js";
import type { HeaderMap } from "../headers.js";
import { decodePairs, pairsSize, writeLatin1, writePairs } from "../pairs.js";
import type { HostFn, VmState } from "../vm.js";

/** The map for reads: available in its callback, and request/response headers in on_log. */
function readMap(vm: VmState, type: number): HeaderMap | null | undefined {
  const c = vm.active;
  if (type === MapType.REQUEST_HEADERS) return c.reqMapOpen || c.logPhase ? c.reqHeaders : null;
  if (type === MapType.RESPONSE_HEADERS) return c.respMapOpen || c.logPhase ? c.respHeaders : null;
  if (type >= 0 && type <= MapType.HTTP_CALL_RESPONSE_TRAILERS) return null; // not emulated / not present
  return undefined; // bad type
}

/** The map for writes: only inside its callback (not in on_log). */
function writeMap(vm: VmState, type: number): HeaderMap | null {
  const c = vm.active;
  if (type === MapType.REQUEST_HEADERS && c.reqMapOpen) return c.reqHeaders;
  if (type === MapType.RESPONSE_HEADERS && c.respMapOpen) return c.respHeaders;
  return null;
}

export const headerMapCalls = {
  proxy_get_header_map_value(vm: VmState, type: number, kp: number, kl: number, pp: number, lp: number): StatusCode {
    const m = readMap(vm, type);
    // Envoy: a map missing in the access-log phase is NOT_FOUND (0.2.x), otherwise BAD_ARGUMENT.
    if (!m) return m === null && vm.active.logPhase ? Status.NOT_FOUND : Status.BAD_ARGUMENT;
    const k = vm.mem.str(kp, kl);
    if (k === null) return Status.INVALID_MEMORY_ACCESS;
    const v = m.get(k);
    if (v === undefined) return Status.NOT_FOUND;
    return vm.mem.copyOut(v.length, (mem, at) => writeLatin1(v, mem, at), pp, lp);
  },
  proxy_add_header_map_value(vm: VmState, type: number, kp: number, kl: number, vp: number, vl: number): StatusCode {
    const m = writeMap(vm, type);
    if (!m) return Status.BAD_ARGUMENT;
    const k = vm.mem.str(kp, kl), v = vm.mem.str(vp, vl);
    if (k === null || v === null) return Status.INVALID_MEMORY_ACCESS;
    m.add(k, v);
    return Status.OK;
  },
  proxy_replace_header_map_value(vm: VmState, type: number, kp: number, kl: number, vp: number, vl: number): StatusCode {
    const m = writeMap(vm, type);
    if (!m) return Status.BAD_ARGUMENT;
    const k = vm.mem.str(kp, kl), v = vm.mem.str(vp, vl);
    if (k === null || v === null) return Status.INVALID_MEMORY_ACCESS;
    m.replace(k, v);
    return Status.OK;
  },
  proxy_remove_header_map_value(vm: VmState, type: number, kp: number, kl: number): StatusCode {
    const m = writeMap(vm, type);
    if (!m) return Status.BAD_ARGUMENT;
    const k = vm.mem.str(kp, kl);
    if (k === null) return Status.INVALID_MEMORY_ACCESS;
    m.remove(k);
    return Status.OK;
  },
  proxy_get_header_map_pairs(vm: VmState, type: number, pp: number, lp: number): StatusCode {
    const m = readMap(vm, type);
    if (m === undefined) return Status.BAD_ARGUMENT;
    if (m === null || m.size === 0) {
      // Envoy: an unavailable or empty map is OK with ptr 0, len 0.
      return vm.mem.setU32(pp, 0) && vm.mem.setU32(lp, 0) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    }
    const list = m.entries;
    return vm.mem.copyOut(pairsSize(list), (mem, at) => writePairs(list, mem, at), pp, lp);
  },
  proxy_set_header_map_pairs(vm: VmState, type: number, ptr: number, len: number): StatusCode {
    const m = writeMap(vm, type);
    if (!m) return Status.BAD_ARGUMENT;
    const b = vm.mem.slice(ptr, len);
    if (b === null) return Status.INVALID_MEMORY_ACCESS;
    const pairs = decodePairs(b);
    if (pairs === null) vm.record("warn", "host: proxy_set_header_map_pairs got a malformed or oversized pairs buffer; Envoy decodes it as empty and clears the map", vm.active.id);
    m.clear();
    for (const [k, v] of pairs ?? []) m.add(k, v);
    return Status.OK;
  },
  proxy_get_header_map_size(vm: VmState, type: number, out: number): StatusCode {
    // Envoy sizes the mutable map, so not in on_log (unlike get and pairs).
    const m = writeMap(vm, type);
    if (!m) return Status.BAD_ARGUMENT;
    return vm.mem.setU32(out, m.byteSize()) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  },
} satisfies Record<string, HostFn>;
