// Public API of the proxy-wasm host.
export { loadPlugin, runFilterChain, runFilterChainSync, Plugin, PluginLoadError } from "./plugin.js";
export type {
  ChainResult, FailStrategy, FilterRun, LoadPluginOptions, LocalReply, LogEntry, Properties, PropertyValue, RequestInput,
  RequestResult, UpstreamRequest, UpstreamResponse,
} from "./plugin.js";
export { HeaderMap } from "./headers.js";
export { encodePairs, decodePairs, pairsSize, type HeaderList } from "./pairs.js";
export { readModuleShape } from "./wasm-binary.js";
export {
  Status, Action, MapType, BufferType, StreamType, MetricType, LogLevel, registeredImports, expectedExports,
  type StatusCode, type MapTypeCode, type BufferTypeCode, type StreamTypeCode, type MetricTypeCode,
} from "./abi.js";
export { loadBuiltFilter, buildDir } from "./built.js";
