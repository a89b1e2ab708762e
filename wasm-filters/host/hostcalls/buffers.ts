// proxy_*_buffer_* : configuration buffers and bodies, each readable only when Envoy has it.
import { BufferType, MAX_BUFFER_TYPE, Status, type StatusCode } from "../abi.js";
import { EMPTY } from "../context.js";
import type { HostFn, VmState } from "../vm.js";

function buffer(vm: VmState, type: number): Buffer | null {
  const c = vm.active;
  if (type === BufferType.PLUGIN_CONFIGURATION && vm.configPhase === "plugin") return vm.pluginConfig;
  if (type === BufferType.VM_CONFIGURATION) return vm.vmConfig; // Envoy: any time
  if (type === BufferType.REQUEST_BODY && c.openBuffer === type) return c.reqBody;
  if (type === BufferType.RESPONSE_BODY && c.openBuffer === type) return c.respBody;
  return null;
}

export const bufferCalls = {
  proxy_get_buffer_bytes(vm: VmState, type: number, start: number, max: number, pp: number, lp: number): StatusCode {
    start >>>= 0; max >>>= 0;
    if (type >>> 0 > MAX_BUFFER_TYPE) return Status.BAD_ARGUMENT;
    const b = buffer(vm, type);
    if (!b) return Status.NOT_FOUND;
    // Envoy clamps: a start past the end reads nothing, a long read stops at the end.
    if (start >= b.length) return vm.mem.copyBytesOut(EMPTY, pp, lp);
    return vm.mem.copyBytesOut(b.subarray(start, Math.min(b.length, start + max)), pp, lp);
  },
  proxy_get_buffer_status(vm: VmState, type: number, lenPtr: number, flagsPtr: number): StatusCode {
    const b = buffer(vm, type);
    if (!b) return Status.NOT_FOUND;
    // Bodies arrive whole (one body callback with end_of_stream), so every buffer is at its end.
    return vm.mem.setU32(lenPtr, b.length) && vm.mem.setU32(flagsPtr, 1) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  },
  proxy_set_buffer_bytes(vm: VmState, type: number, start: number, size: number, vp: number, vl: number): StatusCode {
    const c = vm.active;
    const b = buffer(vm, type);
    if (!b || (type !== BufferType.REQUEST_BODY && type !== BufferType.RESPONSE_BODY)) return Status.NOT_FOUND;
    const v = vm.mem.slice(vp, vl);
    if (v === null) return Status.INVALID_MEMORY_ACCESS;
    let next: Buffer;
    // Envoy's body semantics: prepend, replace all, or append.
    if (start === 0 && size === 0) next = Buffer.concat([v, b]);
    else if (start === 0 && size >= b.length) next = Buffer.from(v);
    else if (start >= b.length) next = Buffer.concat([b, v]);
    else return Status.BAD_ARGUMENT;
    if (type === BufferType.REQUEST_BODY) c.reqBody = next; else c.respBody = next;
    return Status.OK;
  },
  /** ABI 0.1.0's way to read the plugin configuration. */
  proxy_get_configuration(vm: VmState, pp: number, lp: number): StatusCode {
    return vm.mem.copyBytesOut(vm.pluginConfig, pp, lp);
  },
} satisfies Record<string, HostFn>;
