// Thin proxy-wasm ABI 0.2.1 binding. This file holds what every module exports (memory
// allocation, the ABI marker, default lifecycle callbacks, abort) and re-exports the
// binding's parts:
//   enums.ts      typed values at the boundary (log levels, actions, map/buffer types, status)
//   imports.ts    the raw host imports
//   hostcalls.ts  wrappers: logging, metrics, local replies
//   bytes.ts      byte helpers and the static out-parameter words
//   pairs.ts      header pairs decoding/encoding
//   json.ts       minimal JSON reader; config.ts: pluginConfig reading and checked access
// It works on raw (ptr, len) byte ranges so a request allocates almost nothing.
import { LogLevel } from "./enums";
import { u32str } from "./bytes";
import { log } from "./hostcalls";

export * from "./enums";
export * from "./bytes";
export * from "./hostcalls";
export * from "./pairs";
export * from "./json";
export * from "./config";

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
  log(LogLevel.Critical, s);
  unreachable();
}
