// A proxy-wasm host that drives a module the way Envoy's embedded host does (ABI 0.2.1;
// 0.1.0/0.2.0 link too). For tests, benchmarks and the local gateway. See README.md for
// what is emulated and what is not.
import { randomFillSync } from "node:crypto";
import {
  Action, BufferType, LogLevel, MapType, MAX_RANDOM_BYTES, Status, WASI, WASI_MODULES,
  ABI_MARKER_PREFIX, expectedExports, registeredImports,
  type AbiVersion, type LogLevelName,
} from "./abi.js";
import { HeaderMap, lowerKey } from "./headers.js";
import { decodePairs, pairsSize, writeLatin1, writePairs, type HeaderList } from "./pairs.js";
import { readModuleShape } from "./wasm-binary.js";

export type FailStrategy = "FAIL_CLOSE" | "FAIL_OPEN";
export type PropertyValue = string | number | bigint | boolean | Uint8Array | HeaderList;
/** Properties by dotted path ("connection.mtls") or nested objects ({ connection: { mtls: true } }). */
export interface Properties { [path: string]: PropertyValue | Properties | null | undefined }

export interface LoadPluginOptions {
  /** The module bytes. */
  wasm: Uint8Array | ArrayBuffer;
  /** Istio's WasmPlugin pluginConfig; an object is serialized as JSON. */
  pluginConfig?: string | object | Uint8Array;
  vmConfig?: string | Uint8Array;
  /** Root context id (Istio sets it from the WasmPlugin); default "". */
  rootId?: string;
  /** plugin_name property; default "passgate". */
  pluginName?: string;
  vmId?: string;
  /** Istio's default is FAIL_CLOSE. */
  failStrategy?: FailStrategy;
  /** Lowest level recorded and reported by proxy_get_log_level; default "info". */
  logLevel?: LogLevelName;
  /** VM-wide properties (e.g. "xds.node.metadata.NAME"), visible from every context. */
  properties?: Properties;
  /** Wall clock in ns (proxy_get_current_time_nanoseconds, WASI realtime). */
  clock?: () => bigint;
  /** Randomness for WASI random_get; default crypto.randomFillSync. */
  random?: (buf: Uint8Array) => void;
  /** Called for every recorded log line (module logs, WASI stdout/stderr, host warnings). */
  onLog?: (entry: LogEntry) => void;
}

export interface LogEntry { level: LogLevelName; message: string; contextId: number }

export interface LocalReply {
  status: number;
  body: Buffer;
  /** Extra headers the filter asked for. */
  headers: HeaderList;
  /** Response code details (spaces become "_", as in Envoy). */
  details: string;
  grpcStatus?: number;
}

export interface UpstreamResponse {
  /** Used when headers carry no ":status"; default 200. */
  status?: number;
  headers?: HeaderList;
  body?: string | Uint8Array;
}

export interface UpstreamRequest { headers: HeaderList; body: Buffer }

export interface RequestInput {
  /** Downstream request headers, including pseudo-headers (":method", ":path", ...). */
  requestHeaders: Iterable<readonly [string, string]>;
  requestBody?: string | Uint8Array;
  /** Stream properties (source.address, connection.mtls, ...); request.* derive from headers. */
  properties?: Properties;
  /** Response when there is no `upstream` function; default [[":status","200"]]. */
  responseHeaders?: HeaderList;
  responseBody?: string | Uint8Array;
  /** Called with the upstream-visible request when the filter lets it through. */
  upstream?: (req: UpstreamRequest) => UpstreamResponse | Promise<UpstreamResponse>;
}

export interface RequestResult {
  contextId: number;
  /** Request headers as forwarded upstream; null when the request was not forwarded. */
  requestHeaders: HeaderList | null;
  requestBody: Buffer | null;
  /** The local reply the filter (or the failed-VM path) sent, if any. */
  localReply: LocalReply | null;
  /** Downstream-visible response. */
  status: number;
  responseHeaders: HeaderList;
  responseBody: Buffer;
  /** Filter state set with proxy_set_property, keyed "wasm.<path>" (UTF-8 decoded). */
  filterState: Record<string, string>;
  logs: LogEntry[];
  /** Module callbacks invoked for this stream, in order. */
  callbacks: string[];
  /** The VM is failed (a trap or proc_exit, now or earlier). */
  vmFailed: boolean;
  /** FAIL_OPEN skipped the filter for this stream. */
  bypassed: boolean;
  /** The filter returned PAUSE without a local reply and never continued: Envoy would hold the stream. */
  paused: boolean;
}

export class PluginLoadError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "PluginLoadError";
  }
}

class ProcExit extends Error {
  constructor(readonly exitCode: number) {
    super(`module called WASI proc_exit(${exitCode})`);
  }
}

interface Metric { type: 0 | 1 | 2; name: string; value: bigint }

const EMPTY = Buffer.alloc(0);
const NO_PROPS: ReadonlyMap<string, PropertyValue> = new Map();

/** Per-context state: the root context has no stream. */
class Ctx {
  reqHeaders: HeaderMap | null = null;
  respHeaders: HeaderMap | null = null;
  reqMapOpen = false;
  respMapOpen = false;
  logPhase = false;
  reqBody: Buffer | null = null;
  respBody: Buffer | null = null;
  openBuffer = -1;
  localReply: LocalReply | null = null;
  continued = false;
  closed = false;
  filterState = new Map<string, Buffer>();
  logs: LogEntry[] = [];
  callbacks: string[] = [];
  /** Stream properties, flattened once per stream and shared by its filters (read only). */
  props: ReadonlyMap<string, PropertyValue> = NO_PROPS;
  constructor(readonly id: number, readonly isRoot: boolean) {}
}


function toBuf(v: string | Uint8Array | undefined): Buffer {
  if (v === undefined) return EMPTY;
  return typeof v === "string" ? Buffer.from(v, "utf8") : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function flatten(p: Properties | undefined, into: Map<string, PropertyValue>, prefix = ""): void {
  if (!p) return;
  for (const [k, v] of Object.entries(p)) {
    if (v === undefined || v === null) continue;
    const key = prefix + k;
    if (typeof v === "object" && !(v instanceof Uint8Array) && !Array.isArray(v)) flatten(v as Properties, into, key + ".");
    else into.set(key, v as PropertyValue);
  }
}

/** Serializes a property the way Envoy does: ints 8-byte LE, bools 1 byte, maps as pairs. */
function encodeProperty(v: PropertyValue): Buffer {
  if (typeof v === "string") return Buffer.from(v, "utf8");
  if (typeof v === "boolean") return Buffer.from([v ? 1 : 0]);
  if (typeof v === "bigint") { const b = Buffer.alloc(8); b.writeBigInt64LE(v); return b; }
  if (typeof v === "number") {
    const b = Buffer.alloc(8);
    if (Number.isInteger(v)) b.writeBigInt64LE(BigInt(v)); else b.writeDoubleLE(v);
    return b;
  }
  if (Array.isArray(v)) { const b = Buffer.alloc(pairsSize(v)); writePairs(v, b); return b; }
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export class Plugin {
  readonly abiVersion: AbiVersion;
  readonly failStrategy: FailStrategy;
  /** Every log line recorded (capped at the last 10,000). */
  readonly logs: LogEntry[] = [];
  /** How many times the module called each host function (cumulative). */
  readonly hostCalls = new Map<string, number>();
  /** Lifecycle callbacks of the root context, in order. */
  readonly rootCallbacks: string[] = [];
  private failure: string | null = null;
  private nextContextId = 1;
  private memBuf: ArrayBuffer | null = null;
  private memView: Buffer = EMPTY;
  private readonly memory: WebAssembly.Memory;
  private readonly ex: Record<string, (...a: number[]) => number | undefined>;
  private readonly root: Ctx;
  private active: Ctx;
  private readonly contexts = new Map<number, Ctx>();
  private readonly metrics = new Map<number, Metric>();
  private readonly metricIds = new Map<string, number>();
  private readonly shared = new Map<string, { value: Buffer; cas: number }>();
  private casCounter = 1;
  private tickMs = 0;
  private readonly vmProps = new Map<string, PropertyValue>();
  private readonly level: number;
  private readonly stdio = ["", "", ""];
  private pluginConfig: Buffer = EMPTY;
  private vmConfig: Buffer = EMPTY;
  private configPhase: "vm" | "plugin" | null = null;

  /** Use loadPlugin(). */
  private constructor(
    private readonly opts: LoadPluginOptions,
    abi: AbiVersion,
    instance: WebAssembly.Instance | null,
    memory: WebAssembly.Memory | null,
  ) {
    this.abiVersion = abi;
    this.failStrategy = opts.failStrategy ?? "FAIL_CLOSE";
    this.level = LogLevel[opts.logLevel ?? "info"];
    this.memory = memory ?? new WebAssembly.Memory({ initial: 0 });
    this.ex = (instance?.exports ?? {}) as unknown as Record<string, (...a: number[]) => number | undefined>;
    this.root = new Ctx(0, true);
    this.active = this.root;
    flatten(opts.properties, this.vmProps);
  }

  /** The root context's id (0 until start() gives it the first id, as Envoy does). */
  get rootContextId(): number {
    return this.root.id;
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
    return this.memory.buffer.byteLength;
  }
  get tickPeriodMs(): number {
    return this.tickMs;
  }

  /** Metrics by full name ("wasmcustom.<name>"). */
  getMetrics(): Map<string, { type: "counter" | "gauge" | "histogram"; value: bigint }> {
    const out = new Map<string, { type: "counter" | "gauge" | "histogram"; value: bigint }>();
    for (const m of this.metrics.values()) out.set(m.name, { type: (["counter", "gauge", "histogram"] as const)[m.type], value: m.value });
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
    // ABI version from the marker export, as Envoy does.
    const markers = shape.exports.filter((e) => e.name.startsWith(ABI_MARKER_PREFIX)).map((e) => e.name.slice(ABI_MARKER_PREFIX.length));
    const abi = markers.find((m): m is AbiVersion => m === "0_1_0" || m === "0_2_0" || m === "0_2_1");
    if (!abi) {
      throw new PluginLoadError("ABI_VERSION",
        markers.length
          ? `unsupported proxy-wasm ABI marker proxy_abi_version_${markers[0]}; Envoy knows 0_1_0, 0_2_0, 0_2_1`
          : "the module exports no proxy_abi_version_* marker, so Envoy cannot pick an ABI; export proxy_abi_version_0_2_1");
    }
    // Strict linking: every import must be something Envoy registers for this ABI, with the same type.
    const registered = registeredImports(abi);
    const problems: string[] = [];
    for (const imp of shape.imports) {
      const key = `${imp.module}.${imp.name}`;
      if (imp.kind !== "function") { problems.push(`imports ${imp.kind} ${key}; Envoy provides only functions (the module must define and export its memory)`); continue; }
      const want = registered.get(key);
      if (want === undefined) {
        let hint = "";
        if (key === "env.abort") hint = " (AssemblyScript: build with --use abort=<your function>)";
        else if (key === "env.seed") hint = " (AssemblyScript Math.random: use WASI random_get instead)";
        else if (key.startsWith("env.Date")) hint = " (AssemblyScript Date: use proxy_get_current_time_nanoseconds)";
        else if (key.startsWith("env.proxy_")) hint = ` (not registered for ABI ${abi.replace(/_/g, ".")})`;
        problems.push(`imports ${key}, which Envoy does not provide${hint}`);
      } else if (want !== imp.sig) {
        problems.push(`imports ${key} with type (${imp.sig}) but Envoy registers (${want})`);
      }
    }
    const mallocExport = shape.exports.find((e) => e.name === "malloc") ?? shape.exports.find((e) => e.name === "proxy_on_memory_allocate");
    if (!mallocExport) problems.push("exports neither malloc nor proxy_on_memory_allocate; Envoy needs one to copy data into the module");
    if (!shape.exports.some((e) => e.name === "memory" && e.kind === "memory")) problems.push("does not export its memory as \"memory\"");
    const want = expectedExports(abi);
    for (const e of shape.exports) {
      const sig = want.get(e.name);
      if (sig !== undefined && (e.kind !== "function" || e.sig !== sig)) {
        problems.push(`exports ${e.name} with type (${e.sig ?? e.kind}) but Envoy calls it as (${sig})`);
      }
    }
    if (problems.length) {
      throw new PluginLoadError("LINK", `Envoy would refuse this module: it ${problems.join("; it ")}.`);
    }
    let mod: WebAssembly.Module;
    try {
      mod = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
    } catch (e) {
      throw new PluginLoadError("COMPILE", `the Wasm module does not compile: ${(e as Error).message}`);
    }
    // Imports are bound to a Plugin created before instantiation (they need `this`).
    const holder: { p: Plugin | null } = { p: null };
    const imports = Plugin.buildImports(abi, holder);
    let instance: WebAssembly.Instance;
    try {
      instance = await WebAssembly.instantiate(mod, imports);
    } catch (e) {
      throw new PluginLoadError("START", `instantiating the module failed (start section trapped?): ${(e as Error).message}`);
    }
    const plugin = new Plugin(opts, abi, instance, instance.exports.memory as WebAssembly.Memory);
    holder.p = plugin;
    plugin.start();
    return plugin;
  }

  private static buildImports(abi: AbiVersion, holder: { p: Plugin | null }): WebAssembly.Imports {
    const env: Record<string, (...a: never[]) => unknown> = {};
    const call = (name: string) => {
      const label = name.slice(2); // "h_proxy_log" -> "proxy_log"
      return (...args: never[]): unknown => {
        const p = holder.p;
        if (!p) throw new Error(`host function ${label} called during instantiation (start section); Envoy has no context yet`);
        p.hostCalls.set(label, (p.hostCalls.get(label) ?? 0) + 1);
        return (p as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!(...args);
      };
    };
    for (const key of registeredImports(abi).keys()) {
      const [mod, name] = key.split(".") as [string, string];
      if (mod === "env") env[name] = call(`h_${name}`);
    }
    const wasi: Record<string, (...a: never[]) => unknown> = {};
    for (const name of Object.keys(WASI)) wasi[name] = call(`w_${name}`);
    const out: WebAssembly.Imports = { env };
    for (const m of WASI_MODULES) out[m] = wasi;
    return out;
  }

  private start(): void {
    // Envoy: _initialize, else _start, else __wasm_call_ctors, in the VM context.
    const init = ["_initialize", "_start", "__wasm_call_ctors"].find((n) => typeof this.ex[n] === "function");
    if (init) this.callRoot(init);
    if (this.failure) throw new PluginLoadError("START", `${init} trapped: ${this.failure}`);
    const id = this.nextContextId++;
    (this.root as { id: number }).id = id;
    this.contexts.set(id, this.root);
    this.vmConfig = toBuf(this.opts.vmConfig);
    const pc = this.opts.pluginConfig;
    this.pluginConfig = pc === undefined ? EMPTY
      : typeof pc === "string" || pc instanceof Uint8Array ? toBuf(pc) : Buffer.from(JSON.stringify(pc), "utf8");
    this.callRoot("proxy_on_context_create", id, 0);
    this.configPhase = "vm";
    const vmOk = this.callRoot("proxy_on_vm_start", id, this.vmConfig.length);
    this.configPhase = null;
    if (this.failure) throw new PluginLoadError("START", `proxy_on_vm_start trapped: ${this.failure}`);
    if (vmOk === 0) throw new PluginLoadError("START_FAILED", `proxy_on_vm_start returned false; Envoy fails the VM. ${this.recentErrors()}`);
    this.configPhase = "plugin";
    const ok = this.callRoot("proxy_on_configure", id, this.pluginConfig.length);
    this.configPhase = null;
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
    const prev = this.active;
    this.active = ctx;
    try {
      return fn(...args);
    } catch (e) {
      const msg = e instanceof ProcExit ? e.message : `${name} trapped: ${(e as Error).message}`;
      this.failure = msg;
      this.record("critical", `wasm VM failed: ${msg}`, ctx.id);
      return undefined;
    } finally {
      this.active = prev;
    }
  }

  private callRoot(name: string, ...args: number[]): number | undefined {
    const r = this.invoke(this.root, name, args);
    this.rootCallbacks.push(...this.root.callbacks);
    this.root.callbacks.length = 0;
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
    const c = new Ctx(this.nextContextId++, false);
    this.contexts.set(c.id, c);
    return c;
  }
  /** @internal */ dropContext(c: Ctx): void {
    this.contexts.delete(c.id);
  }
  /** @internal */ call(ctx: Ctx, name: string, ...args: number[]): number | undefined {
    return this.invoke(ctx, name, args);
  }
  /** @internal */ has(name: string): boolean {
    return typeof this.ex[name] === "function";
  }

  // ---- memory helpers -------------------------------------------------------------------

  private mem(): Buffer {
    const b = this.memory.buffer;
    if (b !== this.memBuf) { this.memBuf = b; this.memView = Buffer.from(b); }
    return this.memView;
  }
  private inBounds(ptr: number, len: number): boolean {
    return ptr >= 0 && len >= 0 && ptr + len <= this.memory.buffer.byteLength;
  }
  private slice(ptr: number, len: number): Buffer | null {
    ptr >>>= 0; len >>>= 0;
    if (!this.inBounds(ptr, len)) return null;
    return this.mem().subarray(ptr, ptr + len);
  }
  private str(ptr: number, len: number): string | null {
    const b = this.slice(ptr, len);
    return b === null ? null : b.toString("latin1", 0, b.length);
  }
  private setU32(ptr: number, v: number): boolean {
    ptr >>>= 0;
    if (!this.inBounds(ptr, 4)) return false;
    this.mem().writeUInt32LE(v >>> 0, ptr);
    return true;
  }
  private setU64(ptr: number, v: bigint): boolean {
    ptr >>>= 0;
    if (!this.inBounds(ptr, 8)) return false;
    this.mem().writeBigUInt64LE(BigInt.asUintN(64, v), ptr);
    return true;
  }
  /** Envoy's copyToPointerSize: malloc in the module, copy, write ptr and len (0,0 when empty). */
  private copyOut(size: number, fill: ((mem: Buffer, at: number) => void) | null, pp: number, lp: number): number {
    let ptr = 0;
    if (size > 0) {
      const malloc = this.ex.malloc ?? this.ex.proxy_on_memory_allocate;
      ptr = (malloc!(size) ?? 0) >>> 0;
      if (ptr === 0 || !this.inBounds(ptr, size)) return Status.INVALID_MEMORY_ACCESS;
      fill?.(this.mem(), ptr);
    }
    if (!this.setU32(pp, ptr) || !this.setU32(lp, size)) return Status.INVALID_MEMORY_ACCESS;
    return Status.OK;
  }
  private copyBytesOut(b: Uint8Array, pp: number, lp: number): number {
    return this.copyOut(b.length, (m, at) => m.set(b, at), pp, lp);
  }

  /** @internal */ record(level: LogLevelName, message: string, contextId: number): void {
    if (LogLevel[level] < this.level) return;
    const e: LogEntry = { level, message, contextId };
    this.logs.push(e);
    if (this.logs.length > 10_000) this.logs.splice(0, this.logs.length - 10_000);
    this.contexts.get(contextId)?.logs.push(e);
    this.opts.onLog?.(e);
  }

  // ---- header maps ------------------------------------------------------------------------

  /** The map for reads: available in its callback, and request/response headers in on_log. */
  private readMap(type: number): HeaderMap | null | undefined {
    const c = this.active;
    if (type === MapType.REQUEST_HEADERS) return c.reqMapOpen || c.logPhase ? c.reqHeaders : null;
    if (type === MapType.RESPONSE_HEADERS) return c.respMapOpen || c.logPhase ? c.respHeaders : null;
    if (type >= 0 && type <= MapType.HTTP_CALL_RESPONSE_TRAILERS) return null; // not emulated / not present
    return undefined; // bad type
  }
  /** The map for writes: only inside its callback (not in on_log). */
  private writeMap(type: number): HeaderMap | null {
    const c = this.active;
    if (type === MapType.REQUEST_HEADERS && c.reqMapOpen) return c.reqHeaders;
    if (type === MapType.RESPONSE_HEADERS && c.respMapOpen) return c.respHeaders;
    return null;
  }

  private h_proxy_get_header_map_value(type: number, kp: number, kl: number, pp: number, lp: number): number {
    const m = this.readMap(type);
    // Envoy: a map missing in the access-log phase is NOT_FOUND (0.2.x), otherwise BAD_ARGUMENT.
    if (!m) return m === null && this.active.logPhase ? Status.NOT_FOUND : Status.BAD_ARGUMENT;
    const k = this.str(kp, kl);
    if (k === null) return Status.INVALID_MEMORY_ACCESS;
    const v = m.get(k);
    if (v === undefined) return Status.NOT_FOUND;
    return this.copyOut(v.length, (mem, at) => writeLatin1(v, mem, at), pp, lp);
  }
  private h_proxy_add_header_map_value(type: number, kp: number, kl: number, vp: number, vl: number): number {
    const m = this.writeMap(type);
    if (!m) return Status.BAD_ARGUMENT;
    const k = this.str(kp, kl), v = this.str(vp, vl);
    if (k === null || v === null) return Status.INVALID_MEMORY_ACCESS;
    m.add(k, v);
    return Status.OK;
  }
  private h_proxy_replace_header_map_value(type: number, kp: number, kl: number, vp: number, vl: number): number {
    const m = this.writeMap(type);
    if (!m) return Status.BAD_ARGUMENT;
    const k = this.str(kp, kl), v = this.str(vp, vl);
    if (k === null || v === null) return Status.INVALID_MEMORY_ACCESS;
    m.replace(k, v);
    return Status.OK;
  }
  private h_proxy_remove_header_map_value(type: number, kp: number, kl: number): number {
    const m = this.writeMap(type);
    if (!m) return Status.BAD_ARGUMENT;
    const k = this.str(kp, kl);
    if (k === null) return Status.INVALID_MEMORY_ACCESS;
    m.remove(k);
    return Status.OK;
  }
  private h_proxy_get_header_map_pairs(type: number, pp: number, lp: number): number {
    const m = this.readMap(type);
    if (m === undefined) return Status.BAD_ARGUMENT;
    if (m === null || m.size === 0) {
      // Envoy: an unavailable or empty map is OK with ptr 0, len 0.
      return this.setU32(pp, 0) && this.setU32(lp, 0) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
    }
    const list = m.entries;
    return this.copyOut(pairsSize(list), (mem, at) => writePairs(list, mem, at), pp, lp);
  }
  private h_proxy_set_header_map_pairs(type: number, ptr: number, len: number): number {
    const m = this.writeMap(type);
    if (!m) return Status.BAD_ARGUMENT;
    const b = this.slice(ptr, len);
    if (b === null) return Status.INVALID_MEMORY_ACCESS;
    const pairs = decodePairs(b);
    if (pairs === null) this.record("warn", "host: proxy_set_header_map_pairs got a malformed or oversized pairs buffer; Envoy decodes it as empty and clears the map", this.active.id);
    m.clear();
    for (const [k, v] of pairs ?? []) m.add(k, v);
    return Status.OK;
  }
  private h_proxy_get_header_map_size(type: number, out: number): number {
    // Envoy sizes the mutable map, so not in on_log (unlike get and pairs).
    const m = this.writeMap(type);
    if (!m) return Status.BAD_ARGUMENT;
    return this.setU32(out, m.byteSize()) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  }

  // ---- buffers ----------------------------------------------------------------------------

  private buffer(type: number): Buffer | null {
    const c = this.active;
    if (type === BufferType.PLUGIN_CONFIGURATION && this.configPhase === "plugin") return this.pluginConfig;
    if (type === BufferType.VM_CONFIGURATION) return this.vmConfig; // Envoy: any time
    if (type === BufferType.REQUEST_BODY && c.openBuffer === type) return c.reqBody;
    if (type === BufferType.RESPONSE_BODY && c.openBuffer === type) return c.respBody;
    return null;
  }
  private h_proxy_get_buffer_bytes(type: number, start: number, max: number, pp: number, lp: number): number {
    start >>>= 0; max >>>= 0;
    if (type >>> 0 > 8) return Status.BAD_ARGUMENT; // past WasmBufferType::MAX (CallData)
    const b = this.buffer(type);
    if (!b) return Status.NOT_FOUND;
    // Envoy clamps: a start past the end reads nothing, a long read stops at the end.
    if (start >= b.length) return this.copyBytesOut(EMPTY, pp, lp);
    return this.copyBytesOut(b.subarray(start, Math.min(b.length, start + max)), pp, lp);
  }
  private h_proxy_get_buffer_status(type: number, lenPtr: number, flagsPtr: number): number {
    const b = this.buffer(type);
    if (!b) return Status.NOT_FOUND;
    // Bodies arrive whole (one body callback with end_of_stream), so every buffer is at its end.
    return this.setU32(lenPtr, b.length) && this.setU32(flagsPtr, 1) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  }
  private h_proxy_set_buffer_bytes(type: number, start: number, size: number, vp: number, vl: number): number {
    const c = this.active;
    const b = this.buffer(type);
    if (!b || (type !== BufferType.REQUEST_BODY && type !== BufferType.RESPONSE_BODY)) return Status.NOT_FOUND;
    const v = this.slice(vp, vl);
    if (v === null) return Status.INVALID_MEMORY_ACCESS;
    let next: Buffer;
    // Envoy's body semantics: prepend, replace all, or append.
    if (start === 0 && size === 0) next = Buffer.concat([v, b]);
    else if (start === 0 && size >= b.length) next = Buffer.from(v);
    else if (start >= b.length) next = Buffer.concat([b, v]);
    else return Status.BAD_ARGUMENT;
    if (type === BufferType.REQUEST_BODY) c.reqBody = next; else c.respBody = next;
    return Status.OK;
  }

  // ---- properties -------------------------------------------------------------------------

  private property(ctx: Ctx, path: string[]): PropertyValue | undefined {
    const dotted = path.join(".");
    const head = path[0];
    if (dotted === "plugin_name") return this.opts.pluginName ?? "passgate";
    if (dotted === "plugin_root_id") return this.opts.rootId ?? "";
    if (dotted === "plugin_vm_id") return this.opts.vmId ?? "";
    if (!ctx.isRoot) {
      const own = ctx.props.get(dotted);
      if (own !== undefined) return own;
      const rq = ctx.reqHeaders;
      if (head === "request" && rq && path.length >= 2) {
        const p = rq.get(":path");
        switch (path[1]) {
          case "path": return p;
          case "url_path": return p === undefined ? undefined : p.split("?")[0];
          case "query": return p === undefined || !p.includes("?") ? undefined : p.slice(p.indexOf("?") + 1);
          case "host": return rq.get(":authority");
          case "method": return rq.get(":method");
          case "scheme": return rq.get(":scheme");
          case "id": return rq.get("x-request-id");
          case "referer": return rq.get("referer");
          case "useragent": return rq.get("user-agent");
          case "headers":
            if (path.length === 2) return rq.toList();
            if (path.length === 3) { const all = rq.getAll(path[2]!); return all.length ? all.join(",") : undefined; }
        }
      }
      const rs = ctx.respHeaders;
      if (head === "response" && rs && path.length >= 2) {
        if (path[1] === "code") { const s = Number(rs.get(":status")); return Number.isFinite(s) ? s : undefined; }
        if (path[1] === "code_details" && ctx.localReply) return ctx.localReply.details;
        if (path[1] === "headers" && path.length === 2) return rs.toList();
        if (path[1] === "headers" && path.length === 3) { const all = rs.getAll(path[2]!); return all.length ? all.join(",") : undefined; }
      }
      const fs = ctx.filterState.get(`wasm.${path.join("\0")}`);
      if (fs) return fs;
    }
    return this.vmProps.get(dotted);
  }

  private h_proxy_get_property(p: number, l: number, pp: number, lp: number): number {
    const raw = this.slice(p, l);
    if (raw === null) return Status.INVALID_MEMORY_ACCESS;
    const path = raw.toString("utf8").split("\0");
    if (path.length > 1 && path[path.length - 1] === "") path.pop();
    const v = this.property(this.active, path);
    if (v === undefined) return Status.NOT_FOUND;
    return this.copyBytesOut(encodeProperty(v), pp, lp);
  }
  private h_proxy_set_property(p: number, l: number, vp: number, vl: number): number {
    const key = this.slice(p, l), val = this.slice(vp, vl);
    if (key === null || val === null) return Status.INVALID_MEMORY_ACCESS;
    if (this.active.isRoot) return Status.NOT_FOUND; // no stream info outside a stream
    this.active.filterState.set(`wasm.${key.toString("utf8")}`, Buffer.from(val));
    return Status.OK;
  }

  // ---- local replies and stream control -------------------------------------------------

  private h_proxy_send_local_response(status: number, dp: number, dl: number, bp: number, bl: number, hp: number, hl: number, grpc: number): number {
    const c = this.active;
    if (c.isRoot) return Status.BAD_ARGUMENT;
    const details = this.slice(dp, dl), body = this.slice(bp, bl), hdrs = this.slice(hp, hl);
    if (details === null || body === null || hdrs === null) return Status.INVALID_MEMORY_ACCESS;
    if (c.localReply) return Status.OK; // Envoy sends only the first
    const headers = decodePairs(hdrs) ?? [];
    c.localReply = {
      status: status >>> 0,
      body: Buffer.from(body),
      headers: headers.map(([k, v]) => [lowerKey(k), v]),
      details: details.toString("utf8").replace(/\s/g, "_"),
      ...(grpc >= 0 && grpc <= 16 ? { grpcStatus: grpc } : {}),
    };
    return Status.OK;
  }
  private h_proxy_continue_stream(type: number): number {
    if (type !== 0 && type !== 1) return Status.BAD_ARGUMENT;
    this.active.continued = true;
    return Status.OK;
  }
  private h_proxy_close_stream(type: number): number {
    if (type !== 0 && type !== 1) return Status.BAD_ARGUMENT;
    this.active.closed = true;
    return Status.OK;
  }
  private h_proxy_continue_request(): number { this.active.continued = true; return Status.OK; }
  private h_proxy_continue_response(): number { this.active.continued = true; return Status.OK; }
  private h_proxy_clear_route_cache(): number { return Status.OK; }
  private h_proxy_get_configuration(pp: number, lp: number): number {
    return this.copyBytesOut(this.pluginConfig, pp, lp);
  }

  // ---- logging, time, metrics -----------------------------------------------------------

  private h_proxy_log(level: number, p: number, l: number): number {
    const b = this.slice(p, l);
    if (b === null) return Status.INVALID_MEMORY_ACCESS;
    const name = (Object.keys(LogLevel) as LogLevelName[])[level];
    if (!name) return Status.BAD_ARGUMENT;
    this.record(name, b.toString("utf8"), this.active.id);
    return Status.OK;
  }
  private h_proxy_get_log_level(out: number): number {
    return this.setU32(out, this.level) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  }
  private now(): bigint {
    return this.opts.clock ? this.opts.clock() : BigInt(Date.now()) * 1_000_000n;
  }
  private h_proxy_get_current_time_nanoseconds(out: number): number {
    return this.setU64(out, this.now()) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  }
  private h_proxy_set_tick_period_milliseconds(ms: number): number {
    this.tickMs = ms >>> 0;
    return Status.OK;
  }
  private h_proxy_define_metric(type: number, np: number, nl: number, out: number): number {
    if (type !== 0 && type !== 1 && type !== 2) return Status.BAD_ARGUMENT;
    const n = this.slice(np, nl);
    if (n === null) return Status.INVALID_MEMORY_ACCESS;
    const name = `wasmcustom.${n.toString("utf8")}`;
    let id = this.metricIds.get(`${type}:${name}`);
    if (id === undefined) {
      // Envoy tags the type in the low bits of the id.
      id = ((this.metrics.size + 1) << 4) | type;
      this.metricIds.set(`${type}:${name}`, id);
      this.metrics.set(id, { type: type as 0 | 1 | 2, name, value: 0n });
    }
    return this.setU32(out, id) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  }
  private h_proxy_increment_metric(id: number, by: bigint): number {
    const m = this.metrics.get(id >>> 0);
    if (!m) return Status.NOT_FOUND;
    if (m.type === 0) { if (by <= 0n) return Status.BAD_ARGUMENT; m.value += by; return Status.OK; }
    if (m.type === 1) { m.value += by; return Status.OK; }
    return Status.BAD_ARGUMENT;
  }
  private h_proxy_record_metric(id: number, v: bigint): number {
    const m = this.metrics.get(id >>> 0);
    if (!m) return Status.NOT_FOUND;
    const value = BigInt.asUintN(64, v);
    if (m.type === 0) m.value += value; else m.value = value;
    return Status.OK;
  }
  private h_proxy_get_metric(id: number, out: number): number {
    const m = this.metrics.get(id >>> 0);
    if (!m) return Status.NOT_FOUND;
    if (m.type === 2) return Status.BAD_ARGUMENT;
    return this.setU64(out, m.value) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  }

  // ---- shared data, context switching, unimplemented --------------------------------------

  private h_proxy_get_shared_data(kp: number, kl: number, pp: number, lp: number, casp: number): number {
    const k = this.str(kp, kl);
    if (k === null) return Status.INVALID_MEMORY_ACCESS;
    const e = this.shared.get(k);
    if (!e) return Status.NOT_FOUND;
    const r = this.copyBytesOut(e.value, pp, lp);
    if (r !== Status.OK) return r;
    return this.setU32(casp, e.cas) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
  }
  private h_proxy_set_shared_data(kp: number, kl: number, vp: number, vl: number, cas: number): number {
    const k = this.str(kp, kl), v = this.slice(vp, vl);
    if (k === null || v === null) return Status.INVALID_MEMORY_ACCESS;
    const e = this.shared.get(k);
    if (cas !== 0 && e && e.cas !== cas >>> 0) return Status.CAS_MISMATCH;
    this.shared.set(k, { value: Buffer.from(v), cas: this.casCounter++ });
    return Status.OK;
  }
  private h_proxy_set_effective_context(id: number): number {
    const c = this.contexts.get(id >>> 0);
    if (!c) return Status.BAD_ARGUMENT;
    this.active = c;
    return Status.OK;
  }
  private h_proxy_done(): number { return Status.NOT_FOUND; }
  private h_pthread_equal(a: number, b: number): number { return a === b ? 1 : 0; }
  private unimplemented(name: string): number {
    this.record("warn", `host: ${name} is not emulated by this host (Envoy would perform it); returning UNIMPLEMENTED`, this.active.id);
    return Status.UNIMPLEMENTED;
  }
  private h_proxy_get_status(): number { return this.unimplemented("proxy_get_status"); }
  private h_proxy_http_call(): number { return this.unimplemented("proxy_http_call"); }
  private h_proxy_grpc_call(): number { return this.unimplemented("proxy_grpc_call"); }
  private h_proxy_grpc_stream(): number { return this.unimplemented("proxy_grpc_stream"); }
  private h_proxy_grpc_close(): number { return this.unimplemented("proxy_grpc_close"); }
  private h_proxy_grpc_cancel(): number { return this.unimplemented("proxy_grpc_cancel"); }
  private h_proxy_grpc_send(): number { return this.unimplemented("proxy_grpc_send"); }
  private h_proxy_register_shared_queue(): number { return this.unimplemented("proxy_register_shared_queue"); }
  private h_proxy_resolve_shared_queue(): number { return this.unimplemented("proxy_resolve_shared_queue"); }
  private h_proxy_dequeue_shared_queue(): number { return this.unimplemented("proxy_dequeue_shared_queue"); }
  private h_proxy_enqueue_shared_queue(): number { return this.unimplemented("proxy_enqueue_shared_queue"); }
  private h_proxy_call_foreign_function(): number { return this.unimplemented("proxy_call_foreign_function"); }

  // ---- WASI ------------------------------------------------------------------------------

  private w_fd_write(fd: number, iovs: number, n: number, nwritten: number): number {
    if (fd !== 1 && fd !== 2) return 8; // EBADF
    let total = 0;
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const base = iovs + 8 * i;
      if (!this.inBounds(base, 8)) return 21; // EFAULT
      const p = this.mem().readUInt32LE(base), l = this.mem().readUInt32LE(base + 4);
      const b = this.slice(p, l);
      if (b === null) return 21;
      parts.push(Buffer.from(b));
      total += l;
    }
    // Envoy logs stdout at info and stderr at error, one line per newline.
    let text = this.stdio[fd] + Buffer.concat(parts).toString("utf8");
    let nl: number;
    while ((nl = text.indexOf("\n")) >= 0) {
      this.record(fd === 1 ? "info" : "error", text.slice(0, nl), this.active.id);
      text = text.slice(nl + 1);
    }
    this.stdio[fd] = text;
    return this.setU32(nwritten, total) ? 0 : 21;
  }
  private w_fd_read(): number { return 52; } // ENOSYS
  private w_fd_seek(): number { return 70; } // ESPIPE
  private w_fd_close(): number { return 8; } // EBADF
  private w_fd_fdstat_get(fd: number, out: number): number {
    if (fd !== 1 && fd !== 2) return 8;
    if (!this.inBounds(out >>> 0, 24)) return 21;
    const m = this.mem();
    m.fill(0, out, out + 24);
    m[out] = 2; // character device
    return 0;
  }
  private w_environ_get(): number { return 0; }
  private w_environ_sizes_get(c: number, s: number): number { return this.setU32(c, 0) && this.setU32(s, 0) ? 0 : 21; }
  private w_args_get(): number { return 0; }
  private w_args_sizes_get(c: number, s: number): number { return this.setU32(c, 0) && this.setU32(s, 0) ? 0 : 21; }
  private w_clock_time_get(id: number, _precision: bigint, out: number): number {
    let t: bigint;
    if (id === 0) t = this.now();
    else if (id === 1) t = process.hrtime.bigint();
    else return 28; // EINVAL
    return this.setU64(out, t) ? 0 : 21;
  }
  private w_random_get(p: number, l: number): number {
    l >>>= 0;
    if (l > MAX_RANDOM_BYTES) return 28; // EINVAL: Envoy caps a call at 64 KiB
    const b = this.slice(p, l);
    if (b === null) return 21;
    if (this.opts.random) this.opts.random(b);
    else this.randomBytes(b);
    return 0;
  }
  // randomFillSync costs about as much for 24 bytes as for 4 KiB: draw from a pool.
  private pool = Buffer.alloc(0);
  private poolAt = 0;
  private randomBytes(out: Buffer): void {
    if (out.length > 1024) { randomFillSync(out); return; }
    if (this.poolAt + out.length > this.pool.length) {
      if (this.pool.length === 0) this.pool = Buffer.alloc(4096);
      randomFillSync(this.pool);
      this.poolAt = 0;
    }
    this.pool.copy(out, 0, this.poolAt, this.poolAt + out.length);
    this.pool.fill(0, this.poolAt, this.poolAt + out.length); // used bytes are not kept around
    this.poolAt += out.length;
  }
  private w_proc_exit(code: number): void {
    throw new ProcExit(code);
  }
}

/** One filter's share of an HTTP stream: Envoy's Context as an HTTP filter. */
class FilterStream {
  ctx: Ctx | null = null;
  failReplied = false; // Envoy's failure_local_reply_sent_
  bypassed = false;
  paused = false;

  constructor(readonly plugin: Plugin, private readonly props: ReadonlyMap<string, PropertyValue>) {}

  /** Envoy creates the VM context lazily, on the first callback (or in log()). */
  private created(): Ctx | null {
    if (this.ctx) return this.ctx;
    if (this.plugin.failed) return null;
    const c = this.plugin.newContext();
    c.props = this.props;
    this.ctx = c;
    this.plugin.call(c, "proxy_on_context_create", c.id, this.plugin.rootContextId);
    return c;
  }

  /** After a failure: FAIL_CLOSE answers 503 wasm_fail_stream once; FAIL_OPEN lets the stream go on. */
  private onFailure(): LocalReply | null {
    if (this.plugin.failStrategy === "FAIL_OPEN") { this.bypassed = true; return null; }
    if (this.failReplied) return null;
    this.failReplied = true;
    return failReply();
  }

  decode(headers: HeaderMap, body: { b: Buffer }): LocalReply | "continue" | "paused" {
    const c = this.created(); // null once the VM failed; creating it may fail it too
    if (!c || this.plugin.failed) return this.onFailure() ?? "continue";
    const eos = body.b.length === 0;
    c.reqHeaders = headers;
    c.reqBody = body.b;
    c.reqMapOpen = true;
    const r = this.plugin.call(c, "proxy_on_request_headers", c.id, headers.size, eos ? 1 : 0);
    c.reqMapOpen = false;
    if (this.plugin.failed) return this.onFailure() ?? "continue";
    if (c.localReply) return c.localReply;
    if (r === Action.PAUSE && !c.continued) { this.paused = true; return "paused"; }
    if (!eos && this.plugin.has("proxy_on_request_body")) {
      c.openBuffer = BufferType.REQUEST_BODY;
      c.continued = false;
      const rb = this.plugin.call(c, "proxy_on_request_body", c.id, body.b.length, 1);
      c.openBuffer = -1;
      body.b = c.reqBody ?? EMPTY;
      if (this.plugin.failed) return this.onFailure() ?? "continue";
      if (c.localReply) return c.localReply;
      if (rb === Action.PAUSE && !c.continued) { this.paused = true; return "paused"; }
    }
    return "continue";
  }

  /** Response path; returns a local reply that replaces the response, if any. */
  encode(headers: HeaderMap, body: { b: Buffer }, replying: LocalReply | null): LocalReply | null {
    const c = this.ctx;
    // Envoy skips the VM when no context was created or its failure reply was sent.
    if (!c || this.failReplied || this.bypassed) return null;
    if (this.plugin.failed) return this.onFailure();
    c.respHeaders = headers;
    c.respBody = body.b;
    c.respMapOpen = true;
    const eos = body.b.length === 0;
    const before = c.localReply;
    this.plugin.call(c, "proxy_on_response_headers", c.id, headers.size, eos ? 1 : 0);
    c.respMapOpen = false;
    if (this.plugin.failed) return this.onFailure();
    if (!eos && this.plugin.has("proxy_on_response_body")) {
      c.openBuffer = BufferType.RESPONSE_BODY;
      this.plugin.call(c, "proxy_on_response_body", c.id, body.b.length, 1);
      c.openBuffer = -1;
      body.b = c.respBody ?? EMPTY;
      if (this.plugin.failed) return this.onFailure();
    }
    // A local reply sent from the response path replaces the response (not the one being sent).
    if (c.localReply && c.localReply !== before && c.localReply !== replying) return c.localReply;
    return null;
  }

  /** Access log then teardown: on_log (creating the context if needed, as Envoy's log() does), on_done, on_delete. */
  finish(): void {
    if (this.plugin.failed) { if (this.ctx) this.plugin.dropContext(this.ctx); return; }
    const c = this.created();
    if (!c || this.plugin.failed) return;
    c.logPhase = true;
    this.plugin.call(c, "proxy_on_log", c.id);
    c.logPhase = false;
    this.plugin.call(c, "proxy_on_done", c.id);
    this.plugin.call(c, "proxy_on_delete", c.id);
    this.plugin.dropContext(c);
  }
}

export interface FilterRun {
  contextId: number;
  callbacks: string[];
  logs: LogEntry[];
  bypassed: boolean;
}

export interface ChainResult extends RequestResult {
  /** Per filter, in chain order. The top-level contextId/callbacks/logs are the first filter's. */
  filters: FilterRun[];
}

/**
 * Drives a stream through filters in Envoy's order: request callbacks first to last,
 * response callbacks last to first (from the filter that replied, for a local reply), then
 * on_log/on_done/on_delete. Yields the upstream request and receives the response.
 */
function* drive(plugins: Plugin[], input: RequestInput): Generator<UpstreamRequest, ChainResult, UpstreamResponse> {
  const props = new Map<string, PropertyValue>();
  flatten(input.properties, props);
  const streams = plugins.map((p) => new FilterStream(p, props));
  const req = HeaderMap.from(input.requestHeaders); // Envoy's codec: add() per header
  const body = { b: toBuf(input.requestBody) };
  let reply: LocalReply | null = null;
  let from = streams.length - 1;
  let paused = false;
  for (let i = 0; i < streams.length; i++) {
    const o = streams[i]!.decode(req, body);
    if (o === "paused") { paused = true; from = i; break; }
    if (o !== "continue") { reply = o; from = i; break; }
  }
  let forwarded: HeaderList | null = null;
  let status = 0;
  let respHeaders: HeaderList = [];
  let respBody: Buffer = EMPTY;
  if (!paused) {
    let map: HeaderMap;
    const rb: { b: Buffer } = { b: EMPTY };
    if (reply) map = localReplyResponse(reply, rb);
    else {
      // One copy: what the upstream received is what the result reports as forwarded (the
      // map itself stays with the filters, which may read it again in on_log).
      forwarded = req.toList();
      const r = yield { headers: forwarded, body: body.b };
      map = new HeaderMap();
      const headers = r.headers ?? [];
      if (!headers.some(([k]) => k === ":status")) map.add(":status", String(r.status ?? 200));
      for (const [k, v] of headers) map.add(k, v);
      rb.b = toBuf(r.body);
    }
    for (let i = from; i >= 0; i--) {
      const replaced = streams[i]!.encode(map, rb, reply);
      if (replaced) {
        // The replacement goes through the remaining (earlier) filters.
        reply = replaced;
        map = localReplyResponse(replaced, rb);
      }
    }
    // No copy: after the response callbacks nothing writes this map (on_log only reads it).
    respHeaders = map.entries;
    respBody = rb.b;
    const st = map.get(":status");
    status = st === undefined ? 0 : Number(st);
  }
  for (const s of streams) s.finish();
  const filterState: Record<string, string> = {};
  for (const s of streams) for (const [k, v] of s.ctx?.filterState ?? []) filterState[k] = v.toString("utf8");
  const filters: FilterRun[] = streams.map((s) => ({
    contextId: s.ctx?.id ?? 0, callbacks: s.ctx?.callbacks ?? [], logs: s.ctx?.logs ?? [], bypassed: s.bypassed,
  }));
  return {
    contextId: filters[0]?.contextId ?? 0,
    requestHeaders: forwarded,
    requestBody: forwarded ? body.b : null,
    localReply: reply,
    status,
    responseHeaders: respHeaders,
    responseBody: respBody,
    filterState,
    logs: filters[0]?.logs ?? [],
    callbacks: filters[0]?.callbacks ?? [],
    vmFailed: plugins.some((p) => p.failed),
    bypassed: streams.some((s) => s.bypassed),
    paused,
    filters,
  };
}

function defaultUpstream(input: RequestInput): UpstreamResponse {
  return { headers: input.responseHeaders, body: input.responseBody };
}

/** Runs one stream through a chain of filters (Envoy's filter order); `upstream` may be async. */
export async function runFilterChain(plugins: Plugin[], input: RequestInput): Promise<ChainResult> {
  const g = drive(plugins, input);
  let step = g.next();
  while (!step.done) step = g.next(input.upstream ? await input.upstream(step.value) : defaultUpstream(input));
  return step.value;
}

/** Synchronous runFilterChain (no async upstream). */
export function runFilterChainSync(plugins: Plugin[], input: RequestInput): ChainResult {
  const g = drive(plugins, input);
  let step = g.next();
  while (!step.done) {
    const r = input.upstream ? input.upstream(step.value) : defaultUpstream(input);
    if (r instanceof Promise) throw new TypeError("got a Promise from upstream(); use the async runRequest/runFilterChain for an async upstream");
    step = g.next(r);
  }
  return step.value;
}

function failReply(): LocalReply {
  // Envoy's failStream: 503, gRPC UNAVAILABLE, details wasm_fail_stream, empty body.
  return { status: 503, body: EMPTY, headers: [], details: "wasm_fail_stream", grpcStatus: 14 };
}

/** The response Envoy builds for a local reply before the encoder filters see it (body into `rb`). */
function localReplyResponse(r: LocalReply, rb: { b: Buffer }): HeaderMap {
  const map = new HeaderMap();
  map.add(":status", String(r.status));
  if (r.body.length > 0) {
    map.add("content-length", String(r.body.length));
    map.add("content-type", "text/plain");
  }
  for (const [k, v] of r.headers) map.add(k, v);
  rb.b = r.body;
  return map;
}

/**
 * Loads a proxy-wasm module as Envoy would: strict linking against the host functions of
 * its ABI version, start, root context, on_vm_start, on_configure. Throws PluginLoadError
 * with a reason when Envoy would refuse the module or the plugin.
 */
export async function loadPlugin(opts: LoadPluginOptions): Promise<Plugin> {
  return (Plugin as unknown as { load(o: LoadPluginOptions): Promise<Plugin> }).load(opts);
}

