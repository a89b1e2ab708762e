// proxy_log / proxy_get_log_level.
import { LogLevel, Status, type LogLevelName, type StatusCode } from "../abi.js";
import type { HostFn, VmState } from "../vm.js";

const LEVEL_NAMES = Object.keys(LogLevel) as LogLevelName[];

export const loggingCalls = {
  proxy_log(vm: VmState, level: number, p: number, l: number): StatusCode {
    const b = vm.mem.slice(p, l);
    if (b === null) return Status.INVALID_MEMORY_ACCESS;
    const name = LEVEL_NAMES[level];
    if (!name) return Status.BAD_ARGUMENT;
    vm.record(name, b.toString("utf8"), vm.active.id);
    return Status.OK;
  },
  proxy_get_log_level(vm: VmState, out: number): StatusCode {
    return vm.mem.setU32(out, vm.level) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  },
} satisfies Record<string, HostFn>;
