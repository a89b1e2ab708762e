// Clock and tick period (the host does not schedule ticks: Plugin.tick() runs one).
import { Status, type StatusCode } from "../abi.js";
import type { HostFn, VmState } from "../vm.js";

export const timeCalls = {
  proxy_get_current_time_nanoseconds(vm: VmState, out: number): StatusCode {
    return vm.mem.setU64(out, vm.now()) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  },
  proxy_set_tick_period_milliseconds(vm: VmState, ms: number): StatusCode {
    vm.tickMs = ms >>> 0;
    return Status.OK;
  },
} satisfies Record<string, HostFn>;
