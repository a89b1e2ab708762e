// Linking as Envoy does it: the ABI version from the marker export, strict checks of every
// import and the callback exports against what proxy-wasm-cpp-host registers, and the
// imports object that routes each call to its host function with the VM state.
import {
  ABI_MARKER_PREFIX, WASI, WASI_MODULES, expectedExports, registeredImports, type AbiVersion,
} from "./abi.js";
import { ENV_CALLS, WASI_CALLS } from "./hostcalls/index.js";
import { PluginLoadError } from "./types.js";
import type { HostFn, VmState } from "./vm.js";
import type { ModuleShape } from "./wasm-binary.js";

const ABI_VERSIONS: readonly AbiVersion[] = ["0_1_0", "0_2_0", "0_2_1"];

/** The module's ABI version, or a PluginLoadError saying why Envoy could not pick one. */
export function abiVersionOf(shape: ModuleShape): AbiVersion {
  const markers = shape.exports.filter((e) => e.name.startsWith(ABI_MARKER_PREFIX)).map((e) => e.name.slice(ABI_MARKER_PREFIX.length));
  const abi = markers.find((m): m is AbiVersion => (ABI_VERSIONS as readonly string[]).includes(m));
  if (!abi) {
    throw new PluginLoadError("ABI_VERSION",
      markers.length
        ? `unsupported proxy-wasm ABI marker proxy_abi_version_${markers[0]}; Envoy knows 0_1_0, 0_2_0, 0_2_1`
        : "the module exports no proxy_abi_version_* marker, so Envoy cannot pick an ABI; export proxy_abi_version_0_2_1");
  }
  return abi;
}

/** Throws PluginLoadError("LINK") listing every reason Envoy would refuse to link the module. */
export function checkLinkable(shape: ModuleShape, abi: AbiVersion): void {
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
}

/** Filled in after instantiation: imports exist before the VM state they act on. */
export interface VmHolder { vm: VmState | null }

function bind(label: string, fn: HostFn, holder: VmHolder): (...args: never[]) => unknown {
  const f = fn as (vm: VmState, ...args: unknown[]) => unknown;
  return (...args: never[]): unknown => {
    const vm = holder.vm;
    if (!vm) throw new Error(`host function ${label} called during instantiation (start section); Envoy has no context yet`);
    vm.hostCalls.set(label, (vm.hostCalls.get(label) ?? 0) + 1);
    return f(vm, ...args);
  };
}

/** The imports object: every function Envoy registers for `abi`, bound to `holder`'s VM. */
export function buildImports(abi: AbiVersion, holder: VmHolder): WebAssembly.Imports {
  const env: Record<string, (...a: never[]) => unknown> = {};
  for (const key of registeredImports(abi).keys()) {
    const [mod, name] = key.split(".") as [string, string];
    if (mod !== "env") continue;
    const fn = ENV_CALLS[name];
    if (!fn) throw new Error(`host bug: ${key} is registered for ABI ${abi} but has no implementation in host/hostcalls`);
    env[name] = bind(name, fn, holder);
  }
  const wasi: Record<string, (...a: never[]) => unknown> = {};
  const calls = WASI_CALLS as Record<string, HostFn>;
  for (const name of Object.keys(WASI)) {
    const fn = calls[name];
    if (!fn) throw new Error(`host bug: WASI ${name} is registered but has no implementation in host/hostcalls/wasi.ts`);
    wasi[name] = bind(name, fn, holder);
  }
  const out: WebAssembly.Imports = { env };
  for (const m of WASI_MODULES) out[m] = wasi;
  return out;
}
