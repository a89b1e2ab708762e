// Local replies and stream control (continue/close; 0.1.0's continue_request/response).
import { StreamType, Status, type StatusCode } from "../abi.js";
import { lowerKey } from "../headers.js";
import { decodePairs } from "../pairs.js";
import type { HostFn, VmState } from "../vm.js";

function isStreamType(t: number): boolean {
  return t === StreamType.REQUEST || t === StreamType.RESPONSE;
}

export const streamControlCalls = {
  proxy_send_local_response(
    vm: VmState, status: number, dp: number, dl: number, bp: number, bl: number, hp: number, hl: number, grpc: number,
  ): StatusCode {
    const c = vm.active;
    if (c.isRoot) return Status.BAD_ARGUMENT;
    const details = vm.mem.slice(dp, dl), body = vm.mem.slice(bp, bl), hdrs = vm.mem.slice(hp, hl);
    if (details === null || body === null || hdrs === null) return Status.INVALID_MEMORY_ACCESS;
    if (c.localReply) return Status.OK; // Envoy sends only the first
    const headers = decodePairs(hdrs) ?? [];
    c.localReply = {
      status: status >>> 0,
      body: Buffer.from(body),
      headers: headers.map(([k, v]) => [lowerKey(k), v]),
      details: details.toString("utf8").replace(/\s/g, "_"),
      ...(grpc >= 0 && grpc <= 16 ? { grpcStatus: grpc } : {}),
    };
    return Status.OK;
  },
  proxy_continue_stream(vm: VmState, type: number): StatusCode {
    if (!isStreamType(type)) return Status.BAD_ARGUMENT;
    vm.active.continued = true;
    return Status.OK;
  },
  proxy_close_stream(vm: VmState, type: number): StatusCode {
    if (!isStreamType(type)) return Status.BAD_ARGUMENT;
    vm.active.closed = true;
    return Status.OK;
  },
  proxy_continue_request(vm: VmState): StatusCode { vm.active.continued = true; return Status.OK; },
  proxy_continue_response(vm: VmState): StatusCode { vm.active.continued = true; return Status.OK; },
  proxy_clear_route_cache(): StatusCode { return Status.OK; },
  proxy_set_effective_context(vm: VmState, id: number): StatusCode {
    const c = vm.contexts.get(id >>> 0);
    if (!c) return Status.BAD_ARGUMENT;
    vm.active = c;
    return Status.OK;
  },
  proxy_done(): StatusCode { return Status.NOT_FOUND; },
} satisfies Record<string, HostFn>;
