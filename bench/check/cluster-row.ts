/**
 * The Redis Cluster row of the Check benchmark: the FDS store call of one Check (block checks of user,
 * device, IP and client, one single-use claim, counters for the IP and the user) on one Redis node and on
 * a local 3-master cluster, in the same run, with the real RedisStore and ioredis. Reports, as ratios:
 * wall time per Check (sequential, and throughput with many in flight) on the cluster against one node,
 * script calls per master per Check, and how the keys of 10,000 users spread over the masters (max/min),
 * for both key layouts.
 *
 * `fdsClusterRow()` returns the table and the figures (for bench/check/run.ts to fold in);
 * `npm run bench:fds-cluster` runs it alone. Needs redis-server and redis-cli.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pino from 'pino';
import { fdsConfigSchema } from '../../ext-authz/src/fds/config.js';
import { RedisStore } from '../../ext-authz/src/fds/store/redis-store.js';
import type { Claim, CounterOp, SubjectRef } from '../../ext-authz/src/fds/store/store.js';
import { countKeys, ping, scriptCalls, slotOwners, startCluster } from '../common/redis-cluster.js';
import { freePort, sleep } from '../common/process.js';
import { fmtMs, markdownTable, summarize } from '../common/stats.js';

export interface ClusterRowOptions {
  /** Sequential Checks per target (wall time per Check). */
  readonly sequential?: number;
  /** Checks with `inFlight` concurrent (throughput). */
  readonly burst?: number;
  readonly inFlight?: number;
  /** Distinct users whose keys are counted per master. */
  readonly users?: number;
}

export interface ClusterTarget {
  readonly name: string;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly checksPerSecond: number;
  /** Script calls (EVALSHA/EVAL) per master per Check, in master order. */
  readonly callsPerMasterPerCheck: readonly number[];
  /** Keys of `users` users per master (the users' counter keys). */
  readonly userKeysPerMaster: readonly number[];
}

export interface ClusterRow {
  readonly targets: readonly ClusterTarget[];
  readonly markdown: string;
}

const RULE = (kind: CounterOp['kind'], subject: string): CounterOp => ({
  rule: 'bench',
  kind,
  subject,
  increment: 1,
  windowMs: 60_000,
  threshold: 1_000_000,
  ttls: [60_000],
  memoryMs: 60_000,
  reason: 'bench',
});

/** One realistic Check for user `i`: four subjects checked, one proof id claimed, two counters. */
function checkOf(i: number): [SubjectRef[], CounterOp[], Claim[]] {
  const user = `user-${i}`;
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  return [
    [
      { kind: 'user', subject: user },
      { kind: 'device', subject: `device-${i}` },
      { kind: 'ip', subject: ip },
      { kind: 'client', subject: 'web-app' },
    ],
    [RULE('ip', ip), RULE('user', user)],
    [{ key: `dpop:edge:thumb-${i}:${Math.random().toString(36).slice(2)}`, expiresAt: Date.now() + 60_000, minTtlMs: 5_000 }],
  ];
}

async function measure(name: string, store: RedisStore, masters: readonly number[], prefix: string, opts: Required<ClusterRowOptions>, base: number): Promise<ClusterTarget> {
  if (!(await store.ready(10_000))) throw new Error(`${name}: the store did not connect`);
  for (let i = 0; i < 200; i++) await store.evaluate(...checkOf(base + i)); // warm-up: JIT, script caches, connections
  const before = await Promise.all(masters.map((p) => scriptCalls(`redis://127.0.0.1:${p}`)));
  const samples: number[] = [];
  for (let i = 0; i < opts.sequential; i++) {
    const t = performance.now();
    await store.evaluate(...checkOf(base + i));
    samples.push(performance.now() - t);
  }
  const after = await Promise.all(masters.map((p) => scriptCalls(`redis://127.0.0.1:${p}`)));
  const calls = after.map((a, i) => (a - before[i]!) / opts.sequential);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: opts.inFlight }, async () => {
      while (next < opts.burst) {
        const i = next++;
        await store.evaluate(...checkOf(base + opts.sequential + i));
      }
    }),
  );
  const rps = opts.burst / ((performance.now() - t0) / 1000);
  // The users' keys: one counter per user (written above for base .. base+users).
  for (let i = 0; i < opts.users; i += 500) await Promise.all(Array.from({ length: Math.min(500, opts.users - i) }, (_, j) => store.evaluate([], [RULE('user', `spread-${i + j}`)])));
  const perMaster = await Promise.all(masters.map((p) => countKeys(p, `${prefix}*spread-*`)));
  const s = summarize(samples);
  return { name, p50Ms: s.p50, p99Ms: s.p99, checksPerSecond: rps, callsPerMasterPerCheck: calls.map((c) => Math.round(c * 100) / 100), userKeysPerMaster: perMaster };
}

export async function fdsClusterRow(options: ClusterRowOptions = {}): Promise<ClusterRow> {
  const opts: Required<ClusterRowOptions> = { sequential: 2000, burst: 10_000, inFlight: 64, users: 10_000, ...options };
  const logger = pino({ level: 'silent' });
  const singlePort = await freePort();
  const single = spawn('redis-server', ['--port', String(singlePort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const cluster = await startCluster(3, 0);
  const stores: RedisStore[] = [];
  const make = (redis: Record<string, unknown>) => {
    const settings = fdsConfigSchema.parse({ store: 'redis', redis: { commandTimeoutMs: 1000, ...redis } })!;
    const s = new RedisStore(settings.redis!, logger, { onError: () => undefined });
    stores.push(s);
    return s;
  };
  try {
    for (let i = 0; !(await ping(singlePort)); i++) {
      if (i > 200) throw new Error(`redis-server :${singlePort} did not start`);
      await sleep(50);
    }
    const masters = [...(await slotOwners(cluster.nodes[0]!.port)).keys()];
    const seed = [{ host: '127.0.0.1', port: cluster.nodes[0]!.port }];
    const targets: ClusterTarget[] = [];
    targets.push(await measure('1 node (single-tag)', make({ mode: 'single', url: `redis://127.0.0.1:${singlePort}`, keyPrefix: 'b1:' }), [singlePort], 'b1:', opts, 0));
    targets.push(await measure('3 masters, per-subject', make({ mode: 'cluster', nodes: seed, keyPrefix: 'b2:' }), masters, 'b2:', opts, 1_000_000));
    targets.push(await measure('3 masters, single-tag', make({ mode: 'cluster', nodes: seed, keyPrefix: 'b3:', keyLayout: 'single-tag' }), masters, 'b3:', opts, 2_000_000));
    const one = targets[0]!;
    const rows = targets.map((t) => {
      const k = t.userKeysPerMaster;
      const spread = k.length === 1 ? '-' : Math.min(...k) === 0 ? `one master holds ${((100 * Math.max(...k)) / k.reduce((a, b) => a + b, 0)).toFixed(0)}%` : (Math.max(...k) / Math.min(...k)).toFixed(3);
      return [
        t.name,
        fmtMs(t.p50Ms),
        (t.p50Ms / one.p50Ms).toFixed(2),
        fmtMs(t.p99Ms),
        t.checksPerSecond.toFixed(0),
        (t.checksPerSecond / one.checksPerSecond).toFixed(2),
        t.callsPerMasterPerCheck.join(' / '),
        `${k.join(' / ')} (${spread})`,
      ];
    });
    const markdown = [
      `FDS store call of one Check (4 subjects checked, 1 proof id claimed, 2 counters), same run; ${opts.sequential} sequential Checks, then ${opts.burst} with ${opts.inFlight} in flight; keys of ${opts.users} users.`,
      '',
      markdownTable(['target', 'p50 ms', 'p50 vs 1 node', 'p99 ms', 'Checks/s', 'vs 1 node', 'script calls per master per Check', `keys of ${opts.users} users per master (max/min)`], rows),
    ].join('\n');
    return { targets, markdown };
  } finally {
    for (const s of stores) await s.close();
    cluster.stop();
    single.kill('SIGKILL');
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const row = await fdsClusterRow();
  process.stdout.write(`${row.markdown}\n`);
  const out = join(fileURLToPath(new URL('../..', import.meta.url)), '.bench-out');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'fds-cluster.json'), JSON.stringify(row.targets, null, 2));
  process.exit(0);
}
