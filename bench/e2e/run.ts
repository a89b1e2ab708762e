/**
 * `npm run bench:e2e`: requests per second and latency percentiles through
 * the local gateway with the full chain (sanitize + trace wasm filters,
 * ext_authz over gRPC to Passgate: fds → mtls → passport on HTTPS, an allow
 * route on HTTP, echo upstream) against the same gateway with ext_authz and
 * filters off, in one run. Load comes from a separate Node process
 * (bench/e2e/load.ts, keep-alive). BENCH_SECONDS (5) per row, BENCH_CONNECTIONS (16).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { LocalGateway } from '../../local-gateway/src/gateway.js';
import { REPO_ROOT, ensureWasmBuilt, startStack } from '../../local-gateway/src/stack.js';
import { makeCerts, testConfigYaml } from '../../test/e2e/support/harness.js';
import { rmSync } from 'node:fs';

const seconds = Number(process.env['BENCH_SECONDS'] ?? 5);
const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 16);

interface LoadResult { requests: number; rps: number; p50: number; p90: number; p99: number; max: number; statuses: Record<string, number>; errors: number }

function load(job: object): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench', 'e2e', 'load.ts'), JSON.stringify(job)], { cwd: REPO_ROOT, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`load generator failed: ${stderr || err.message}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as LoadResult);
    });
  });
}

ensureWasmBuilt();
const certs = await makeCerts();
// The echo upstream does not verify Passports here: the rows measure the gateway and ext_authz, not the consumer library.
const stack = await startStack({ config: parseConfigText(testConfigYaml(), 'bench.yaml'), certs, verifyPassports: false });
const bare = await LocalGateway.start({
  listeners: [
    { name: 'secure', port: 0, tls: { key: certs.serverKey, cert: certs.serverCert, ca: certs.ca } },
    { name: 'public', port: 0 },
  ],
  upstream: { host: '127.0.0.1', port: stack.echo.port },
  extAuthz: null,
  filters: [],
  logger: pino({ level: 'silent' }),
});

const alice = { ca: certs.ca, cert: certs.clients.alice.cert, key: certs.clients.alice.key };
const rows: Array<{ name: string; job: object }> = [
  { name: 'HTTP   gateway only (no filters, no ext_authz)', job: { url: `http://127.0.0.1:${bare.ports['public']}/public/x` } },
  { name: 'HTTP   full chain (wasm + ext_authz allow)', job: { url: `http://127.0.0.1:${stack.httpPort}/public/x` } },
  { name: 'HTTPS  gateway only, client cert', job: { url: `https://127.0.0.1:${bare.ports['secure']}/orders`, ...alice } },
  { name: 'HTTPS  full chain (wasm + fds→mtls→passport)', job: { url: `https://127.0.0.1:${stack.httpsPort}/orders`, ...alice } },
];

process.stdout.write(`bench:e2e  ${seconds}s per row, ${connections} keep-alive connections, load from a separate process\n`);
const results: LoadResult[] = [];
try {
  for (const row of rows) {
    const r = await load({ ...row.job, seconds, connections });
    results.push(r);
    process.stderr.write(`  done: ${row.name}\n`);
  }
} finally {
  await bare.stop();
  await stack.stop();
  rmSync(certs.dir, { recursive: true, force: true });
}

const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : '-');
const header = `${'row'.padEnd(48)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p90 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'max ms'.padStart(8)} ${'vs base'.padStart(8)}  statuses`;
process.stdout.write(`\n${header}\n${'-'.repeat(header.length + 8)}\n`);
results.forEach((r, i) => {
  const base = results[i - (i % 2)]!;
  const ratio = i % 2 === 0 ? '1.00x' : `${f(r.rps / base.rps)}x`;
  process.stdout.write(
    `${rows[i]!.name.padEnd(48)} ${f(r.rps, 0).padStart(8)} ${f(r.p50).padStart(8)} ${f(r.p90).padStart(8)} ${f(r.p99).padStart(8)} ${f(r.max).padStart(8)} ${ratio.padStart(8)}  ${JSON.stringify(r.statuses)}${r.errors ? ` errors=${r.errors}` : ''}\n`,
  );
});
for (let i = 1; i < results.length; i += 2) {
  const base = results[i - 1]!;
  const full = results[i]!;
  process.stdout.write(`\n${rows[i]!.name.split('(')[0]!.trim()}: full chain costs ${f(full.p50 - base.p50)} ms at p50, ${f(full.p99 - base.p99)} ms at p99; throughput ${f((full.rps / base.rps) * 100, 0)}% of the bare gateway`);
}
process.stdout.write('\n');
process.exit(0);
