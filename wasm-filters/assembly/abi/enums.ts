// Typed values at the proxy-wasm ABI 0.2.1 boundary (AssemblyScript enums are i32
// constants, so they cost nothing at run time). Numbers as in the spec and
// proxy-wasm-cpp-host's enums.

export enum LogLevel { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4, Critical = 5 }

// What a stream callback returns to the host.
export enum Action { Continue = 0, Pause = 1 }

export enum MapType {
  RequestHeaders = 0, RequestTrailers = 1, ResponseHeaders = 2, ResponseTrailers = 3,
  GrpcReceiveInitialMetadata = 4, GrpcReceiveTrailingMetadata = 5,
  HttpCallResponseHeaders = 6, HttpCallResponseTrailers = 7,
}

export enum BufferType {
  RequestBody = 0, ResponseBody = 1, DownstreamData = 2, UpstreamData = 3, HttpCallResponseBody = 4,
  GrpcReceiveBuffer = 5, VmConfiguration = 6, PluginConfiguration = 7,
}

// Host call results (WasmResult).
export enum Status {
  Ok = 0, NotFound = 1, BadArgument = 2, SerializationFailure = 3, ParseFailure = 4,
  InvalidMemoryAccess = 6, Empty = 7, CasMismatch = 8, InternalFailure = 10, Unimplemented = 12,
}

export enum MetricType { Counter = 0, Gauge = 1, Histogram = 2 }

// proxy_continue_stream / proxy_close_stream argument.
export enum StreamType { Request = 0, Response = 1 }

// The flat names the filters use.
export const LOG_TRACE: i32 = LogLevel.Trace;
export const LOG_DEBUG: i32 = LogLevel.Debug;
export const LOG_INFO: i32 = LogLevel.Info;
export const LOG_WARN: i32 = LogLevel.Warn;
export const LOG_ERROR: i32 = LogLevel.Error;
export const LOG_CRITICAL: i32 = LogLevel.Critical;

export const ACTION_CONTINUE: i32 = Action.Continue;
export const ACTION_PAUSE: i32 = Action.Pause;

export const MAP_REQUEST_HEADERS: i32 = MapType.RequestHeaders;
export const MAP_RESPONSE_HEADERS: i32 = MapType.ResponseHeaders;
export const BUFFER_PLUGIN_CONFIGURATION: i32 = BufferType.PluginConfiguration;
