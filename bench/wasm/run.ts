// Per-request cost of each proxy-wasm filter under the TypeScript host, against the empty
// pass-through module (the floor: the host driving a module at all). Not a pass/fail test.
// Run: npm run bench:wasm [-- --iterations 50000]
import { createHash } from "node:crypto";
import { loadPlugin, type Plugin } from "../../wasm-filters/host/plugin.js";
import { loadBuiltFilter } from "../../wasm-filters/host/built.js";
import type { HeaderList } from "../../wasm-filters/host/pairs.js";

const argIdx = process.argv.indexOf("--iterations");
const ITER = argIdx > 0 ? Number(process.argv[argIdx + 1]) : 50_000;
const ROUNDS = 5;

// A realistic browser-ish request through an edge gateway: 25 headers.
const REQUEST: HeaderList = [
  [":method", "GET"], [":scheme", "https"], [":authority", "api.example.com"],
  [":path", "/v1/accounts/12345/transactions?limit=50&cursor=eyJpZCI6MTIzfQ"],
  ["user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"],
  ["accept", "application/json, text/plain, */*"], ["accept-language", "en-US,en;q=0.9,fr;q=0.8"],
  ["accept-encoding", "gzip, deflate, br"], ["authorization", "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"],
  ["cookie", "session=abc123; theme=dark; _ga=GA1.2.123456789.1234567890"], ["origin", "https://app.example.com"],
  ["referer", "https://app.example.com/accounts/12345"], ["sec-fetch-dest", "empty"], ["sec-fetch-mode", "cors"],
  ["sec-fetch-site", "same-site"], ["sec-ch-ua", "\"Chromium\";v=\"126\", \"Not.A/Brand\";v=\"24\""],
  ["sec-ch-ua-mobile", "?0"], ["sec-ch-ua-platform", "\"Linux\""], ["x-request-id", "7c9e6679-7425-40de-944b-e07fc1f90ae7"],
  ["x-forwarded-for", "203.0.113.7"], ["x-forwarded-proto", "https"], ["x-envoy-external-address", "203.0.113.7"],
  ["traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"], ["cache-control", "no-cache"],
  ["pragma", "no-cache"],
];
const RESPONSE: HeaderList = [
  [":status", "200"], ["content-type", "application/json"], ["content-length", "1234"], ["server", "envoy"],
  ["x-envoy-upstream-service-time", "12"], ["date", "Sat, 28 Nov 2026 09:00:00 GMT"], ["vary", "Origin"],
];

function time(p: Plugin, n: number): number {
  const input = { requestHeaders: REQUEST, responseHeaders: RESPONSE, properties: { "connection.mtls": false } };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) p.runRequestSync(input);
  return Number(process.hrtime.bigint() - t0) / 1000 / n; // µs per request
}

async function main(): Promise<void> {
  const names = ["passthrough", "sanitize", "trace"] as const;
  const plugins = new Map<string, Plugin>();
  const sizes = new Map<string, { bytes: number; sha256: string }>();
  for (const n of names) {
    const wasm = loadBuiltFilter(n);
    sizes.set(n, { bytes: wasm.length, sha256: createHash("sha256").update(wasm).digest("hex") });
    plugins.set(n, await loadPlugin({ wasm, pluginConfig: {} }));
  }
  if (REQUEST.length !== 25) throw new Error("the benchmark request must have 25 headers");
  for (const n of names) time(plugins.get(n)!, Math.min(ITER, 20_000)); // warm up the JIT
  // Interleave rounds so drift hits every module alike; keep the median.
  const results = new Map<string, number[]>(names.map((n) => [n, []]));
  for (let r = 0; r < ROUNDS; r++) for (const n of names) results.get(n)!.push(time(plugins.get(n)!, ITER));
  // Best round estimates intrinsic cost (noise only adds time); median shows the spread.
  const best = (a: number[]): number => Math.min(...a);
  const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const floor = best(results.get("passthrough")!);
  console.log(`proxy-wasm filters under the TypeScript host (Node ${process.version}), ${REQUEST.length}-header request, ${ITER} requests x ${ROUNDS} rounds\n`);
  console.log("module        bytes   best µs/req   median µs/req   vs floor   filter cost µs   sha256");
  for (const n of names) {
    const us = best(results.get(n)!);
    const s = sizes.get(n)!;
    console.log(
      `${n.padEnd(12)} ${String(s.bytes).padStart(6)}   ${us.toFixed(2).padStart(11)}   ${median(results.get(n)!).toFixed(2).padStart(13)}   ${(us / floor).toFixed(2).padStart(7)}x   ${(us - floor).toFixed(2).padStart(14)}   ${s.sha256}`,
    );
  }
  console.log("\nThe floor includes the host's own work (header maps, callbacks, context lifecycle);" +
    "\nEnvoy's C++ host is faster, so compare ratios and filter cost, not absolute numbers.");
}

await main();
