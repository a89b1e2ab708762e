/**
 * `npm run bench:first-check [-- --rounds 5]`: latency of the first Checks a
 * freshly started Passgate answers, with the start-up warm-up
 * (server.warmupMs, the default) and without it (server.warmupMs: 0), in
 * interleaved rounds on the production chain of bench:check's `full`
 * scenario ([fds (Redis), mtls (XFCC, CA-verified), passport]).
 *
 * Each round starts the service as its own process, waits until gRPC health
 * says SERVING (after the warm-up), connects a grpc-js client, then sends the
 * same partner request: the first one pays for whatever was not warmed
 * (Redis script load, first signature, JIT, the certificate's first sight,
 * which warm-up cannot know), the next ones show the steady state.
 * Needs Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379).
 */
import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { stringify } from 'yaml';
import { createAuthorizationClient } from '../../ext-authz/src/proto/load.js';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import { freePort, sleep, spawnProcess } from '../common/process.js';
import { fmtMs, markdownTable } from '../common/stats.js';
import { fullScenario } from './scenarios.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');
const OUT = join(ROOT, '.bench-out', 'first-check');

const argRounds = process.argv.indexOf('--rounds');
const ROUNDS = argRounds === -1 ? 5 : Number(process.argv[argRounds + 1]);
/** Checks sent after the first one, for the steady state beside it. */
const FOLLOWING = 20;

type HealthClient = { Check(req: { service: string }, opts: { deadline: number }, cb: (e: Error | null, r: { status: string }) => void): void; close(): void };

function healthClient(port: number): HealthClient {
  const require = createRequire(import.meta.url);
  const def = protoLoader.loadSync(require('grpc-health-check').protoPath as string, { keepCase: true, enums: String });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  return new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as HealthClient;
}

/** Polls gRPC health until SERVING: what a Kubernetes grpc readiness probe waits for. */
async function untilServing(port: number, timeoutMs = 60_000): Promise<void> {
  const client = healthClient(port);
  const until = Date.now() + timeoutMs;
  try {
    for (;;) {
      const status = await new Promise<string>((ok) => client.Check({ service: '' }, { deadline: Date.now() + 1000 }, (e, r) => ok(e ? 'DOWN' : r.status)));
      if (status === 'SERVING') return;
      if (Date.now() > until) throw new Error(`not SERVING after ${timeoutMs} ms`);
      await sleep(20);
    }
  } finally {
    client.close();
  }
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const prepared = await fullScenario.prepare({ workDir: OUT });
  const entry = prepared.mix.find((m) => m.name === prepared.h2loadEntry)!;
  const denied: Record<'warm-up on' | 'warm-up off', string[]> = { 'warm-up on': [], 'warm-up off': [] };
  const results: Record<'warm-up on' | 'warm-up off', { first: number[]; next: number[] }> = { 'warm-up on': { first: [], next: [] }, 'warm-up off': { first: [], next: [] } };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which variant goes first, so neither always meets a warmer machine.
      const order = round % 2 === 0 ? (['warm-up on', 'warm-up off'] as const) : (['warm-up off', 'warm-up on'] as const);
      for (const variant of order) {
        const grpcPort = await freePort();
        const config = prepared.config({ grpcPort, adminPort: await freePort(), audit: false, level: 'warn' }) as { server: Record<string, unknown> };
        config.server['warmupMs'] = variant === 'warm-up on' ? 5_000 : 0;
        const file = join(OUT, `passgate-${variant.replace(/ /g, '-')}.yaml`);
        writeFileSync(file, stringify(config));
        const proc = spawnProcess(`passgate (${variant})`, process.execPath, ['--import', 'tsx', join(ROOT, 'ext-authz/src/main.ts'), '--config', file], { cwd: ROOT, env: { ...process.env, ...prepared.env } });
        try {
          await untilServing(grpcPort);
          const client = createAuthorizationClient(`127.0.0.1:${grpcPort}`);
          await new Promise<void>((ok, fail) => client.waitForReady(Date.now() + 10_000, (e) => (e ? fail(e) : ok())));
          const once = async (): Promise<number> => {
            const t0 = performance.now();
            const res = await new Promise<CheckResponse>((ok, fail) => client.Check(entry.request, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e, r) => (e ? fail(e) : ok(r ?? {}))));
            const ms = performance.now() - t0;
            // On a loaded machine FDS may time out (fds_unavailable): counted and reported, not hidden.
            if ((res.status?.code ?? 0) !== 0) denied[variant].push(res.status?.message ?? '?');
            return ms;
          };
          results[variant].first.push(await once());
          for (let i = 0; i < FOLLOWING; i++) results[variant].next.push(await once());
          client.close();
        } finally {
          await proc.stop();
        }
        process.stderr.write(`  round ${round + 1}/${ROUNDS} ${variant}: first Check ${fmtMs(results[variant].first.at(-1)!)} ms\n`);
      }
    }
  } finally {
    await prepared.teardown?.();
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const on = results['warm-up on'];
  const off = results['warm-up off'];
  process.stdout.write(`\n## bench:first-check — ${ROUNDS} interleaved rounds, full chain, one fresh process per round and variant\n\n`);
  process.stdout.write(
    `${markdownTable(
      ['variant', 'first Check median ms', 'first Check max ms', `next ${FOLLOWING} median ms`, 'denied (any Check)'],
      (['warm-up on', 'warm-up off'] as const).map((v) => [v, fmtMs(median(results[v].first)), fmtMs(Math.max(...results[v].first)), fmtMs(median(results[v].next)), denied[v].length === 0 ? '0' : `${denied[v].length} (${[...new Set(denied[v])].join(', ')})`]),
    )}\n\n`,
  );
  process.stdout.write(`First Check with warm-up / without: ${(median(on.first) / median(off.first)).toFixed(2)} (median); first / steady state with warm-up: ${(median(on.first) / median(on.next)).toFixed(1)}x.\n`);
  process.stdout.write('The first Check still includes its certificate\'s first sight (decode + CA signature check): warm-up cannot know the certificates to come.\n');
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`bench:first-check failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
