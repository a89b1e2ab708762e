// The WASI subset Envoy registers (under wasi_unstable and wasi_snapshot_preview1):
// stdout/stderr as log lines, clocks, random_get, proc_exit; the rest answer "nothing".
import { Errno, MAX_RANDOM_BYTES, type ErrnoCode } from "../abi.js";
import type { HostFn, VmState } from "../vm.js";

/** Thrown by proc_exit: unwinds the module, and the plugin fails the VM. */
export class ProcExit extends Error {
  constructor(readonly exitCode: number) {
    super(`module called WASI proc_exit(${exitCode})`);
  }
}

const STDOUT = 1, STDERR = 2;
const CLOCK_REALTIME = 0, CLOCK_MONOTONIC = 1;

export const wasiCalls = {
  fd_write(vm: VmState, fd: number, iovs: number, n: number, nwritten: number): ErrnoCode {
    if (fd !== STDOUT && fd !== STDERR) return Errno.BADF;
    let total = 0;
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const base = iovs + 8 * i;
      if (!vm.mem.inBounds(base, 8)) return Errno.FAULT;
      const p = vm.mem.readU32(base), l = vm.mem.readU32(base + 4);
      const b = vm.mem.slice(p, l);
      if (b === null) return Errno.FAULT;
      parts.push(Buffer.from(b));
      total += l;
    }
    // Envoy logs stdout at info and stderr at error, one line per newline.
    let text = vm.stdio[fd] + Buffer.concat(parts).toString("utf8");
    let nl: number;
    while ((nl = text.indexOf("\n")) >= 0) {
      vm.record(fd === STDOUT ? "info" : "error", text.slice(0, nl), vm.active.id);
      text = text.slice(nl + 1);
    }
    vm.stdio[fd] = text;
    return vm.mem.setU32(nwritten, total) ? Errno.SUCCESS : Errno.FAULT;
  },
  fd_read(): ErrnoCode { return Errno.NOSYS; },
  fd_seek(): ErrnoCode { return Errno.SPIPE; },
  fd_close(): ErrnoCode { return Errno.BADF; },
  fd_fdstat_get(vm: VmState, fd: number, out: number): ErrnoCode {
    if (fd !== STDOUT && fd !== STDERR) return Errno.BADF;
    if (!vm.mem.inBounds(out >>> 0, 24)) return Errno.FAULT;
    const m = vm.mem.bytes();
    m.fill(0, out, out + 24);
    m[out] = 2; // character device
    return Errno.SUCCESS;
  },
  environ_get(): ErrnoCode { return Errno.SUCCESS; },
  environ_sizes_get(vm: VmState, c: number, s: number): ErrnoCode {
    return vm.mem.setU32(c, 0) && vm.mem.setU32(s, 0) ? Errno.SUCCESS : Errno.FAULT;
  },
  args_get(): ErrnoCode { return Errno.SUCCESS; },
  args_sizes_get(vm: VmState, c: number, s: number): ErrnoCode {
    return vm.mem.setU32(c, 0) && vm.mem.setU32(s, 0) ? Errno.SUCCESS : Errno.FAULT;
  },
  clock_time_get(vm: VmState, id: number, _precision: bigint, out: number): ErrnoCode {
    let t: bigint;
    if (id === CLOCK_REALTIME) t = vm.now();
    else if (id === CLOCK_MONOTONIC) t = process.hrtime.bigint();
    else return Errno.INVAL;
    return vm.mem.setU64(out, t) ? Errno.SUCCESS : Errno.FAULT;
  },
  random_get(vm: VmState, p: number, l: number): ErrnoCode {
    l >>>= 0;
    if (l > MAX_RANDOM_BYTES) return Errno.INVAL; // Envoy caps a call at 64 KiB
    const b = vm.mem.slice(p, l);
    if (b === null) return Errno.FAULT;
    if (vm.opts.random) vm.opts.random(b);
    else vm.random.fill(b);
    return Errno.SUCCESS;
  },
  proc_exit(_vm: VmState, code: number): void {
    throw new ProcExit(code);
  },
} satisfies Record<string, HostFn>;
