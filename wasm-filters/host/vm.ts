// The state one VM's host calls share: memory, contexts and which one is active, config
// buffers, metrics, shared data, logs. Host-call groups (hostcalls/) read and change it;
// the plugin lifecycle (plugin.ts) owns it.
import { LogLevel, type LogLevelName, type MetricTypeCode } from "./abi.js";
import { Ctx, EMPTY } from "./context.js";
import type { GuestMemory } from "./memory.js";
import { flatten } from "./properties.js";
import { RandomPool } from "./random-pool.js";
import type { LoadPluginOptions, LogEntry, PropertyValue } from "./types.js";

export interface Metric { type: MetricTypeCode; name: string; value: bigint }

/** Log lines kept on the plugin (the oldest are dropped past this). */
const MAX_LOGS = 10_000;

export class VmState {
  readonly logs: LogEntry[] = [];
  /** How many times the module called each host function (cumulative). */
  readonly hostCalls = new Map<string, number>();
  readonly root = new Ctx(0, true);
  active: Ctx = this.root;
  readonly contexts = new Map<number, Ctx>();
  nextContextId = 1;
  readonly metrics = new Map<number, Metric>();
  readonly metricIds = new Map<string, number>();
  readonly shared = new Map<string, { value: Buffer; cas: number }>();
  casCounter = 1;
  tickMs = 0;
  readonly vmProps = new Map<string, PropertyValue>();
  /** Lowest recorded level (LogLevel value). */
  readonly level: number;
  /** Partial WASI stdout/stderr lines, by fd. */
  readonly stdio = ["", "", ""];
  pluginConfig: Buffer = EMPTY;
  vmConfig: Buffer = EMPTY;
  /** Which configure callback is running: buffer 7 is readable only in on_configure. */
  configPhase: "vm" | "plugin" | null = null;
  readonly random = new RandomPool();

  constructor(readonly opts: LoadPluginOptions, readonly mem: GuestMemory) {
    this.level = LogLevel[opts.logLevel ?? "info"];
    flatten(opts.properties, this.vmProps);
  }

  record(level: LogLevelName, message: string, contextId: number): void {
    if (LogLevel[level] < this.level) return;
    const e: LogEntry = { level, message, contextId };
    this.logs.push(e);
    if (this.logs.length > MAX_LOGS) this.logs.splice(0, this.logs.length - MAX_LOGS);
    this.contexts.get(contextId)?.logs.push(e);
    this.opts.onLog?.(e);
  }

  /** Wall clock in ns. */
  now(): bigint {
    return this.opts.clock ? this.opts.clock() : BigInt(Date.now()) * 1_000_000n;
  }
}

/** A host function as registered: the VM state first, then the module's arguments. */
export type HostFn = (vm: VmState, ...args: never[]) => number | void;
