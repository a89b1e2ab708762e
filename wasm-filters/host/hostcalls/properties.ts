// proxy_get_property / proxy_set_property (set = filter state "wasm.<path>").
import { Status, type StatusCode } from "../abi.js";
import { encodeProperty, lookupProperty } from "../properties.js";
import type { HostFn, VmState } from "../vm.js";

export const propertyCalls = {
  proxy_get_property(vm: VmState, p: number, l: number, pp: number, lp: number): StatusCode {
    const raw = vm.mem.slice(p, l);
    if (raw === null) return Status.INVALID_MEMORY_ACCESS;
    const path = raw.toString("utf8").split("\0");
    if (path.length > 1 && path[path.length - 1] === "") path.pop();
    const v = lookupProperty(vm.active, path, vm.opts, vm.vmProps);
    if (v === undefined) return Status.NOT_FOUND;
    return vm.mem.copyBytesOut(encodeProperty(v), pp, lp);
  },
  proxy_set_property(vm: VmState, p: number, l: number, vp: number, vl: number): StatusCode {
    const key = vm.mem.slice(p, l), val = vm.mem.slice(vp, vl);
    if (key === null || val === null) return Status.INVALID_MEMORY_ACCESS;
    if (vm.active.isRoot) return Status.NOT_FOUND; // no stream info outside a stream
    vm.active.filterState.set(`wasm.${key.toString("utf8")}`, Buffer.from(val));
    return Status.OK;
  },
} satisfies Record<string, HostFn>;
