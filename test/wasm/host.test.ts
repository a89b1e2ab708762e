import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import asc from "assemblyscript/asc";
import { loadPlugin, PluginLoadError, type Plugin } from "../../wasm-filters/host/plugin.js";
import { encodePairs, decodePairs } from "../../wasm-filters/host/pairs.js";
import { HeaderMap } from "../../wasm-filters/host/headers.js";
import { readModuleShape } from "../../wasm-filters/host/wasm-binary.js";
import { registeredImports } from "../../wasm-filters/host/abi.js";
import { buildDir } from "../../wasm-filters/host/built.js";
import {
  assemble, minimalFuncs, built, req, values, I32_CONST, UNREACHABLE, CALL, DROP,
} from "./helpers.js";

/** Compiles a test module whose `myAbort` replaces env.abort (Envoy has none). */
async function compileModule(name: string, source: string): Promise<Uint8Array> {
  const { binary, stderr } = await asc.compileString({ [`${name}.ts`]: source }, {
    runtime: "minimal", optimizeLevel: 1, use: [`abort=${name}/myAbort`],
  });
  assert.ok(binary, stderr.toString());
  return binary;
}

async function refused(bytes: Uint8Array, pattern: RegExp): Promise<PluginLoadError> {
  try {
    await loadPlugin({ wasm: bytes });
  } catch (e) {
    assert.ok(e instanceof PluginLoadError, `expected PluginLoadError, got ${String(e)}`);
    assert.match(e.message, pattern);
    return e;
  }
  assert.fail("the host accepted a module Envoy would refuse");
}

describe("wasm host: pairs encoding", () => {
  it("encodes {a:'1', b:'22'} exactly as the contract shows", () => {
    const hex = "02000000" + "01000000" + "01000000" + "01000000" + "02000000" + "61003100" + "6200323200";
    assert.equal(encodePairs([["a", "1"], ["b", "22"]]).toString("hex"), hex);
    assert.deepEqual(decodePairs(Buffer.from(hex, "hex")), [["a", "1"], ["b", "22"]]);
  });
  it("decodes malformed or oversized buffers as nothing, like Envoy", () => {
    assert.equal(decodePairs(Buffer.from("05000000", "hex")), null);
    const big = Buffer.alloc(4 + 8 * 1025 + 2 * 1025);
    big.writeUInt32LE(1025, 0);
    assert.equal(decodePairs(big), null);
    assert.deepEqual(decodePairs(new Uint8Array(0)), []);
  });
  it("keeps raw bytes (latin1) intact", () => {
    const v = "\u00ff\u0080caf\u00e9";
    assert.deepEqual(decodePairs(encodePairs([["k", v]])), [["k", v]]);
  });
});

describe("wasm host: header map semantics", () => {
  it("lowercases keys, returns the first value, merges add on inline headers only", () => {
    const m = HeaderMap.from([["X-Foo", "1"], ["x-foo", "2"], ["X-Forwarded-For", "1.1.1.1"], ["x-forwarded-for", "2.2.2.2"]]);
    assert.equal(m.get("x-foo"), "1");
    assert.deepEqual(m.getAll("x-foo"), ["1", "2"]);
    assert.deepEqual(m.getAll("x-forwarded-for"), ["1.1.1.1,2.2.2.2"]);
    m.add("cookie", "a=1");
    m.add("cookie", "b=2");
    assert.equal(m.get("cookie"), "a=1; b=2");
  });
  it("replace removes every copy then appends; remove is fine when absent; size is bytes", () => {
    const m = HeaderMap.from([["a", "1"], ["b", "2"], ["a", "3"]]);
    m.replace("a", "9");
    assert.deepEqual(m.toList(), [["b", "2"], ["a", "9"]]);
    m.remove("nope");
    assert.equal(m.byteSize(), 4);
  });
});

describe("wasm host: strict linking", () => {
  it("accepts the smallest valid module", async () => {
    const p = await loadPlugin({ wasm: assemble({ funcs: minimalFuncs() }) });
    assert.equal(p.abiVersion, "0_2_1");
  });
  it("refuses a module without the ABI marker", async () => {
    await refused(assemble({ funcs: [{ sig: "i:i", body: I32_CONST(8), export: "malloc" }] }), /proxy_abi_version/);
  });
  it("refuses a module without malloc", async () => {
    await refused(assemble({ funcs: [{ sig: ":", body: [], export: "proxy_abi_version_0_2_1" }] }), /malloc/);
  });
  it("refuses an import with the wrong signature", async () => {
    const m = assemble({ imports: [{ module: "env", name: "proxy_log", sig: "iI:i" }], funcs: minimalFuncs() });
    const e = await refused(m, /env\.proxy_log with type \(iI:i\) but Envoy registers \(iii:i\)/);
    assert.equal(e.code, "LINK");
  });
  it("refuses env.abort (AssemblyScript's default) with a hint", async () => {
    const m = assemble({ imports: [{ module: "env", name: "abort", sig: "iiii:" }], funcs: minimalFuncs() });
    await refused(m, /env\.abort, which Envoy does not provide.*--use abort=/);
  });
  it("refuses a 0.1.0-only host function in a 0.2.1 module", async () => {
    const m = assemble({ imports: [{ module: "env", name: "proxy_get_configuration", sig: "ii:i" }], funcs: minimalFuncs() });
    await refused(m, /proxy_get_configuration.*not registered for ABI 0\.2\.1/);
  });
  it("refuses a callback exported with the wrong signature", async () => {
    const m = assemble({ funcs: [...minimalFuncs(), { sig: "ii:i", body: I32_CONST(0), export: "proxy_on_request_headers" }] });
    await refused(m, /proxy_on_request_headers with type \(ii:i\) but Envoy calls it as \(iii:i\)/);
  });
  it("refuses an AssemblyScript module built with the defaults (env.abort)", async function () {
    this.timeout(60_000);
    const src = "export function proxy_abi_version_0_2_1(): void {}\n" +
      "export function malloc(n: usize): usize { return heap.alloc(n); }\n" +
      "export function proxy_on_request_headers(c: u32, n: u32, e: u32): u32 { const a = new Array<i32>(<i32>n); return a[5]; }\n";
    const { binary, stderr } = await asc.compileString(src, { runtime: "incremental", optimizeLevel: 1 });
    assert.ok(binary, stderr.toString());
    await refused(binary, /env\.abort/);
  });
  it("builds modules under 16 KiB that import only what Envoy registers, with a manifest", () => {
    built("sanitize");
    const manifest = JSON.parse(readFileSync(join(buildDir, "manifest.json"), "utf8")) as Record<string, { file: string; bytes: number; sha256: string }>;
    const allowed = registeredImports("0_2_1");
    for (const name of ["sanitize", "trace", "passthrough"] as const) {
      const bytes = built(name);
      assert.ok(bytes.length < 16 * 1024, `${name}.wasm is ${bytes.length} bytes`);
      assert.equal(manifest[name]?.bytes, bytes.length);
      assert.match(manifest[name]?.sha256 ?? "", /^[0-9a-f]{64}$/);
      const shape = readModuleShape(bytes);
      const exported = new Set(shape.exports.map((e) => e.name));
      for (const e of ["proxy_abi_version_0_2_1", "malloc", "proxy_on_memory_allocate", "memory"]) {
        assert.ok(exported.has(e), `${name} does not export ${e}`);
      }
      for (const imp of shape.imports) {
        assert.ok(allowed.has(`${imp.module}.${imp.name}`), `${name} imports ${imp.module}.${imp.name}`);
        assert.ok(!["abort", "seed", "trace"].includes(imp.name) && !imp.name.startsWith("Date"));
      }
    }
  });
  it("loads every built filter", async () => {
    for (const name of ["sanitize", "trace", "passthrough"] as const) {
      const p = await loadPlugin({ wasm: built(name) });
      assert.equal(p.failed, false, name);
    }
  });
});

// A probe module in AssemblyScript: in each callback it reports, through proxy_log, what
// the header-map calls return, so the test sees availability as the module does.
const PROBE = `
@external("env", "proxy_log") declare function proxy_log(l: i32, p: usize, n: usize): i32;
@external("env", "proxy_get_header_map_size") declare function size(m: i32, out: usize): i32;
@external("env", "proxy_get_header_map_pairs") declare function pairs(m: i32, pp: usize, lp: usize): i32;
@external("env", "proxy_add_header_map_value") declare function add(m: i32, k: usize, kl: usize, v: usize, vl: usize): i32;
@external("env", "proxy_get_header_map_value") declare function get(m: i32, k: usize, kl: usize, pp: usize, lp: usize): i32;
const OUT = memory.data(16);
export function myAbort(m: string | null, f: string | null, l: u32, c: u32): void { unreachable(); }
export function proxy_abi_version_0_2_1(): void {}
export function malloc(n: usize): usize { return heap.alloc(n); }
function say(s: string): void {
  const b = String.UTF8.encode(s);
  proxy_log(2, changetype<usize>(b), <usize>b.byteLength);
}
function probe(cb: string): void {
  const k = String.UTF8.encode("x-a");
  const v = String.UTF8.encode("v");
  const kp = changetype<usize>(k), vp = changetype<usize>(v);
  let s = cb;
  for (let m = 0; m < 3; m += 2) {
    store<u32>(OUT, 0);
    const sz = size(m, OUT).toString() + "/" + load<u32>(OUT).toString();
    const pr = pairs(m, OUT, OUT + 4);
    const plen = load<u32>(OUT + 4);
    const ad = add(m, kp, 3, vp, 1);
    const gt = get(m, kp, 3, OUT + 8, OUT + 12);
    s += " m" + m.toString() + ":size=" + sz + ",pairs=" + pr.toString() + "/" + plen.toString() +
      ",add=" + ad.toString() + ",get=" + gt.toString();
  }
  say(s);
}
export function proxy_on_context_create(c: u32, p: u32): void { say("create " + c.toString() + " " + p.toString()); }
export function proxy_on_vm_start(c: u32, n: u32): bool { say("vm_start " + c.toString()); return true; }
export function proxy_on_configure(c: u32, n: u32): bool { say("configure " + c.toString()); return true; }
export function proxy_on_request_headers(c: u32, n: u32, e: u32): i32 { probe("request_headers"); return 0; }
export function proxy_on_response_headers(c: u32, n: u32, e: u32): i32 { probe("response_headers"); return 0; }
export function proxy_on_log(c: u32): void { probe("log"); }
export function proxy_on_done(c: u32): bool { probe("done"); return true; }
export function proxy_on_delete(c: u32): void { say("delete " + c.toString()); }
`;

describe("wasm host: lifecycle and header map availability", function () {
  this.timeout(60_000);
  let probe: Plugin;
  before(async () => {
    probe = await loadPlugin({ wasm: await compileModule("probe", PROBE), pluginConfig: "{}" });
  });

  it("runs the root lifecycle then the stream callbacks in Envoy's order", async () => {
    assert.deepEqual(probe.rootCallbacks.filter((c) => c.startsWith("proxy_")), ["proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure"]);
    const r = await probe.runRequest({ requestHeaders: req() });
    assert.deepEqual(r.callbacks, [
      "proxy_on_context_create", "proxy_on_request_headers", "proxy_on_response_headers",
      "proxy_on_log", "proxy_on_done", "proxy_on_delete",
    ]);
    assert.equal(r.logs[0]!.message, `create ${r.contextId} ${probe.rootContextId}`);
    assert.equal(probe.rootContextId, 1);
    const r2 = await probe.runRequest({ requestHeaders: req() });
    assert.equal(r2.contextId, r.contextId + 1, "context ids share one counter");
  });

  it("opens each header map only in its own callback; on_log may read but not write", async () => {
    const r = await probe.runRequest({ requestHeaders: [[":path", "/"], ["x-a", "1"]], responseHeaders: [[":status", "200"]] });
    const line = (cb: string): string => r.logs.find((l) => l.message.startsWith(cb + " "))!.message;
    // In on_request_headers: request map live (size in bytes, add OK); response map absent.
    assert.equal(line("request_headers"), "request_headers m0:size=0/10,pairs=0/34,add=0,get=0 m2:size=2/0,pairs=0/0,add=2,get=2");
    // In on_response_headers the request map is gone (BAD_ARGUMENT; pairs OK with 0,0).
    assert.equal(line("response_headers"), "response_headers m0:size=2/0,pairs=0/0,add=2,get=2 m2:size=0/10,pairs=0/24,add=0,get=0");
    // on_log: get and pairs see both maps (access-log view); size and writes do not (Envoy's getMap).
    assert.match(line("log"), /^log m0:size=2\/0,pairs=0\/\d+,add=2,get=0 m2:size=2\/0,pairs=0\/\d+,add=2,get=0$/);
    assert.equal(line("done"), "done m0:size=2/0,pairs=0/0,add=2,get=2 m2:size=2/0,pairs=0/0,add=2,get=2");
    assert.deepEqual(values(r.requestHeaders, "x-a"), ["1", "v"], "x-a is not inline: add makes a new entry");
  });
});

describe("wasm host: traps and fail strategy", () => {
  // on_request_headers traps (unreachable) whenever it runs.
  const trapping = (): Uint8Array => assemble({
    funcs: [...minimalFuncs(), { sig: "iii:i", body: UNREACHABLE, export: "proxy_on_request_headers" }],
  });

  it("FAIL_CLOSE: the trapping stream and every later one get 503 wasm_fail_stream", async () => {
    const p = await loadPlugin({ wasm: trapping(), failStrategy: "FAIL_CLOSE" });
    let upstreamCalls = 0;
    const upstream = () => { upstreamCalls++; return { status: 200 }; };
    const r1 = await p.runRequest({ requestHeaders: req(), upstream });
    assert.equal(r1.status, 503);
    assert.equal(r1.localReply?.details, "wasm_fail_stream");
    assert.equal(p.failed, true);
    const r2 = await p.runRequest({ requestHeaders: req(), upstream });
    assert.equal(r2.status, 503);
    assert.deepEqual(r2.callbacks, []);
    assert.equal(upstreamCalls, 0);
  });

  it("FAIL_OPEN: streams pass without the filter once the VM failed", async () => {
    const p = await loadPlugin({ wasm: trapping(), failStrategy: "FAIL_OPEN" });
    const r1 = await p.runRequest({ requestHeaders: req() });
    assert.equal(r1.status, 200);
    assert.equal(r1.bypassed, true);
    const r2 = await p.runRequest({ requestHeaders: req(["x-k", "v"]) });
    assert.equal(r2.status, 200);
    assert.deepEqual(values(r2.requestHeaders, "x-k"), ["v"]);
  });

  it("proc_exit fails the VM like a trap", async () => {
    const m = assemble({
      imports: [{ module: "wasi_snapshot_preview1", name: "proc_exit", sig: "i:" }],
      funcs: [...minimalFuncs(), { sig: "iii:i", body: [...I32_CONST(3), ...CALL(0), ...I32_CONST(0)], export: "proxy_on_request_headers" }],
    });
    const p = await loadPlugin({ wasm: m });
    const r = await p.runRequest({ requestHeaders: req() });
    assert.equal(r.status, 503);
    assert.match(p.failureReason ?? "", /proc_exit\(3\)/);
  });

  it("a metric increment <= 0 is BAD_ARGUMENT and names get the wasmcustom. prefix", async () => {
    // define_metric(0, "c"@0, 1, out@8); then increment(id, by) for by = 0 and 3, each status
    // stored as the digit '0'+status at 16/17 and logged, so the test sees what the module got.
    const increment = (by: number, at: number): number[] => [
      ...I32_CONST(at), ...I32_CONST(48),
      ...I32_CONST(8), 0x28, 0x02, 0x00, 0x42, by, ...CALL(1), // i32.load id; i64.const by; call
      0x6a, 0x3a, 0x00, 0x00, // i32.add; i32.store8
    ];
    const m = assemble({
      imports: [
        { module: "env", name: "proxy_define_metric", sig: "iiii:i" },
        { module: "env", name: "proxy_increment_metric", sig: "iI:i" },
        { module: "env", name: "proxy_log", sig: "iii:i" },
      ],
      funcs: [...minimalFuncs(), {
        sig: "iii:i", export: "proxy_on_request_headers",
        body: [
          ...I32_CONST(0), ...I32_CONST(99), 0x3a, 0x00, 0x00, // i32.store8 "c" at 0
          ...I32_CONST(0), ...I32_CONST(0), ...I32_CONST(1), ...I32_CONST(8), ...CALL(0), ...DROP,
          ...increment(0, 16), ...increment(3, 17),
          ...I32_CONST(2), ...I32_CONST(16), ...I32_CONST(2), ...CALL(2), ...DROP, // log "<s0><s3>"
          ...I32_CONST(0),
        ],
      }],
    });
    const p = await loadPlugin({ wasm: m });
    const r = await p.runRequest({ requestHeaders: req() });
    assert.deepEqual(r.logs.map((l) => l.message), ["20"], "increment by 0: BAD_ARGUMENT (2); by 3: OK (0)");
    assert.equal(p.getMetrics().get("wasmcustom.c")?.value, 3n);
    assert.equal(p.failed, false);
  });
});

// Reads properties the way a filter does and logs "path=status:hex".
const PROPS = `
@external("env", "proxy_log") declare function proxy_log(l: i32, p: usize, n: usize): i32;
@external("env", "proxy_get_property") declare function getp(p: usize, n: usize, pp: usize, lp: usize): i32;
@external("env", "proxy_set_property") declare function setp(p: usize, n: usize, v: usize, vn: usize): i32;
const OUT = memory.data(8);
export function myAbort(m: string | null, f: string | null, l: u32, c: u32): void { unreachable(); }
export function proxy_abi_version_0_2_1(): void {}
export function malloc(n: usize): usize { return heap.alloc(n); }
function say(s: string): void { const b = String.UTF8.encode(s); proxy_log(2, changetype<usize>(b), <usize>b.byteLength); }
function bytes(s: string): ArrayBuffer {
  const b = String.UTF8.encode(s);
  const u = Uint8Array.wrap(b);
  for (let i = 0; i < u.length; i++) if (u[i] == 47) u[i] = 0; // "/" separates path segments here
  return b;
}
function hex(p: usize, n: usize): string {
  let s = "";
  for (let i: usize = 0; i < n; i++) { const v = load<u8>(p + i); s += (v < 16 ? "0" : "") + v.toString(16); }
  return s;
}
function read(path: string): string {
  const b = bytes(path);
  store<u32>(OUT, 0); store<u32>(OUT + 4, 0);
  const st = getp(changetype<usize>(b), <usize>b.byteLength, OUT, OUT + 4);
  return path + "=" + st.toString() + ":" + hex(load<u32>(OUT), load<u32>(OUT + 4));
}
function set(path: string, v: string): i32 {
  const k = bytes(path); const w = String.UTF8.encode(v);
  return setp(changetype<usize>(k), <usize>k.byteLength, changetype<usize>(w), <usize>w.byteLength);
}
export function proxy_on_configure(c: u32, n: u32): bool {
  say("root " + read("request/path") + " " + read("plugin_root_id") + " set=" + set("k", "v").toString());
  return true;
}
export function proxy_on_request_headers(c: u32, n: u32, e: u32): i32 {
  const s = set("my_key", "hi");
  say(read("source/port") + " " + read("connection/mtls") + " " + read("request/path") + " " + read("plugin_name") +
    " " + read("missing/x") + " " + read("my_key") + " set=" + s.toString() + " " + read("xds/node/metadata/NAME"));
  return 0;
}
`;

describe("wasm host: properties", function () {
  this.timeout(60_000);
  it("encodes ints as 8-byte LE, bools as 1 byte, strings raw; missing is NOT_FOUND; set_property is filter state", async () => {
    const p = await loadPlugin({ wasm: await compileModule("props", PROPS), pluginName: "pg", rootId: "r1", properties: { "xds.node.metadata.NAME": "gw-1" } });
    const hex = (s: string): string => Buffer.from(s).toString("hex");
    // Root context: no stream, so request.* and set_property are NOT_FOUND (1).
    assert.equal(p.logs[0]!.message, `root request/path=1: plugin_root_id=0:${hex("r1")} set=1`);
    const r = await p.runRequest({ requestHeaders: [[":path", "/a"]], properties: { source: { port: 443 }, "connection.mtls": true } });
    assert.equal(r.logs[0]!.message, [
      "source/port=0:bb01000000000000", "connection/mtls=0:01", `request/path=0:${hex("/a")}`, `plugin_name=0:${hex("pg")}`,
      "missing/x=1:", `my_key=0:${hex("hi")}`, "set=0", `xds/node/metadata/NAME=0:${hex("gw-1")}`,
    ].join(" "));
    assert.equal(r.filterState["wasm.my_key"], "hi");
  });
});

const REPLY = `
@external("env", "proxy_log") declare function proxy_log(l: i32, p: usize, n: usize): i32;
@external("env", "proxy_send_local_response") declare function reply(s: i32, d: usize, dl: usize, b: usize, bl: usize, h: usize, hl: usize, g: i32): i32;
export function myAbort(m: string | null, f: string | null, l: u32, c: u32): void { unreachable(); }
export function proxy_abi_version_0_2_1(): void {}
export function malloc(n: usize): usize { return heap.alloc(n); }
function say(s: string): void { const b = String.UTF8.encode(s); proxy_log(2, changetype<usize>(b), <usize>b.byteLength); }
// pairs {x-why: policy}
const PAIRS = memory.data<u8>([1,0,0,0, 5,0,0,0, 6,0,0,0, 120,45,119,104,121,0, 112,111,108,105,99,121,0]);
export function proxy_on_request_headers(c: u32, n: u32, e: u32): i32 {
  const d = String.UTF8.encode("denied by\\tpolicy");
  const b = String.UTF8.encode("no");
  const st = reply(403, changetype<usize>(d), <usize>d.byteLength, changetype<usize>(b), 2, PAIRS, 27, 99);
  say("sent " + st.toString());
  return 0; // Envoy stops the request anyway once a local reply is pending
}
export function proxy_on_response_headers(c: u32, n: u32, e: u32): i32 { say("response " + n.toString()); return 0; }
`;

describe("wasm host: local replies", function () {
  this.timeout(60_000);
  it("applies the reply after the callback, runs the response path on it, details whitespace -> _", async () => {
    const p = await loadPlugin({ wasm: await compileModule("reply", REPLY) });
    let upstream = false;
    const r = await p.runRequest({ requestHeaders: req(), upstream: () => { upstream = true; return {}; } });
    assert.equal(upstream, false);
    assert.equal(r.requestHeaders, null);
    assert.equal(r.status, 403);
    assert.deepEqual(r.localReply, { status: 403, body: Buffer.from("no"), headers: [["x-why", "policy"]], details: "denied_by_policy" });
    assert.deepEqual(r.responseHeaders, [[":status", "403"], ["content-length", "2"], ["content-type", "text/plain"], ["x-why", "policy"]]);
    assert.deepEqual(r.logs.map((l) => l.message), ["sent 0", "response 4"]);
    assert.equal(r.responseBody.toString(), "no");
  });
});
