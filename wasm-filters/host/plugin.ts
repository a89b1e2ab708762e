// A proxy-wasm host that drives a module the way Envoy's embedded host does (ABI 0.2.1;
// 0.1.0/0.2.0 link too). For tests, benchmarks and the local gateway. See README.md for
// what is emulated and what is not.
//
// This file is the plugin lifecycle: load (link.ts checks, instantiate), start (init
// export, root context, on_vm_start, on_configure), invoking callbacks in a context, and
// failing the VM on a trap. Host functions live in hostcalls/, memory access in memory.ts,
// stream driving in stream.ts.
import { LogLevel, type AbiVersion } from "./abi.js";
import { Ctx, EMPTY, toBuf } from "./context.js";
import { ProcExit } from "./hostcalls/index.js";
import { abiVersionOf, buildImports, checkLinkable, type VmHolder } from "./link.js";
import { GuestMemory } from "./memory.js";
import { runFilterChain, runFilterChainSync, type StreamHost } from "./stream.js";
import { PluginLoadError, type ChainResult, type FailStrategy, type LoadPluginOptions, type LogEntry, type RequestInput } from "./types.js";
import { VmState } from "./vm.js";
import { readModuleShape } from "./wasm-binary.js";

// Kept importable from here, where callers have always found them.
export { runFilterChain, runFilterChainSync } from "./stream.js";
export { PluginLoadError } from "./types.js";
export type {
  ChainResult, FailStrategy, FilterRun, LoadPluginOptions, LocalReply, LogEntry, Properties, PropertyValue, RequestInput,
  RequestResult, UpstreamRequest, UpstreamResponse,
} from "./types.js";

type Exports = Record<string, (...a: number[]) => number | undefined>;

const METRIC_TYPES = ["counter", "gauge", "histogram"] as const;

export class Plugin implements StreamHost {
  readonly abiVersion: AbiVersion;
  readonly failStrategy: FailStrategy;
  /** Every log line recorded (capped at the last 10,000). */
  readonly logs: LogEntry[];
  /** How many times the module called each host function (cumulative). */
  readonly hostCalls: Map<string, number>;
  /** Lifecycle callbacks of the root context, in order. */
  readonly rootCallbacks: string[] = [];
  private failure: string | null = null;
  private readonly ex: Exports;
  private readonly vm: VmState;

  /** Use loadPlugin(). */
  private constructor(
    private readonly opts: LoadPluginOptions,
    abi: AbiVersion,
    instance: WebAssembly.Instance | null,
    memory: WebAssembly.Memory | null,
  ) {
    this.abiVersion = abi;
    this.failStrategy = opts.failStrategy ?? "FAIL_CLOSE";
    this.ex = (instance?.exports ?? {}) as unknown as Exports;
    const mem = new GuestMemory(memory ?? new WebAssembly.Memory({ initial: 0 }), this.ex.malloc ?? this.ex.proxy_on_memory_allocate);
    this.vm = new VmState(opts, mem);
    this.logs = this.vm.logs;
    this.hostCalls = this.vm.hostCalls;
  }

  /** The root context's id (0 until start() gives it the first id, as Envoy does). */
  get rootContextId(): number {
    return this.vm.root.id;
  }
  /** True once a trap or proc_exit failed the VM. */
  get failed(): boolean {
    return this.failure !== null;
  }
  get failureReason(): string | null {
    return this.failure;
  }
  /** Current linear memory size in bytes. */
  get memoryBytes(): number {
    return this.vm.mem.byteLength;
  }
  get tickPeriodMs(): number {
    return this.vm.tickMs;
  }

  /** Metrics by full name ("wasmcustom.<name>"). */
  getMetrics(): Map<string, { type: "counter" | "gauge" | "histogram"; value: bigint }> {
    const out = new Map<string, { type: "counter" | "gauge" | "histogram"; value: bigint }>();
    for (const m of this.vm.metrics.values()) out.set(m.name, { type: METRIC_TYPES[m.type], value: m.value });
    return out;
  }

  // ---- loading --------------------------------------------------------------------------

  /** @internal */
  static async load(opts: LoadPluginOptions): Promise<Plugin> {
    const bytes = opts.wasm instanceof Uint8Array ? opts.wasm : new Uint8Array(opts.wasm);
    let shape;
    try {
      shape = readModuleShape(bytes);
    } catch (e) {
      throw new PluginLoadError("BAD_MODULE", `cannot read the Wasm module: ${(e as Error).message}`);
    }
    const abi = abiVersionOf(shape);
    checkLinkable(shape, abi);
    let mod: WebAssembly.Module;
    try {
      mod = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
    } catch (e) {
      throw new PluginLoadError("COMPILE", `the Wasm module does not compile: ${(e as Error).message}`);
    }
    // Imports exist before the VM state they act on: the holder is filled in below.
    const holder: VmHolder = { vm: null };
    let instance: WebAssembly.Instance;
    try {
      instance = await WebAssembly.instantiate(mod, buildImports(abi, holder));
    } catch (e) {
      throw new PluginLoadError("START", `instantiating the module failed (start section trapped?): ${(e as Error).message}`);
    }
    const plugin = new Plugin(opts, abi, instance, instance.exports.memory as WebAssembly.Memory);
    holder.vm = plugin.vm;
    plugin.start();
    return plugin;
  }

  private start(): void {
    const vm = this.vm;
    // Envoy: _initialize, else _start, else __wasm_call_ctors, in the VM context.
    const init = ["_initialize", "_start", "__wasm_call_ctors"].find((n) => typeof this.ex[n] === "function");
    if (init) this.callRoot(init);
    if (this.failure) throw new PluginLoadError("START", `${init} trapped: ${this.failure}`);
    const id = vm.nextContextId++;
    (vm.root as { id: number }).id = id;
    vm.contexts.set(id, vm.root);
    vm.vmConfig = toBuf(this.opts.vmConfig);
    const pc = this.opts.pluginConfig;
    vm.pluginConfig = pc === undefined ? EMPTY
      : typeof pc === "string" || pc instanceof Uint8Array ? toBuf(pc) : Buffer.from(JSON.stringify(pc), "utf8");
    this.callRoot("proxy_on_context_create", id, 0);
    vm.configPhase = "vm";
    const vmOk = this.callRoot("proxy_on_vm_start", id, vm.vmConfig.length);
    vm.configPhase = null;
    if (this.failure) throw new PluginLoadError("START", `proxy_on_vm_start trapped: ${this.failure}`);
    if (vmOk === 0) throw new PluginLoadError("START_FAILED", `proxy_on_vm_start returned false; Envoy fails the VM. ${this.recentErrors()}`);
    vm.configPhase = "plugin";
    const ok = this.callRoot("proxy_on_configure", id, vm.pluginConfig.length);
    vm.configPhase = null;
    if (this.failure) throw new PluginLoadError("CONFIGURE", `proxy_on_configure trapped: ${this.failure}`);
    if (ok === 0) {
      throw new PluginLoadError("CONFIGURE_FAILED",
        `proxy_on_configure returned false: the filter refused its pluginConfig, so Envoy rejects the plugin. ${this.recentErrors()}`);
    }
  }

  private recentErrors(): string {
    const errs = this.logs.filter((l) => LogLevel[l.level] >= LogLevel.warn).map((l) => l.message);
    return errs.length ? `Module said: ${errs.slice(-3).join(" | ")}` : "The module logged nothing about why.";
  }

  /** Runs a module export in a context; a trap or proc_exit fails the VM. */
  private invoke(ctx: Ctx, name: string, args: number[]): number | undefined {
    const fn = this.ex[name];
    if (typeof fn !== "function" || this.failure) return undefined;
    ctx.callbacks.push(name);
    const vm = this.vm;
    const prev = vm.active;
    vm.active = ctx;
    try {
      return fn(...args);
    } catch (e) {
      const msg = e instanceof ProcExit ? e.message : `${name} trapped: ${(e as Error).message}`;
      this.failure = msg;
      vm.record("critical", `wasm VM failed: ${msg}`, ctx.id);
      return undefined;
    } finally {
      vm.active = prev;
    }
  }

  private callRoot(name: string, ...args: number[]): number | undefined {
    const root = this.vm.root;
    const r = this.invoke(root, name, args);
    this.rootCallbacks.push(...root.callbacks);
    root.callbacks.length = 0;
    return r;
  }

  /** Calls proxy_on_tick on the root context (timers are not scheduled by this host). */
  tick(): void {
    this.callRoot("proxy_on_tick", this.rootContextId);
  }

  // ---- streams ----------------------------------------------------------------------------

  /** Runs one HTTP stream through the filter; `upstream` may be async. */
  runRequest(input: RequestInput): Promise<ChainResult> {
    return runFilterChain([this], input);
  }

  /** Synchronous variant (no async upstream): for benchmarks and simple callers. */
  runRequestSync(input: RequestInput): ChainResult {
    return runFilterChainSync([this], input);
  }

  /** @internal */ newContext(): Ctx {
    const vm = this.vm;
    const c = new Ctx(vm.nextContextId++, false);
    vm.contexts.set(c.id, c);
    return c;
  }
  /** @internal */ dropContext(c: Ctx): void {
    this.vm.contexts.delete(c.id);
  }
  /** @internal */ call(ctx: Ctx, name: string, ...args: number[]): number | undefined {
    return this.invoke(ctx, name, args);
  }
  /** @internal */ has(name: string): boolean {
    return typeof this.ex[name] === "function";
  }
}

/**
 * Loads a proxy-wasm module as Envoy would: strict linking against the host functions of
 * its ABI version, start, root context, on_vm_start, on_configure. Throws PluginLoadError
 * with a reason when Envoy would refuse the module or the plugin.
 */
export async function loadPlugin(opts: LoadPluginOptions): Promise<Plugin> {
  return (Plugin as unknown as { load(o: LoadPluginOptions): Promise<Plugin> }).load(opts);
}
