// Host functions Envoy registers for ABI 0.2.1 (proxy-wasm-cpp-host `registerCallbacks`).
// Only the ones a filter actually calls end up as imports: AssemblyScript drops unused
// declarations, so every module links against exactly what it uses.
// Every parameter is a 32-bit word except the metric values (i64), matching Envoy's types;
// enum-typed parameters and Status results are i32 on the wire.
import { BufferType, LogLevel, MapType, MetricType, Status } from "./enums";

@external("env", "proxy_log")
export declare function proxy_log(level: LogLevel, ptr: usize, len: usize): Status;

@external("env", "proxy_get_buffer_bytes")
export declare function proxy_get_buffer_bytes(buf: BufferType, start: i32, max: i32, pp: usize, lp: usize): Status;

@external("env", "proxy_get_header_map_pairs")
export declare function proxy_get_header_map_pairs(map: MapType, pp: usize, lp: usize): Status;

@external("env", "proxy_set_header_map_pairs")
export declare function proxy_set_header_map_pairs(map: MapType, ptr: usize, len: usize): Status;

@external("env", "proxy_replace_header_map_value")
export declare function proxy_replace_header_map_value(map: MapType, k: usize, kl: usize, v: usize, vl: usize): Status;

@external("env", "proxy_remove_header_map_value")
export declare function proxy_remove_header_map_value(map: MapType, k: usize, kl: usize): Status;

@external("env", "proxy_get_property")
export declare function proxy_get_property(path: usize, pl: usize, pp: usize, lp: usize): Status;

@external("env", "proxy_set_property")
export declare function proxy_set_property(path: usize, pl: usize, v: usize, vl: usize): Status;

@external("env", "proxy_send_local_response")
export declare function proxy_send_local_response(
  status: i32, details: usize, dl: usize, body: usize, bl: usize, pairs: usize, pl: usize, grpc: i32,
): Status;

@external("env", "proxy_define_metric")
export declare function proxy_define_metric(type: MetricType, name: usize, len: usize, idp: usize): Status;

@external("env", "proxy_increment_metric")
export declare function proxy_increment_metric(id: i32, offset: i64): Status;

// WASI: Envoy has no `env.seed`, so randomness comes from random_get (<= 64 KiB a call).
@external("wasi_snapshot_preview1", "random_get")
export declare function random_get(buf: usize, len: usize): i32;
