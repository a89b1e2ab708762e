// Host functions Envoy performs but this host does not emulate (outbound calls, queues,
// foreign functions): they link, warn, and return UNIMPLEMENTED.
import { Status, type StatusCode } from "../abi.js";
import type { HostFn, VmState } from "../vm.js";

function unimplemented(name: string): HostFn {
  return (vm: VmState): StatusCode => {
    vm.record("warn", `host: ${name} is not emulated by this host (Envoy would perform it); returning UNIMPLEMENTED`, vm.active.id);
    return Status.UNIMPLEMENTED;
  };
}

const NAMES = [
  "proxy_get_status",
  // HTTP and gRPC calls
  "proxy_http_call", "proxy_grpc_call", "proxy_grpc_stream", "proxy_grpc_close", "proxy_grpc_cancel", "proxy_grpc_send",
  // shared queues
  "proxy_register_shared_queue", "proxy_resolve_shared_queue", "proxy_dequeue_shared_queue", "proxy_enqueue_shared_queue",
  "proxy_call_foreign_function",
] as const;

export const unimplementedCalls: Record<(typeof NAMES)[number], HostFn> =
  Object.fromEntries(NAMES.map((n) => [n, unimplemented(n)])) as Record<(typeof NAMES)[number], HostFn>;

export const miscCalls = {
  pthread_equal(_vm: VmState, a: number, b: number): number { return a === b ? 1 : 0; },
} satisfies Record<string, HostFn>;
