// Wrappers over the raw host imports: logging, metrics, local replies. Strings are copied
// to the heap as ASCII for the call and freed right after.
import { proxy_log, proxy_define_metric, proxy_increment_metric, proxy_send_local_response } from "./imports";
import { LogLevel, MetricType, Status } from "./enums";
import { OUT, ascii } from "./bytes";

export function log(level: LogLevel, msg: string): void {
  const p = ascii(msg);
  proxy_log(level, p, <usize>msg.length);
  heap.free(p);
}

export function defineCounter(name: string): i32 {
  const p = ascii(name);
  const r = proxy_define_metric(MetricType.Counter, p, <usize>name.length, OUT);
  heap.free(p);
  return r == Status.Ok ? load<i32>(OUT) : -1;
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
