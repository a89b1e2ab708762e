/**
 * `npm run bench:fds`: what FDS costs a Check, over real gRPC, with the
 * service in its own process and a private redis-server (so the command
 * counts below are ours alone). Scenarios, on one service:
 *   no FDS          route [allow]                                     (baseline)
 *   FDS check       route [fds, allow]: block checks of the client IP  (the hot path)
 *   FDS check+count route [fds, allow] + a `request` rule on the IP    (hot path with a counter update)
 *   FDS cached      [fds, allow] for an IP known to be blocked          (answered from the in-process cache)
 * Round trips per Check are measured on the Redis server twice:
 *   - INFO commandstats delta of evalsha+eval over the timed phase ÷ Checks (note: commandstats also
 *     counts the commands a script runs inside Redis; those are not round trips, so they are not added);
 *   - MONITOR over 200 sequential Checks: every command a client sent (script-internal ones are tagged
 *     "lua" and excluded) ÷ Checks. This is the exact round-trip count, "others" included.
 * Env: BENCH_FDS_SECONDS (timed seconds per scenario, split over 4 interleaved rounds; default 6), BENCH_FDS_CONCURRENCY (default 32).
 */
import { buildCheckRequest } from '../../ext-authz/src/proto/check-request.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { freePort } from '../common/process.js';
import { SampleBuffer } from '../common/stats.js';

const SECONDS = Number(process.env['BENCH_FDS_SECONDS'] ?? 6);
const CONCURRENCY = Number(process.env['BENCH_FDS_CONCURRENCY'] ?? 32);
const TOKEN = 'bench-admin-token-0123456789abcdef';
const BLOCKED_IP = '203.0.113.66';

type CheckFn = (req: CheckRequest) => Promise<CheckResponse>;

function request(path: string, ip: string): CheckRequest {
  return buildCheckRequest({ path, host: 'edge.example', sourceAddress: ip, sourcePort: 40000, headers: { 'user-agent': 'bench' }, gateway: 'edge' });
}

async function startRedis(): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  const r = new Redis(url, { lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: null });
  r.on('error', () => undefined);
  for (let i = 0; i < 100; i++) {
    try {
      if (r.status !== 'ready') await r.connect();
      if ((await r.ping()) === 'PONG') break;
    } catch {
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  r.disconnect();
  return { url, proc };
}

async function startService(redisUrl: string): Promise<{ proc: ChildProcess; grpcPort: number; adminPort: number }> {
  const config = {
    server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, defaultDeadlineMs: 1000 },
    logging: { level: 'silent', audit: false },
    gateways: {
      edge: {
        kind: 'public',
        routes: [
          { name: 'plain', match: { path: { prefix: '/plain' } }, stages: ['allow'] },
          { name: 'fds-check', match: { path: { prefix: '/check' } }, stages: ['fds', 'allow'] },
          { name: 'fds-count', match: { path: { prefix: '/count' } }, stages: ['fds', 'allow'] },
        ],
      },
    },
    defaultGateway: 'edge',
    fds: {
      store: 'redis',
      redis: { mode: 'single', url: redisUrl, keyPrefix: 'bench:fds:', commandTimeoutMs: 100 },
      blockedCacheMs: 60_000,
      admin: { token: TOKEN },
      rules: [{ name: 'flood', events: ['request'], subject: 'ip', threshold: 100_000, window: '60s', block: '1m', routes: ['fds-count'] }],
    },
  };
  const server = fileURLToPath(new URL('./server.ts', import.meta.url));
  const proc = spawn(process.execPath, ['--import', 'tsx', server], { env: { ...process.env, BENCH_FDS_CONFIG: JSON.stringify(config) }, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    rl.once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`bench service exited early (code ${code})`)));
  });
  return { proc, ...(JSON.parse(line) as { grpcPort: number; adminPort: number }) };
}

function client(port: number): { check: CheckFn; close(): void } {
  const Ctor = grpc.makeClientConstructor(loadAuthorizationService().service, 'Authorization');
  const c = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Check(req: CheckRequest, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: CheckResponse) => void): void;
  };
  return {
    check: (req) => new Promise((resolve, reject) => c.Check(req, new grpc.Metadata(), { deadline: Date.now() + 2000 }, (err, res) => (err ? reject(err) : resolve(res)))),
    close: () => c.close(),
  };
}

/** CPU seconds (user+system) a process has used, from /proc (Linux); NaN elsewhere. */
function processCpu(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

async function redisCpu(url: string): Promise<number> {
  const r = new Redis(url);
  try {
    const info = await r.info('cpu');
    const get = (k: string) => Number(new RegExp(`^${k}:([0-9.]+)`, 'm').exec(info)?.[1] ?? NaN);
    return get('used_cpu_user') + get('used_cpu_sys');
  } finally {
    r.disconnect();
  }
}

async function commandstats(url: string): Promise<Map<string, number>> {
  const r = new Redis(url);
  try {
    const out = new Map<string, number>();
    for (const m of (await r.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
    return out;
  } finally {
    r.disconnect();
  }
}

/** Client commands (not script-internal) Redis received while `fn` ran, via MONITOR. */
async function monitored(url: string, fn: () => Promise<void>): Promise<number> {
  const r = new Redis(url);
  const marker = new Redis(url);
  const token = `bench-end-${Math.random()}`;
  let n = 0;
  let done: () => void = () => undefined;
  const seenMarker = new Promise<void>((resolve) => (done = resolve));
  const monitor = await r.monitor();
  monitor.on('monitor', (_t: string, args: string[], source: string) => {
    if (args[0]?.toLowerCase() === 'echo' && args[1] === token) return done();
    if (source !== 'lua') n++;
  });
  await fn();
  await marker.echo(token);
  await seenMarker;
  monitor.disconnect();
  r.disconnect();
  marker.disconnect();
  return n;
}

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  unexpected: number;
  scriptsPerCheck: number;
  roundTrips: number;
  svcCpuUs: number;
  redisCpuUs: number;
}

interface Scenario {
  readonly name: string;
  readonly path: string;
  readonly ip: (i: number) => string;
  readonly expect: number;
  readonly samples: SampleBuffer;
  seconds: number;
  sent: number;
  errors: number;
  unexpected: number;
  scripts: number;
  svcCpu: number;
  redisCpu: number;
}

let servicePid = 0;

const statusOf = (res: CheckResponse) => ((res.status?.code ?? 0) === 0 ? 200 : Number(res.denied_response?.status?.code ?? 403));

/** Drives `s` with CONCURRENCY loops for `ms`; records latency only when `record`. */
async function drive(check: CheckFn, s: Scenario, ms: number, record: boolean, redisUrl: string): Promise<void> {
  const before = record ? await commandstats(redisUrl) : undefined;
  const cpu0 = record ? processCpu(servicePid) : 0;
  const rcpu0 = record ? await redisCpu(redisUrl) : 0;
  const started = performance.now();
  const end = Date.now() + ms;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = w; Date.now() < end; i += CONCURRENCY) {
        const t0 = performance.now();
        if (record) s.sent++;
        try {
          const res = await check(request(s.path, s.ip(i)));
          if (!record) continue;
          s.samples.push(performance.now() - t0);
          if (statusOf(res) !== s.expect) s.unexpected++;
        } catch {
          if (record) s.errors++;
        }
      }
    }),
  );
  if (!before) return;
  s.seconds += (performance.now() - started) / 1000;
  s.svcCpu += processCpu(servicePid) - cpu0;
  s.redisCpu += (await redisCpu(redisUrl)) - rcpu0;
  const after = await commandstats(redisUrl);
  const delta = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  s.scripts += delta('evalsha') + delta('eval');
}

/**
 * Scenarios run interleaved in ROUNDS short slices (A B C D A B C D ...), so
 * drift in machine load (shared cores) spreads over all of them instead of
 * biasing whichever ran first.
 */
async function measure(check: CheckFn, scenarios: Scenario[], redisUrl: string): Promise<Row[]> {
  for (const s of scenarios) await drive(check, s, 500, false, redisUrl); // warm-up: JIT, connections, script cache
  const rounds = 4;
  for (let r = 0; r < rounds; r++) for (const s of scenarios) await drive(check, s, (SECONDS * 1000) / rounds, true, redisUrl);
  const rows: Row[] = [];
  for (const s of scenarios) {
    const seq = 200;
    const commands = await monitored(redisUrl, async () => {
      for (let i = 0; i < seq; i++) await check(request(s.path, s.ip(i)));
    });
    const sum = s.samples.summary();
    rows.push({ name: s.name, rps: s.samples.length / s.seconds, p50: sum.p50, p99: sum.p99, errors: s.errors, unexpected: s.unexpected, scriptsPerCheck: s.scripts / s.sent, roundTrips: commands / seq, svcCpuUs: (s.svcCpu / s.sent) * 1e6, redisCpuUs: (s.redisCpu / s.sent) * 1e6 });
  }
  return rows;
}

async function main(): Promise<void> {
  const redis = await startRedis();
  const svc = await startService(redis.url);
  servicePid = svc.proc.pid ?? 0;
  const c = client(svc.grpcPort);
  try {
    const res = await fetch(`http://127.0.0.1:${svc.adminPort}/admin/fds/blocks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'ip', subject: BLOCKED_IP, reason: 'bench', ttl: '1h' }),
    });
    if (res.status !== 201) throw new Error(`cannot create the bench block: ${res.status} ${await res.text()}`);
    const pool = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const make = (name: string, path: string, ip: (i: number) => string, expect: number): Scenario => ({
      name, path, ip, expect, samples: new SampleBuffer(), seconds: 0, sent: 0, errors: 0, unexpected: 0, scripts: 0, svcCpu: 0, redisCpu: 0,
    });
    const rows = await measure(
      c.check,
      [
        make('no FDS', '/plain', pool, 200),
        make('FDS check', '/check', pool, 200),
        make('FDS check+count', '/count', pool, 200),
        make('FDS cached blocked', '/check', () => BLOCKED_IP, 403),
      ],
      redis.url,
    );
    const base = rows[0]!;
    const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '-');
    console.log(`\nbench:fds — ${SECONDS}s per scenario in 4 interleaved rounds, ${CONCURRENCY} concurrent Checks over gRPC, service in its own process, private redis-server\n`);
    const header = ['scenario', 'rps', 'vs no FDS', 'p50 ms', 'p99 ms', 'svc CPU µs/Check', 'redis CPU µs/Check', 'errors', 'wrong answer', 'evalsha+eval/Check', 'round trips/Check'];
    const table = rows.map((r) => [
      r.name, f(r.rps), `${f(r.rps / base.rps, 2)}x`, f(r.p50, 2), f(r.p99, 2), f(r.svcCpuUs), f(r.redisCpuUs, 1),
      String(r.errors), String(r.unexpected), f(r.scriptsPerCheck, 3), f(r.roundTrips, 3),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
    const line = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
    console.log(line(header));
    console.log(widths.map((w) => '-'.repeat(w)).join('  '));
    for (const row of table) console.log(line(row));
    console.log('\nround trips/Check: client commands seen by MONITOR over 200 sequential Checks (script-internal commands excluded).');
    console.log('svc CPU µs/Check: the service process\'s user+system CPU over the timed phase ÷ Checks (10 ms tick resolution, summed over');
    console.log('the rounds); less sensitive to other load on the machine than rps and latency, which the load generator shares.');
    const hot = rows[1]!.roundTrips;
    const cached = rows[3]!.roundTrips;
    console.log(`hot path: ${hot === 1 ? 'OK' : 'NOT 1'} (${f(hot, 3)}); cached blocked: ${cached === 0 ? 'OK' : 'NOT 0'} (${f(cached, 3)})`);
    if (hot !== 1 || cached !== 0 || rows.some((r) => r.errors > 0 || r.unexpected > 0)) process.exitCode = 1;
  } finally {
    c.close();
    svc.proc.kill('SIGTERM');
    await new Promise((r) => svc.proc.once('exit', r));
    redis.proc.kill('SIGKILL');
  }
}

await main();
