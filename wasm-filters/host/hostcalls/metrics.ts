// Metrics: names get Envoy's "wasmcustom." prefix; each type accepts only Envoy's operations.
import { MetricType, Status, type MetricTypeCode, type StatusCode } from "../abi.js";
import type { HostFn, VmState } from "../vm.js";

function isMetricType(t: number): t is MetricTypeCode {
  return t === MetricType.COUNTER || t === MetricType.GAUGE || t === MetricType.HISTOGRAM;
}

export const metricCalls = {
  proxy_define_metric(vm: VmState, type: number, np: number, nl: number, out: number): StatusCode {
    if (!isMetricType(type)) return Status.BAD_ARGUMENT;
    const n = vm.mem.slice(np, nl);
    if (n === null) return Status.INVALID_MEMORY_ACCESS;
    const name = `wasmcustom.${n.toString("utf8")}`;
    let id = vm.metricIds.get(`${type}:${name}`);
    if (id === undefined) {
      // Envoy tags the type in the low bits of the id.
      id = ((vm.metrics.size + 1) << 4) | type;
      vm.metricIds.set(`${type}:${name}`, id);
      vm.metrics.set(id, { type, name, value: 0n });
    }
    return vm.mem.setU32(out, id) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  },
  proxy_increment_metric(vm: VmState, id: number, by: bigint): StatusCode {
    const m = vm.metrics.get(id >>> 0);
    if (!m) return Status.NOT_FOUND;
    if (m.type === MetricType.COUNTER) { if (by <= 0n) return Status.BAD_ARGUMENT; m.value += by; return Status.OK; }
    if (m.type === MetricType.GAUGE) { m.value += by; return Status.OK; }
    return Status.BAD_ARGUMENT;
  },
  proxy_record_metric(vm: VmState, id: number, v: bigint): StatusCode {
    const m = vm.metrics.get(id >>> 0);
    if (!m) return Status.NOT_FOUND;
    const value = BigInt.asUintN(64, v);
    if (m.type === MetricType.COUNTER) m.value += value; else m.value = value;
    return Status.OK;
  },
  proxy_get_metric(vm: VmState, id: number, out: number): StatusCode {
    const m = vm.metrics.get(id >>> 0);
    if (!m) return Status.NOT_FOUND;
    if (m.type === MetricType.HISTOGRAM) return Status.BAD_ARGUMENT;
    return vm.mem.setU64(out, m.value) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  },
} satisfies Record<string, HostFn>;
