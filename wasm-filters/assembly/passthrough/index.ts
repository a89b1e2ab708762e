// Empty pass-through filter: same lifecycle exports as the real filters, no work.
// It is the benchmark floor (cost of the host driving a module at all).
export {
  malloc, proxy_on_memory_allocate, proxy_abi_version_0_2_1, proxy_on_vm_start,
  proxy_on_context_create, proxy_on_done, proxy_on_delete,
} from "../abi/index";

export function proxy_on_configure(root: u32, len: u32): bool {
  return true;
}
export function proxy_on_request_headers(ctx: u32, n: u32, eos: u32): i32 {
  return 0;
}
export function proxy_on_response_headers(ctx: u32, n: u32, eos: u32): i32 {
  return 0;
}
export function proxy_on_log(ctx: u32): void {}
