/**
 * `npm run bench:memory [-- --checks N]`: heap and RSS under a stream of
 * well-formed Checks that are all different, through the real Checker
 * in-process (the pipeline the gRPC server calls). Every Check carries a
 * certificate input (never-seen real certificates re-encoded so each is a new
 * cache key, large garbage and over-cap certificates, and pooled ones), a distinct
 * bearer token and Passport header, a distinct source IP and a distinct
 * path, on routes with mtls and fds stages. Caches must fill to their byte
 * bounds and stay there: the report gives RSS/heap at intervals and the
 * end/start ratios (start = after the first 10 %, when caches are full).
 * Default 1,000,000 Checks; run under the Deployment's heap limit:
 *   node --expose-gc --max-old-space-size=384 --import tsx bench/memory/run.ts
 */
import { pino } from 'pino';
import { createCa, issueCertificate, urlEncodePem, type IssuedCertificate } from '../../ext-authz/src/devcerts/generate.js';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { assemble } from '../../ext-authz/src/server/assemble.js';
import { Checker } from '../../ext-authz/src/check/checker.js';
import { Metrics } from '../../ext-authz/src/observability/metrics.js';
import { formatXfccElement } from '../../ext-authz/src/identity/xfcc.js';
import type { CheckRequest } from '../../ext-authz/src/proto/types.js';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i === -1 ? undefined : Number(process.argv[i + 1]);
  return v !== undefined && Number.isFinite(v) && v > 0 ? Math.floor(v) : fallback;
}

const CHECKS = flag('checks', 1_000_000);
const POOL = flag('pool', 200);
const SAMPLES = 20;

const YAML = `
logging: { level: silent, audit: false }
identity:
  mtls:
    rules:
      - uri: { prefix: "spiffe://bench/" }
        identity: { subject: "{rest}", kind: user }
fds:
  store: memory
gateways:
  secure:
    kind: secure
    trustXfcc: true
    select: { ports: [8443] }
    routes:
      - { name: mtls, match: { path: { prefix: /m } }, stages: [{ type: fds, count: false }, mtls, allow] }
`;

function random(n: number): string {
  let s = '';
  while (s.length < n) s += Math.random().toString(36).slice(2);
  return s.slice(0, n);
}

function mb(n: number): string {
  return (n / 1024 / 1024).toFixed(1);
}

async function main(): Promise<void> {
  const ca = await createCa();
  const pool: IssuedCertificate[] = [];
  for (let i = 0; i < POOL; i++) pool.push(await issueCertificate({ ca, sans: { uri: [`spiffe://bench/u${i}`] } }));
  const encoded = pool.map((c) => urlEncodePem(c.pem));
  const logger = pino({ level: 'silent' });
  const metrics = new Metrics(false);
  const { table } = await assemble(parseConfigText(YAML, 'bench.yaml'), { logger, metrics });
  const checker = new Checker(table, { logger, metrics });
  const garbageBody = random(12_000);
  const overCap = `x${random(20_000)}`;

  const request = (i: number): CheckRequest => {
    const path = `/m/${i.toString(36)}/${random(8)}`;
    const headers: Record<string, string> = {
      ':method': 'GET',
      ':path': path,
      ':authority': 'secure.example.com',
      authorization: `Bearer ${random(40)}.${i}.${random(400)}`,
      'x-passport': `${random(100)}.${i}`,
      'x-request-id': `r${i}`,
    };
    // Mix (i % 64): a never-seen real certificate as the peer (1/64) or in XFCC (1/64), large garbage (16/64),
    // over-cap input (16/64), a pooled certificate (the warm path, the rest). A cold real decode costs
    // milliseconds of CPU, so they are the rarer kind; every input is still distinct where it is cold.
    const k = i % 64;
    // Text after END is ignored by the PEM reader: the same certificate, a new cache key every time.
    const variant = `${encoded[i % POOL]}%23${i}`;
    let certificate = '';
    if (k === 0) certificate = variant;
    else if (k === 1) headers['x-forwarded-client-cert'] = formatXfccElement({ hash: pool[i % POOL]!.fingerprint, cert: variant, uri: [`spiffe://bench/u${i % POOL}`] });
    else if (k < 18) certificate = `-----BEGIN%20CERTIFICATE-----%0A${garbageBody}${i}%0A-----END%20CERTIFICATE-----%0A`;
    else if (k < 34) certificate = `${overCap}${i}`;
    else certificate = encoded[i % POOL]!;
    return {
      attributes: {
        source: { address: { socket_address: { address: `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`, port_value: 40000 } }, ...(certificate ? { certificate } : {}) },
        destination: { address: { socket_address: { address: '10.0.0.5', port_value: 8443 } } },
        request: { http: { id: `r${i}`, method: 'GET', host: 'secure.example.com', path, scheme: 'https', protocol: 'HTTP/2', headers } },
      },
    };
  };

  const gc = (globalThis as { gc?: () => void }).gc;
  const sample = () => {
    gc?.();
    const m = process.memoryUsage();
    return { rss: m.rss, heap: m.heapUsed };
  };
  const start0 = sample();
  const reasons = new Map<string, number>();
  const rows: Array<{ at: number; rss: number; heap: number }> = [{ at: 0, ...start0 }];
  const every = Math.max(1, Math.floor(CHECKS / SAMPLES));
  const t0 = performance.now();
  for (let i = 1; i <= CHECKS; i++) {
    let res = checker.check(request(i), Date.now() + 10_000);
    if (res instanceof Promise) res = await res;
    const reason = res.denied_response ? String(JSON.parse(res.denied_response.body ?? '{}').reason) : 'allow';
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    if (i % every === 0) {
      rows.push({ at: i, ...sample() });
      const r = rows[rows.length - 1]!;
      console.log(`${String(i).padStart(9)} checks  rss ${mb(r.rss).padStart(7)} MB  heap ${mb(r.heap).padStart(7)} MB`);
    }
    // Let timers and promise jobs run now and then, as a server would.
    if (i % 10_000 === 0) await new Promise((r) => setImmediate(r));
  }
  const seconds = (performance.now() - t0) / 1000;
  const base = rows.find((r) => r.at >= CHECKS / 10) ?? rows[1] ?? rows[0]!;
  const end = rows[rows.length - 1]!;
  const peak = rows.reduce((a, r) => (r.rss > a.rss ? r : a), rows[0]!);
  console.log(`\n${CHECKS} Checks in ${seconds.toFixed(1)} s (${Math.round(CHECKS / seconds)}/s); decisions: ${JSON.stringify(Object.fromEntries(reasons))}`);
  console.log(`RSS   process start ${mb(start0.rss)} MB, after 10% ${mb(base.rss)} MB, end ${mb(end.rss)} MB, peak ${mb(peak.rss)} MB`);
  console.log(`heap  process start ${mb(start0.heap)} MB, after 10% ${mb(base.heap)} MB, end ${mb(end.heap)} MB`);
  console.log(`ratio end/after-10%: RSS ${(end.rss / base.rss).toFixed(3)}, heap ${(end.heap / base.heap).toFixed(3)}${gc ? '' : ' (run with --expose-gc for steadier figures)'}`);
}

await main();
