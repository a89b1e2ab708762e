// The host's public option and result shapes, and its load error. No behaviour here.
import type { LogLevelName } from "./abi.js";
import type { HeaderList } from "./pairs.js";

export type FailStrategy = "FAIL_CLOSE" | "FAIL_OPEN";
export type PropertyValue = string | number | bigint | boolean | Uint8Array | HeaderList;
/** Properties by dotted path ("connection.mtls") or nested objects ({ connection: { mtls: true } }). */
export interface Properties { [path: string]: PropertyValue | Properties | null | undefined }

export interface LoadPluginOptions {
  /** The module bytes. */
  wasm: Uint8Array | ArrayBuffer;
  /** Istio's WasmPlugin pluginConfig; an object is serialized as JSON. */
  pluginConfig?: string | object | Uint8Array;
  vmConfig?: string | Uint8Array;
  /** Root context id (Istio sets it from the WasmPlugin); default "". */
  rootId?: string;
  /** plugin_name property; default "passgate". */
  pluginName?: string;
  vmId?: string;
  /** Istio's default is FAIL_CLOSE. */
  failStrategy?: FailStrategy;
  /** Lowest level recorded and reported by proxy_get_log_level; default "info". */
  logLevel?: LogLevelName;
  /** VM-wide properties (e.g. "xds.node.metadata.NAME"), visible from every context. */
  properties?: Properties;
  /** Wall clock in ns (proxy_get_current_time_nanoseconds, WASI realtime). */
  clock?: () => bigint;
  /** Randomness for WASI random_get; default crypto.randomFillSync. */
  random?: (buf: Uint8Array) => void;
  /** Called for every recorded log line (module logs, WASI stdout/stderr, host warnings). */
  onLog?: (entry: LogEntry) => void;
}

export interface LogEntry { level: LogLevelName; message: string; contextId: number }

export interface LocalReply {
  status: number;
  body: Buffer;
  /** Extra headers the filter asked for. */
  headers: HeaderList;
  /** Response code details (spaces become "_", as in Envoy). */
  details: string;
  grpcStatus?: number;
}

export interface UpstreamResponse {
  /** Used when headers carry no ":status"; default 200. */
  status?: number;
  headers?: HeaderList;
  body?: string | Uint8Array;
}

export interface UpstreamRequest { headers: HeaderList; body: Buffer }

export interface RequestInput {
  /** Downstream request headers, including pseudo-headers (":method", ":path", ...). */
  requestHeaders: Iterable<readonly [string, string]>;
  requestBody?: string | Uint8Array;
  /** Stream properties (source.address, connection.mtls, ...); request.* derive from headers. */
  properties?: Properties;
  /** Response when there is no `upstream` function; default [[":status","200"]]. */
  responseHeaders?: HeaderList;
  responseBody?: string | Uint8Array;
  /** Called with the upstream-visible request when the filter lets it through. */
  upstream?: (req: UpstreamRequest) => UpstreamResponse | Promise<UpstreamResponse>;
}

export interface RequestResult {
  contextId: number;
  /** Request headers as forwarded upstream; null when the request was not forwarded. */
  requestHeaders: HeaderList | null;
  requestBody: Buffer | null;
  /** The local reply the filter (or the failed-VM path) sent, if any. */
  localReply: LocalReply | null;
  /** Downstream-visible response. */
  status: number;
  responseHeaders: HeaderList;
  responseBody: Buffer;
  /** Filter state set with proxy_set_property, keyed "wasm.<path>" (UTF-8 decoded). */
  filterState: Record<string, string>;
  logs: LogEntry[];
  /** Module callbacks invoked for this stream, in order. */
  callbacks: string[];
  /** The VM is failed (a trap or proc_exit, now or earlier). */
  vmFailed: boolean;
  /** FAIL_OPEN skipped the filter for this stream. */
  bypassed: boolean;
  /** The filter returned PAUSE without a local reply and never continued: Envoy would hold the stream. */
  paused: boolean;
}

export interface FilterRun {
  contextId: number;
  callbacks: string[];
  logs: LogEntry[];
  bypassed: boolean;
}

export interface ChainResult extends RequestResult {
  /** Per filter, in chain order. The top-level contextId/callbacks/logs are the first filter's. */
  filters: FilterRun[];
}

export class PluginLoadError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "PluginLoadError";
  }
}
