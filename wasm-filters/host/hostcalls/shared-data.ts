// Shared data with compare-and-swap (one VM here, so "shared" means across contexts).
import { Status, type StatusCode } from "../abi.js";
import type { HostFn, VmState } from "../vm.js";

export const sharedDataCalls = {
  proxy_get_shared_data(vm: VmState, kp: number, kl: number, pp: number, lp: number, casp: number): StatusCode {
    const k = vm.mem.str(kp, kl);
    if (k === null) return Status.INVALID_MEMORY_ACCESS;
    const e = vm.shared.get(k);
    if (!e) return Status.NOT_FOUND;
    const r = vm.mem.copyBytesOut(e.value, pp, lp);
    if (r !== Status.OK) return r;
    return vm.mem.setU32(casp, e.cas) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  },
  proxy_set_shared_data(vm: VmState, kp: number, kl: number, vp: number, vl: number, cas: number): StatusCode {
    const k = vm.mem.str(kp, kl), v = vm.mem.slice(vp, vl);
    if (k === null || v === null) return Status.INVALID_MEMORY_ACCESS;
    const e = vm.shared.get(k);
    if (cas !== 0 && e && e.cas !== cas >>> 0) return Status.CAS_MISMATCH;
    vm.shared.set(k, { value: Buffer.from(v), cas: vm.casCounter++ });
    return Status.OK;
  },
} satisfies Record<string, HostFn>;
