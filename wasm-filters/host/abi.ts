// ABI facts the host enforces: status codes, enums, and the exact import/export
// signatures Envoy (proxy-wasm-cpp-host) registers per ABI version.

export const Status = {
  OK: 0,
  NOT_FOUND: 1,
  BAD_ARGUMENT: 2,
  SERIALIZATION_FAILURE: 3,
  PARSE_FAILURE: 4,
  INVALID_MEMORY_ACCESS: 6,
  EMPTY: 7,
  CAS_MISMATCH: 8,
  INTERNAL_FAILURE: 10,
  UNIMPLEMENTED: 12,
} as const;

export type StatusCode = (typeof Status)[keyof typeof Status];

export const Action = { CONTINUE: 0, PAUSE: 1 } as const;
export type ActionCode = (typeof Action)[keyof typeof Action];

/** proxy_continue_stream / proxy_close_stream argument (0.2.x). */
export const StreamType = { REQUEST: 0, RESPONSE: 1 } as const;
export type StreamTypeCode = (typeof StreamType)[keyof typeof StreamType];

/** proxy_define_metric type; Envoy also tags it in the low bits of the metric id. */
export const MetricType = { COUNTER: 0, GAUGE: 1, HISTOGRAM: 2 } as const;
export type MetricTypeCode = (typeof MetricType)[keyof typeof MetricType];

export const MapType = {
  REQUEST_HEADERS: 0,
  REQUEST_TRAILERS: 1,
  RESPONSE_HEADERS: 2,
  RESPONSE_TRAILERS: 3,
  GRPC_RECEIVE_INITIAL_METADATA: 4,
  GRPC_RECEIVE_TRAILING_METADATA: 5,
  HTTP_CALL_RESPONSE_HEADERS: 6,
  HTTP_CALL_RESPONSE_TRAILERS: 7,
} as const;
export type MapTypeCode = (typeof MapType)[keyof typeof MapType];

export const BufferType = {
  REQUEST_BODY: 0,
  RESPONSE_BODY: 1,
  DOWNSTREAM_DATA: 2,
  UPSTREAM_DATA: 3,
  HTTP_CALL_RESPONSE_BODY: 4,
  GRPC_RECEIVE_BUFFER: 5,
  VM_CONFIGURATION: 6,
  PLUGIN_CONFIGURATION: 7,
} as const;
export type BufferTypeCode = (typeof BufferType)[keyof typeof BufferType];
/** Envoy's last buffer type (CallData, 8): anything above is BAD_ARGUMENT. */
export const MAX_BUFFER_TYPE = 8;

/** The WASI errno values this host returns. */
export const Errno = { SUCCESS: 0, BADF: 8, FAULT: 21, INVAL: 28, NOSYS: 52, SPIPE: 70 } as const;
export type ErrnoCode = (typeof Errno)[keyof typeof Errno];

export const LogLevel = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5 } as const;
export type LogLevelName = keyof typeof LogLevel;

export type AbiVersion = "0_1_0" | "0_2_0" | "0_2_1";
export const ABI_MARKER_PREFIX = "proxy_abi_version_";

// Signature notation: params ":" results, i = i32, I = i64 (Envoy's Word is i32, metric
// values and WASI precision/offset are 64-bit).
const i = (n: number): string => "i".repeat(n);

const ENV_COMMON: Record<string, string> = {
  pthread_equal: "ii:i",
  proxy_log: "iii:i",
  proxy_get_status: "iii:i",
  proxy_set_property: "iiii:i",
  proxy_get_property: "iiii:i",
  proxy_send_local_response: `${i(8)}:i`,
  proxy_get_shared_data: "iiiii:i",
  proxy_set_shared_data: "iiiii:i",
  proxy_register_shared_queue: "iii:i",
  proxy_resolve_shared_queue: "iiiii:i",
  proxy_dequeue_shared_queue: "iii:i",
  proxy_enqueue_shared_queue: "iii:i",
  proxy_get_header_map_value: "iiiii:i",
  proxy_add_header_map_value: "iiiii:i",
  proxy_replace_header_map_value: "iiiii:i",
  proxy_remove_header_map_value: "iii:i",
  proxy_get_header_map_pairs: "iii:i",
  proxy_set_header_map_pairs: "iii:i",
  proxy_get_header_map_size: "ii:i",
  proxy_get_buffer_status: "iii:i",
  proxy_get_buffer_bytes: "iiiii:i",
  proxy_set_buffer_bytes: "iiiii:i",
  proxy_http_call: `${i(10)}:i`,
  proxy_grpc_call: `${i(12)}:i`,
  proxy_grpc_stream: `${i(9)}:i`,
  proxy_grpc_close: "i:i",
  proxy_grpc_cancel: "i:i",
  proxy_grpc_send: "iiii:i",
  proxy_set_tick_period_milliseconds: "i:i",
  proxy_get_current_time_nanoseconds: "i:i",
  proxy_define_metric: "iiii:i",
  proxy_increment_metric: "iI:i",
  proxy_record_metric: "iI:i",
  proxy_get_metric: "ii:i",
  proxy_set_effective_context: "i:i",
  proxy_done: ":i",
  proxy_call_foreign_function: `${i(6)}:i`,
};

const ENV_BY_ABI: Record<AbiVersion, Record<string, string>> = {
  "0_1_0": {
    proxy_get_configuration: "ii:i",
    proxy_continue_request: ":i",
    proxy_continue_response: ":i",
    proxy_clear_route_cache: ":i",
  },
  "0_2_0": { proxy_continue_stream: "i:i", proxy_close_stream: "i:i" },
  "0_2_1": { proxy_continue_stream: "i:i", proxy_close_stream: "i:i", proxy_get_log_level: "i:i" },
};

// Registered under both "wasi_unstable" and "wasi_snapshot_preview1".
export const WASI: Record<string, string> = {
  fd_write: "iiii:i",
  fd_read: "iiii:i",
  fd_seek: "iIii:i",
  fd_close: "i:i",
  fd_fdstat_get: "ii:i",
  environ_get: "ii:i",
  environ_sizes_get: "ii:i",
  args_get: "ii:i",
  args_sizes_get: "ii:i",
  clock_time_get: "iIi:i",
  random_get: "ii:i",
  proc_exit: "i:",
};
export const WASI_MODULES = ["wasi_unstable", "wasi_snapshot_preview1"];

/** Every (module, name) -> signature Envoy registers for a module of this ABI version. */
export function registeredImports(abi: AbiVersion): Map<string, string> {
  const m = new Map<string, string>();
  for (const [name, sig] of Object.entries({ ...ENV_COMMON, ...ENV_BY_ABI[abi] })) m.set(`env.${name}`, sig);
  for (const mod of WASI_MODULES) for (const [name, sig] of Object.entries(WASI)) m.set(`${mod}.${name}`, sig);
  return m;
}

/** Exports Envoy looks up, with the signature it requires when present. */
export function expectedExports(abi: AbiVersion): Map<string, string> {
  const headers = abi === "0_1_0" ? "ii:i" : "iii:i";
  const e: Record<string, string> = {
    _initialize: ":",
    _start: ":",
    __wasm_call_ctors: ":",
    malloc: "i:i",
    proxy_on_memory_allocate: "i:i",
    proxy_validate_configuration: "ii:i",
    proxy_on_vm_start: "ii:i",
    proxy_on_configure: "ii:i",
    proxy_on_tick: "i:",
    proxy_on_context_create: "ii:",
    proxy_on_new_connection: "i:i",
    proxy_on_downstream_data: "iii:i",
    proxy_on_upstream_data: "iii:i",
    proxy_on_downstream_connection_close: "ii:",
    proxy_on_upstream_connection_close: "ii:",
    proxy_on_request_headers: headers,
    proxy_on_request_body: "iii:i",
    proxy_on_request_trailers: "ii:i",
    proxy_on_request_metadata: "ii:i",
    proxy_on_response_headers: headers,
    proxy_on_response_body: "iii:i",
    proxy_on_response_trailers: "ii:i",
    proxy_on_response_metadata: "ii:i",
    proxy_on_http_call_response: "iiiii:",
    proxy_on_grpc_receive: "iii:",
    proxy_on_grpc_close: "iii:",
    proxy_on_grpc_receive_initial_metadata: "iii:",
    proxy_on_grpc_receive_trailing_metadata: "iii:",
    proxy_on_queue_ready: "ii:",
    proxy_on_done: "i:i",
    proxy_on_log: "i:",
    proxy_on_delete: "i:",
  };
  if (abi !== "0_1_0") e.proxy_on_foreign_function = "iii:i";
  return new Map(Object.entries(e));
}

/**
 * Envoy's inline headers: `add` on one that exists appends to it (", " is not used:
 * Envoy joins with "," and uses "; " for cookie) instead of creating a second entry.
 * This is Envoy's core list; extensions may register more custom inline headers.
 */
export const INLINE_HEADERS: ReadonlySet<string> = new Set([
  ":authority", ":method", ":path", ":protocol", ":scheme", ":status",
  "x-client-trace-id", "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node",
  "x-envoy-expected-rq-timeout-ms", "x-envoy-external-address", "x-envoy-force-trace",
  "x-envoy-hedge-on-per-try-timeout", "x-envoy-internal", "x-envoy-ip-tags", "x-envoy-retry-on",
  "x-envoy-retry-grpc-on", "x-envoy-retriable-status-codes", "x-envoy-retriable-header-names",
  "x-envoy-is-timeout-retry", "x-envoy-original-path", "x-envoy-original-url",
  "x-envoy-upstream-alt-stat-name", "x-envoy-upstream-rq-timeout-alt-response", "expect",
  "x-forwarded-client-cert", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
  "grpc-timeout", "te", "user-agent", "x-envoy-attempt-count", "x-envoy-max-retries",
  "x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
  "x-envoy-upstream-stream-duration-ms", "x-envoy-decorator-operation",
  "connection", "content-length", "content-type", "keep-alive", "proxy-connection",
  "proxy-status", "x-request-id", "transfer-encoding", "upgrade", "via", "cookie",
  "date", "location", "server", "grpc-status", "grpc-message", "x-envoy-degraded",
  "x-envoy-immediate-health-check-fail", "x-envoy-ratelimited", "x-envoy-upstream-canary",
  "x-envoy-upstream-healthchecked-cluster", "x-envoy-upstream-service-time", "x-envoy-overloaded",
]);

/** Envoy refuses pairs buffers with more entries or bytes than this. */
export const MAX_PAIRS = 1024;
export const MAX_PAIRS_BYTES = 1024 * 1024;
/** WASI random_get limit in Envoy (bytes per call). */
export const MAX_RANDOM_BYTES = 64 * 1024;
