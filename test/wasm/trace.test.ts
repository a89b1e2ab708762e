import assert from "node:assert/strict";
import { loadPlugin, type Plugin } from "../../wasm-filters/host/plugin.js";
import { assertConfigRefused, built, req, values } from "./helpers.js";

const VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TP = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;
const RID = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

describe("trace filter", () => {
  let p: Plugin;
  before(async () => {
    p = await loadPlugin({ wasm: built("trace"), pluginConfig: {} });
  });

  const traceOf = (tp: string): string => tp.slice(3, 35);

  it("keeps a valid traceparent and exposes its trace id", async () => {
    const r = await p.runRequest({ requestHeaders: req(["traceparent", VALID], ["tracestate", "vendor=1"]) });
    assert.deepEqual(values(r.requestHeaders, "traceparent"), [VALID]);
    assert.deepEqual(values(r.requestHeaders, "tracestate"), ["vendor=1"]);
    assert.equal(r.filterState["wasm.trace_id"], traceOf(VALID));
    assert.deepEqual(values(r.responseHeaders, "x-trace-id"), [traceOf(VALID)]);
  });

  const invalid: Array<[string, string]> = [
    ["wrong version", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
    ["version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
    ["uppercase hex", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"],
    ["all-zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
    ["all-zero parent id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"],
    ["short trace id", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"],
    ["long parent id", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7a-01"],
    ["trailing data", `${VALID}-extra`],
    ["non-hex", "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"],
    ["wrong separators", "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"],
    ["empty", ""],
  ];
  for (const [label, value] of invalid) {
    it(`replaces a traceparent with ${label}`, async () => {
      const r = await p.runRequest({ requestHeaders: req(["traceparent", value], ["tracestate", "vendor=1"]) });
      const tps = values(r.requestHeaders, "traceparent");
      assert.equal(tps.length, 1);
      assert.match(tps[0]!, TP);
      assert.notEqual(tps[0], value);
      assert.deepEqual(values(r.requestHeaders, "tracestate"), [], "tracestate goes with the dropped traceparent");
      assert.equal(r.filterState["wasm.trace_id"], traceOf(tps[0]!));
    });
  }

  it("treats two traceparent headers as invalid and leaves one", async () => {
    const r = await p.runRequest({ requestHeaders: req(["traceparent", VALID], ["traceparent", VALID]) });
    const tps = values(r.requestHeaders, "traceparent");
    assert.equal(tps.length, 1);
    assert.match(tps[0]!, TP);
  });

  it("generates a traceparent from random_get when none is sent", async () => {
    const rnd = await loadPlugin({ wasm: built("trace"), random: (b) => b.fill(0xab) });
    const r = await rnd.runRequest({ requestHeaders: req() });
    assert.deepEqual(values(r.requestHeaders, "traceparent"), ["00-abababababababababababababababab-abababababababab-00"]);
    const a = await p.runRequest({ requestHeaders: req() });
    const b = await p.runRequest({ requestHeaders: req() });
    assert.notEqual(values(a.requestHeaders, "traceparent")[0], values(b.requestHeaders, "traceparent")[0]);
  });

  it("marks generated traceparents sampled only when sampleGenerated is true", async () => {
    const on = await loadPlugin({ wasm: built("trace"), pluginConfig: { sampleGenerated: true }, random: (b) => b.fill(0xab) });
    const r = await on.runRequest({ requestHeaders: req() });
    assert.deepEqual(values(r.requestHeaders, "traceparent"), ["00-abababababababababababababababab-abababababababab-01"]);
    const kept = await on.runRequest({ requestHeaders: req(["traceparent", VALID.replace(/-01$/, "-00")]) });
    assert.deepEqual(values(kept.requestHeaders, "traceparent"), [VALID.replace(/-01$/, "-00")], "an incoming decision is kept");
  });

  it("never emits all-zero ids even from an all-zero random source", async () => {
    const zero = await loadPlugin({ wasm: built("trace"), random: (b) => b.fill(0) });
    const r = await zero.runRequest({ requestHeaders: req() });
    assert.match(values(r.requestHeaders, "traceparent")[0]!, TP);
    assert.equal(values(r.requestHeaders, "traceparent")[0], "00-00000000000000000000000000000001-0000000000000001-00");
  });

  it("converts multi-header B3 (64-bit trace id padded)", async () => {
    const r = await p.runRequest({ requestHeaders: req(["x-b3-traceid", "463ac35c9f6413ad"], ["x-b3-spanid", "a2fb4a1d1a96d312"], ["x-b3-sampled", "1"]) });
    assert.deepEqual(values(r.requestHeaders, "traceparent"), ["00-0000000000000000463ac35c9f6413ad-a2fb4a1d1a96d312-01"]);
    assert.deepEqual(values(r.requestHeaders, "x-b3-traceid"), ["463ac35c9f6413ad"], "B3 headers stay for B3 tracers");
  });

  it("converts multi-header B3 with a 128-bit id, unsampled, and debug flag", async () => {
    const id = "80f198ee56343ba864fe8b2a57d3eff7";
    const un = await p.runRequest({ requestHeaders: req(["x-b3-traceid", id], ["x-b3-spanid", "e457b5a2e4d86bd1"], ["x-b3-sampled", "0"]) });
    assert.deepEqual(values(un.requestHeaders, "traceparent"), [`00-${id}-e457b5a2e4d86bd1-00`]);
    const dbg = await p.runRequest({ requestHeaders: req(["x-b3-traceid", id], ["x-b3-spanid", "e457b5a2e4d86bd1"], ["x-b3-flags", "1"]) });
    assert.deepEqual(values(dbg.requestHeaders, "traceparent"), [`00-${id}-e457b5a2e4d86bd1-01`]);
  });

  it("converts single-header b3", async () => {
    const id = "80f198ee56343ba864fe8b2a57d3eff7";
    const r = await p.runRequest({ requestHeaders: req(["b3", `${id}-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90`]) });
    assert.deepEqual(values(r.requestHeaders, "traceparent"), [`00-${id}-e457b5a2e4d86bd1-01`]);
    const d = await p.runRequest({ requestHeaders: req(["b3", `${id}-e457b5a2e4d86bd1-d`]) });
    assert.deepEqual(values(d.requestHeaders, "traceparent"), [`00-${id}-e457b5a2e4d86bd1-01`]);
    const n = await p.runRequest({ requestHeaders: req(["b3", `${id}-e457b5a2e4d86bd1`]) });
    assert.deepEqual(values(n.requestHeaders, "traceparent"), [`00-${id}-e457b5a2e4d86bd1-00`]);
  });

  it("prefers a valid traceparent over B3, and B3 over an invalid traceparent", async () => {
    const b3: [string, string] = ["b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"];
    const keep = await p.runRequest({ requestHeaders: req(["traceparent", VALID], b3) });
    assert.deepEqual(values(keep.requestHeaders, "traceparent"), [VALID]);
    const conv = await p.runRequest({ requestHeaders: req(["traceparent", "garbage"], b3) });
    assert.deepEqual(values(conv.requestHeaders, "traceparent"), ["00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01"]);
  });

  it("generates instead of converting malformed B3", async () => {
    for (const h of [
      [["b3", "0"]], [["b3", "xyz-e457b5a2e4d86bd1"]], [["b3", "80f198ee56343ba864fe8b2a57d3eff7-E457B5A2E4D86BD1"]],
      [["x-b3-traceid", "0000000000000000"], ["x-b3-spanid", "e457b5a2e4d86bd1"]],
      [["x-b3-traceid", "463ac35c9f6413ad"]],
    ] as Array<Array<[string, string]>>) {
      const r = await p.runRequest({ requestHeaders: req(...h) });
      const tp = values(r.requestHeaders, "traceparent")[0]!;
      assert.match(tp, TP);
      assert.ok(!tp.includes("e457b5a2e4d86bd1") && !tp.includes("463ac35c9f6413ad"), JSON.stringify(h));
    }
  });

  it("ignores B3 when acceptB3 is false", async () => {
    const q = await loadPlugin({ wasm: built("trace"), pluginConfig: { acceptB3: false } });
    const r = await q.runRequest({ requestHeaders: req(["b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"]) });
    assert.ok(!values(r.requestHeaders, "traceparent")[0]!.includes("80f198ee56343ba8"));
  });

  it("never overwrites or adds x-request-id", async () => {
    for (const extra of [[], [["traceparent", "bad"]], [["b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1"]]] as Array<Array<[string, string]>>) {
      const r = await p.runRequest({ requestHeaders: req(...extra) });
      assert.deepEqual(values(r.requestHeaders, "x-request-id"), [RID]);
    }
    const none = await p.runRequest({ requestHeaders: [[":method", "GET"], [":path", "/"]] });
    assert.deepEqual(values(none.requestHeaders, "x-request-id"), []);
  });

  it("returns the trace id in the configured response header and filter state path", async () => {
    const q = await loadPlugin({ wasm: built("trace"), pluginConfig: { responseHeader: "X-Correlation", property: "passgate.trace" } });
    const r = await q.runRequest({ requestHeaders: req(["traceparent", VALID]), responseHeaders: [[":status", "204"], ["x-correlation", "upstream-value"]] });
    assert.deepEqual(values(r.responseHeaders, "x-correlation"), [traceOf(VALID)]);
    assert.equal(r.filterState["wasm.passgate.trace"], traceOf(VALID));
    const off = await loadPlugin({ wasm: built("trace"), pluginConfig: { responseHeader: "", property: "" } });
    const o = await off.runRequest({ requestHeaders: req(["traceparent", VALID]) });
    assert.deepEqual(o.filterState, {});
    assert.deepEqual(values(o.responseHeaders, "x-trace-id"), []);
  });

  it("keeps per-stream trace ids apart", async () => {
    const a = await p.runRequest({ requestHeaders: req(["traceparent", VALID]) });
    const b = await p.runRequest({ requestHeaders: req() });
    assert.equal(values(a.responseHeaders, "x-trace-id")[0], traceOf(VALID));
    assert.equal(values(b.responseHeaders, "x-trace-id")[0], traceOf(values(b.requestHeaders, "traceparent")[0]!));
  });

  describe("bad plugin config is refused", () => {
    for (const [label, cfg, msg] of [
      ["not JSON", "trace_id", /not valid JSON/],
      ["responseHeader not a string", { responseHeader: 5 }, /responseHeader must be a string/],
      ["property not a string", { property: ["a"] }, /property must be a string/],
      ["acceptB3 not a bool", { acceptB3: "true" }, /acceptB3 must be true or false/],
      ["sampleGenerated not a bool", { sampleGenerated: 1 }, /sampleGenerated must be true or false/],
      ["not an object", "[]", /must be a JSON object/],
      ["unknown key", { header: "x" }, /unknown key "header"/],
    ] as Array<[string, unknown, RegExp]>) {
      it(label, () => assertConfigRefused(loadPlugin({ wasm: built("trace"), pluginConfig: cfg as object }), msg));
    }
  });
});
