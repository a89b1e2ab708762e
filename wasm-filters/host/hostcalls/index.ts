// Every host function this host implements, by import name (env.* and WASI).
import type { HostFn } from "../vm.js";
import { bufferCalls } from "./buffers.js";
import { headerMapCalls } from "./header-maps.js";
import { loggingCalls } from "./logging.js";
import { metricCalls } from "./metrics.js";
import { propertyCalls } from "./properties.js";
import { sharedDataCalls } from "./shared-data.js";
import { streamControlCalls } from "./stream-control.js";
import { timeCalls } from "./time.js";
import { miscCalls, unimplementedCalls } from "./unimplemented.js";

export { wasiCalls as WASI_CALLS, ProcExit } from "./wasi.js";

export const ENV_CALLS: Readonly<Record<string, HostFn>> = {
  ...headerMapCalls,
  ...bufferCalls,
  ...propertyCalls,
  ...streamControlCalls,
  ...loggingCalls,
  ...timeCalls,
  ...metricCalls,
  ...sharedDataCalls,
  ...unimplementedCalls,
  ...miscCalls,
};
