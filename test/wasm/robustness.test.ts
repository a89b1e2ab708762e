import assert from "node:assert/strict";
import fc from "fast-check";
import { loadPlugin, type Plugin } from "../../wasm-filters/host/plugin.js";
import { built, req } from "./helpers.js";

// Header names and values made of arbitrary bytes (one char per byte).
const byteString = (max: number): fc.Arbitrary<string> =>
  fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b).toString("latin1"));
const headerName = fc.oneof(
  byteString(24),
  fc.constantFrom("content-length", "transfer-encoding", "traceparent", "b3", "x-b3-traceid", "x-b3-spanid",
    "x-passport", "x-forwarded-client-cert", "tracestate", "x_y", ":path"),
);
const headers = fc.array(fc.tuple(headerName, byteString(80)), { maxLength: 40 });

describe("wasm filters: robustness", function () {
  this.timeout(120_000);
  let sanitize: Plugin;
  let trace: Plugin;
  before(async () => {
    sanitize = await loadPlugin({ wasm: built("sanitize"), pluginConfig: {} });
    trace = await loadPlugin({ wasm: built("trace"), pluginConfig: {} });
  });

  it("never traps on random header bytes (fast-check, 3000 runs each)", () => {
    fc.assert(
      fc.property(headers, fc.boolean(), (hs, mtls) => {
        for (const p of [sanitize, trace]) {
          const r = p.runRequestSync({ requestHeaders: hs, properties: { "connection.mtls": mtls }, responseHeaders: [[":status", "200"], ...hs] });
          if (r.vmFailed) return false;
          assert.ok(r.status === 200 || r.status === 400 || r.status === 431, `status ${r.status}`);
        }
        return true;
      }),
      { numRuns: 3000 },
    );
    assert.equal(sanitize.failed, false, sanitize.failureReason ?? "");
    assert.equal(trace.failed, false, trace.failureReason ?? "");
  });

  it("never traps on random plugin configs (refuses or accepts)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.json(), byteString(60)), async (cfg) => {
        for (const name of ["sanitize", "trace"] as const) {
          try {
            await loadPlugin({ wasm: built(name), pluginConfig: cfg });
          } catch (e) {
            if (!/on_configure returned false/.test((e as Error).message)) throw e;
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  for (const name of ["sanitize", "trace", "passthrough"] as const) {
    it(`${name}: memory stops growing over 100,000 requests`, () => {
      const p = loadPlugin({ wasm: built(name), pluginConfig: {} });
      return p.then((plugin) => {
        const hs = req(["traceparent", "bad"], ["x-passport", "x"], ["x-a", " trim "], ["cookie", "a=1"]);
        const resp: Array<[string, string]> = [[":status", "200"], ["server", "x"]];
        let at10k = 0;
        for (let i = 1; i <= 100_000; i++) {
          const r = plugin.runRequestSync({ requestHeaders: hs, responseHeaders: resp });
          if (r.vmFailed) assert.fail(`${name} failed at request ${i}: ${plugin.failureReason}`);
          if (i === 10_000) at10k = plugin.memoryBytes;
        }
        assert.equal(plugin.memoryBytes, at10k, `${name}: memory grew from ${at10k} to ${plugin.memoryBytes} bytes between requests 10k and 100k`);
        assert.ok(plugin.memoryBytes <= 4 * 65536, `${name}: ${plugin.memoryBytes} bytes of linear memory`);
      });
    });
  }
});
