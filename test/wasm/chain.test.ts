import assert from "node:assert/strict";
import { loadPlugin, runFilterChain, type Plugin } from "../../wasm-filters/host/plugin.js";
import { built, req, values, has } from "./helpers.js";

describe("wasm host: filter chain (sanitize then trace)", () => {
  let sanitize: Plugin;
  let trace: Plugin;
  before(async () => {
    sanitize = await loadPlugin({ wasm: built("sanitize"), pluginConfig: {} });
    trace = await loadPlugin({ wasm: built("trace"), pluginConfig: {} });
  });

  it("runs request callbacks in chain order and response callbacks in reverse", async () => {
    const seen: string[] = [];
    const r = await runFilterChain([sanitize, trace], {
      requestHeaders: req(["x-passport", "forged"]),
      upstream: ({ headers }) => {
        seen.push(...headers.map(([k]) => k));
        return { status: 200, headers: [["server", "backend"]], body: "ok" };
      },
    });
    assert.equal(seen.includes("x-passport"), false);
    assert.equal(seen.includes("traceparent"), true);
    assert.equal(has(r.responseHeaders, "server"), false);
    assert.equal(values(r.responseHeaders, "x-trace-id")[0], r.filterState["wasm.trace_id"]);
    assert.equal(r.filters.length, 2);
    for (const f of r.filters) {
      assert.deepEqual(f.callbacks, ["proxy_on_context_create", "proxy_on_request_headers", "proxy_on_response_headers", "proxy_on_done", "proxy_on_delete"]);
    }
  });

  it("a local reply from the first filter skips the second filter's header callbacks", async () => {
    const r = await runFilterChain([sanitize, trace], { requestHeaders: req(["content-length", "1"], ["content-length", "2"]) });
    assert.equal(r.status, 400);
    assert.deepEqual(r.filters[1]!.callbacks, ["proxy_on_context_create", "proxy_on_done", "proxy_on_delete"],
      "Envoy creates the context in log() and never calls encodeHeaders on a filter it did not decode");
    assert.equal(has(r.responseHeaders, "x-trace-id"), false);
  });
});

describe("wasm filters: host calls per request", () => {
  const delta = (p: Plugin, before: Map<string, number>): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const [k, v] of p.hostCalls) if (v - (before.get(k) ?? 0) > 0) out[k] = v - (before.get(k) ?? 0);
    return out;
  };
  it("sanitize reads all request headers with one get_header_map_pairs call", async () => {
    const p = await loadPlugin({ wasm: built("sanitize"), pluginConfig: {} });
    let before = new Map(p.hostCalls);
    await p.runRequest({ requestHeaders: req(["x-a", "b"]) });
    assert.deepEqual(delta(p, before), { proxy_get_header_map_pairs: 1, proxy_remove_header_map_value: 3 });
    before = new Map(p.hostCalls);
    await p.runRequest({ requestHeaders: req(["x-passport", "forged"], ["x-a", " b "]) });
    assert.deepEqual(delta(p, before), {
      proxy_get_header_map_pairs: 1, proxy_set_header_map_pairs: 1, proxy_increment_metric: 1, proxy_remove_header_map_value: 3,
    });
  });
  it("trace keeps a valid traceparent with one read, one set_property and one response write", async () => {
    const p = await loadPlugin({ wasm: built("trace"), pluginConfig: {} });
    const before = new Map(p.hostCalls);
    await p.runRequest({ requestHeaders: req(["traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]) });
    assert.deepEqual(delta(p, before), { proxy_get_header_map_pairs: 1, proxy_set_property: 1, proxy_replace_header_map_value: 1 });
  });
});
