import assert from "node:assert/strict";
import { loadPlugin, type Plugin } from "../../wasm-filters/host/plugin.js";
import type { HeaderList } from "../../wasm-filters/host/pairs.js";
import { assertConfigRefused, built, req, values, has } from "./helpers.js";

const load = (pluginConfig: unknown = {}): Promise<Plugin> =>
  loadPlugin({ wasm: built("sanitize"), pluginConfig: pluginConfig as object, failStrategy: "FAIL_CLOSE" });

describe("sanitize filter", () => {
  let p: Plugin;
  before(async () => {
    p = await load({ removeRequestHeaders: ["X-Debug-User"], removeRequestHeaderPrefixes: ["x-internal-"] });
  });

  const spoofed = [
    "x-passport", "x-passgate-user", "x-passgate-anything", "x-real-ip", "true-client-ip", "x-client-ip",
    "forwarded", "x-forwarded-host", "x-forwarded-port", "x-forwarded-prefix", "x-original-url",
    "x-original-forwarded-for", "x-debug-user", "x-internal-role",
  ];
  for (const name of spoofed) {
    it(`removes a client-set ${name}`, async () => {
      const r = await p.runRequest({ requestHeaders: req([name, "spoof"], [name.toUpperCase(), "again"]) });
      assert.equal(r.localReply, null);
      assert.equal(has(r.requestHeaders, name), false);
      assert.deepEqual(values(r.requestHeaders, "x-request-id"), ["7c9e6679-7425-40de-944b-e07fc1f90ae7"]);
      assert.deepEqual(values(r.requestHeaders, ":path"), ["/v1/things?x=1"]);
    });
  }

  it("keeps ordinary headers and their order untouched", async () => {
    const h = req(["x-forwarded-for", "1.2.3.4"], ["x-forwarded-proto", "https"], ["authorization", "Bearer t"]);
    const r = await p.runRequest({ requestHeaders: h });
    assert.deepEqual(r.requestHeaders, h);
  });

  it("removes x-forwarded-client-cert unless the connection is mTLS", async () => {
    const xfcc: [string, string] = ["x-forwarded-client-cert", "By=spiffe://evil;Hash=00"];
    const plain = await p.runRequest({ requestHeaders: req(xfcc), properties: { connection: { mtls: false } } });
    assert.equal(has(plain.requestHeaders, "x-forwarded-client-cert"), false);
    const none = await p.runRequest({ requestHeaders: req(xfcc) });
    assert.equal(has(none.requestHeaders, "x-forwarded-client-cert"), false, "missing property = not mTLS");
    const mtls = await p.runRequest({ requestHeaders: req(xfcc), properties: { "connection.mtls": true } });
    assert.deepEqual(values(mtls.requestHeaders, "x-forwarded-client-cert"), [xfcc[1]]);
  });

  const smuggling: Array<[string, HeaderList, string]> = [
    ["two differing content-length headers", [["content-length", "5"], ["content-length", "6"]], "conflicting_content_length"],
    ["a differing list in one content-length", [["content-length", "5, 6"]], "conflicting_content_length"],
    ["transfer-encoding with content-length", [["transfer-encoding", "chunked"], ["content-length", "5"]], "transfer_encoding_with_content_length"],
    ["a non-numeric content-length", [["content-length", "5x"]], "invalid_content_length"],
    ["an empty content-length element", [["content-length", "5,"]], "invalid_content_length"],
  ];
  for (const [label, extra, reason] of smuggling) {
    it(`refuses ${label} with 400`, async () => {
      let upstream = false;
      const r = await p.runRequest({ requestHeaders: req(...extra), upstream: () => { upstream = true; return {}; } });
      assert.equal(r.status, 400);
      assert.equal(r.localReply?.details, `passgate_sanitize.${reason}`);
      assert.equal(upstream, false);
      assert.equal(r.requestHeaders, null);
    });
  }

  it("forwards a repeated identical content-length once", async () => {
    const r = await p.runRequest({ requestHeaders: req(["content-length", "5"], ["content-length", "5"]), requestBody: "hello" });
    assert.equal(r.localReply, null);
    assert.deepEqual(values(r.requestHeaders, "content-length"), ["5"]);
  });

  for (const [label, value] of [["NUL", "a\u0000b"], ["CR", "a\rb"], ["LF", "a\nb"], ["ESC", "a\u001bb"], ["DEL", "a\u007fb"]] as const) {
    it(`refuses a ${label} in a header value with 400`, async () => {
      const r = await p.runRequest({ requestHeaders: req(["x-note", value]) });
      assert.equal(r.status, 400);
      assert.equal(r.localReply?.details, "passgate_sanitize.control_character_in_header");
    });
  }

  it("allows HTAB and obs-text inside values", async () => {
    const r = await p.runRequest({ requestHeaders: req(["x-note", "a\tb \u00e9"]) });
    assert.equal(r.localReply, null);
    assert.deepEqual(values(r.requestHeaders, "x-note"), ["a\tb \u00e9"]);
  });

  it("refuses header names that are not tokens", async () => {
    for (const name of ["bad name", "bad:name", "x-\u00e9", "a\u0001"]) {
      const r = await p.runRequest({ requestHeaders: req([name, "v"]) });
      assert.equal(r.status, 400, name);
      assert.equal(r.localReply?.details, "passgate_sanitize.invalid_header_name");
    }
  });

  it("trims surrounding whitespace from values, keeping duplicates separate", async () => {
    const r = await p.runRequest({ requestHeaders: req(["x-a", "  one \t"], ["x-a", "\ttwo"], ["x-b", "in side"]) });
    assert.deepEqual(values(r.requestHeaders, "x-a"), ["one", "two"]);
    assert.deepEqual(values(r.requestHeaders, "x-b"), ["in side"]);
  });

  it("does not trim when trimWhitespace is false", async () => {
    const q = await load({ trimWhitespace: false });
    const r = await q.runRequest({ requestHeaders: req(["x-a", " one "]) });
    assert.deepEqual(values(r.requestHeaders, "x-a"), [" one "]);
  });

  describe("underscore policies", () => {
    const h = req(["x_forwarded_for", "6.6.6.6"], ["x-ok", "1"]);
    it("drop (default) removes headers with underscores", async () => {
      const r = await p.runRequest({ requestHeaders: h });
      assert.equal(has(r.requestHeaders, "x_forwarded_for"), false);
      assert.deepEqual(values(r.requestHeaders, "x-ok"), ["1"]);
    });
    it("reject answers 400", async () => {
      const r = await (await load({ underscoreHeaders: "reject" })).runRequest({ requestHeaders: h });
      assert.equal(r.status, 400);
      assert.equal(r.localReply?.details, "passgate_sanitize.underscore_in_header_name");
    });
    it("allow keeps them", async () => {
      const r = await (await load({ underscoreHeaders: "allow" })).runRequest({ requestHeaders: h });
      assert.deepEqual(values(r.requestHeaders, "x_forwarded_for"), ["6.6.6.6"]);
    });
  });

  describe("431 limits", () => {
    it("answers 431 above maxRequestHeaders", async () => {
      const q = await load({ maxRequestHeaders: 10 });
      const ok = await q.runRequest({ requestHeaders: req(["a", "1"], ["b", "2"], ["c", "3"]) });
      assert.equal(ok.localReply, null);
      const r = await q.runRequest({ requestHeaders: req(["a", "1"], ["b", "2"], ["c", "3"], ["d", "4"]) });
      assert.equal(r.status, 431);
      assert.equal(r.localReply?.details, "passgate_sanitize.too_many_headers");
    });
    it("answers 431 above maxRequestHeaderBytes (keys plus values)", async () => {
      const q = await load({ maxRequestHeaderBytes: 300 });
      const r = await q.runRequest({ requestHeaders: req(["x-big", "v".repeat(200)]) });
      assert.equal(r.status, 431);
      assert.equal(r.localReply?.details, "passgate_sanitize.headers_too_large");
      assert.equal((await q.runRequest({ requestHeaders: req(["x-big", "v".repeat(50)]) })).localReply, null);
    });
    it("defaults to Envoy's 100 headers", async () => {
      const many = Array.from({ length: 100 }, (_, i): [string, string] => [`x-h${i}`, "1"]);
      assert.equal((await p.runRequest({ requestHeaders: many })).localReply, null);
      assert.equal((await p.runRequest({ requestHeaders: [...many, ["x-one-more", "1"]] })).status, 431);
    });
  });

  it("removes server, x-powered-by and x-envoy-upstream-service-time from responses", async () => {
    const r = await p.runRequest({
      requestHeaders: req(),
      responseHeaders: [[":status", "200"], ["server", "nginx"], ["x-powered-by", "PHP"], ["x-envoy-upstream-service-time", "3"], ["content-type", "text/html"]],
    });
    assert.deepEqual(r.responseHeaders, [[":status", "200"], ["content-type", "text/html"]]);
  });

  it("uses the configured response header list", async () => {
    const q = await load({ removeResponseHeaders: ["X-Backend"] });
    const r = await q.runRequest({ requestHeaders: req(), responseHeaders: [[":status", "200"], ["server", "s"], ["x-backend", "b1"]] });
    assert.deepEqual(r.responseHeaders, [[":status", "200"], ["server", "s"]]);
  });

  it("runs the response path on its own local replies (strips headers there too)", async () => {
    const r = await p.runRequest({ requestHeaders: req(["content-length", "1"], ["content-length", "2"]) });
    assert.equal(r.status, 400);
    assert.ok(r.callbacks.includes("proxy_on_response_headers"));
    assert.equal(r.responseBody.toString(), "Bad Request\n");
  });

  it("counts rejections and stripped headers as wasmcustom metrics", async () => {
    const q = await load();
    await q.runRequest({ requestHeaders: req(["x-passport", "x"], ["x-real-ip", "1"]) });
    await q.runRequest({ requestHeaders: req(["x-a", "\u0000"]) });
    const m = q.getMetrics();
    assert.equal(m.get("wasmcustom.passgate_sanitize_stripped_headers")?.value, 2n);
    assert.equal(m.get("wasmcustom.passgate_sanitize_rejected")?.value, 1n);
  });

  describe("bad plugin config makes on_configure return false and the host refuse the plugin", () => {
    const bad: Array<[string, unknown, RegExp]> = [
      ["not JSON", "{nope", /not valid JSON/],
      ["not an object", "[1,2]", /must be a JSON object/],
      ["names not strings", { removeRequestHeaders: [1] }, /removeRequestHeaders must be an array of strings/],
      ["names not an array", { removeRequestHeaders: "x-a" }, /removeRequestHeaders must be an array/],
      ["bad underscore policy", { underscoreHeaders: "maybe" }, /underscoreHeaders must be/],
      ["limit as string", { maxRequestHeaders: "100" }, /maxRequestHeaders must be a positive integer/],
      ["fractional limit", { maxRequestHeaderBytes: 1.5 }, /maxRequestHeaderBytes must be a positive integer/],
      ["trim not bool", { trimWhitespace: "yes" }, /trimWhitespace must be true or false/],
      ["unknown key", { removeRequestHeader: ["x"] }, /unknown key "removeRequestHeader"/],
      ["empty prefix", { removeRequestHeaderPrefixes: [""] }, /must not contain ""/],
    ];
    for (const [label, cfg, msg] of bad) {
      it(label, () => assertConfigRefused(load(cfg), msg));
    }
    it("accepts an empty config and JSON with escapes", async () => {
      await loadPlugin({ wasm: built("sanitize") });
      const q = await load('{"removeRequestHeaders": ["x-\\u0061b"], "maxRequestHeaders": 1e2}');
      const r = await q.runRequest({ requestHeaders: req(["x-ab", "1"]) });
      assert.equal(has(r.requestHeaders, "x-ab"), false);
    });
  });
});
