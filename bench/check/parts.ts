/**
 * `npm run bench:parts`: the pieces of a Check's cost that are not our
 * pipeline, each against its alternative in the same run (interleaved
 * rounds, ratios):
 *   decode   the CheckRequest: proto-loader's reflection decode + toObject
 *            (what grpc-js runs today) vs protobufjs decode without toObject
 *            vs @bufbuild/protobuf fromBinary (registry from the same descriptors)
 *            vs the hot-path decoder the service runs (proto/check-decoder.ts)
 *   redis    the FDS EVALSHA of a full-chain Check (3 subjects, 3 counter ops),
 *            64 in flight, ioredis enableAutoPipelining on vs off
 *   audit    one audit line per Check through pino: sync vs async (sonic-boom
 *            buffered) destination, to /dev/null
 * Needs Redis for the redis part (BENCH_REDIS_URL, default redis://127.0.0.1:6379).
 */
import { createRequire } from 'node:module';
import { pino } from 'pino';
import protobuf from 'protobufjs';
import { create, createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import type * as grpc from '@grpc/grpc-js';
import { loadAuthorizationService, PROTO_FILES, PROTO_LOADER_OPTIONS } from '../../ext-authz/src/proto/load.js';
import { createCheckRequestDecoder } from '../../ext-authz/src/proto/check-decoder.js';
import type { CheckRequest } from '../../ext-authz/src/proto/types.js';
import { completeFileDescriptors } from '../../ext-authz/src/server/reflection.js';
import { fdsConfigSchema } from '../../ext-authz/src/fds/config.js';
import { RedisStore } from '../../ext-authz/src/fds/store/redis-store.js';
import type { CounterOp, SubjectRef } from '../../ext-authz/src/fds/store/store.js';
import { markdownTable } from '../common/stats.js';
import { coreScenario } from './scenarios.js';

const ROUNDS = 3;
const require = createRequire(import.meta.url);

function rate(f: () => void, ms: number): number {
  const until = performance.now() + ms;
  let n = 0;
  while (performance.now() < until) {
    for (let i = 0; i < 100; i++) f();
    n += 100;
  }
  return (n * 1000) / ms;
}

async function decodeRows(): Promise<string[][]> {
  const { service, packageDefinition } = loadAuthorizationService();
  const method = service['Check'] as grpc.MethodDefinition<CheckRequest, unknown>;
  const prepared = await coreScenario.prepare({ workDir: '' });
  const bodies = prepared.mix.map((m) => method.requestSerialize(m.request));
  // protobufjs Root from the same proto files (proto-loader builds one the same way).
  const protoRoot = require.resolve('../../proto/' + PROTO_FILES[0]).replace(PROTO_FILES[0]!, '');
  const root = new protobuf.Root();
  root.resolvePath = (_o, t) => (t.startsWith('google/protobuf/') ? require.resolve(`protobufjs/${t}`) : protoRoot + t);
  root.loadSync([...PROTO_FILES], { keepCase: true });
  const type = root.lookupType('envoy.service.auth.v3.CheckRequest');
  const toObjectOptions = { ...PROTO_LOADER_OPTIONS } as protobuf.IConversionOptions;
  // @bufbuild/protobuf: a registry from the descriptors proto-loader keeps (the ones reflection serves).
  const files = completeFileDescriptors([packageDefinition]).map((b) => fromBinary(FileDescriptorProtoSchema, b));
  // The registry links imports before importers.
  const byName = new Map(files.map((f) => [f.name, f]));
  const ordered: typeof files = [];
  const seen = new Set<string>();
  const visit = (f: (typeof files)[number]) => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    for (const d of f.dependency) {
      const dep = byName.get(d);
      if (dep) visit(dep);
    }
    ordered.push(f);
  };
  files.forEach(visit);
  const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
  const desc = registry.getMessage('envoy.service.auth.v3.CheckRequest')!;
  const hotPath = createCheckRequestDecoder();
  let k = 0;
  const next = () => bodies[k++ % bodies.length]!;
  const variants: Array<[string, () => void]> = [
    ['proto-loader (grpc-js default: decode + toObject)', () => method.requestDeserialize(next())],
    ['protobufjs decode only (no toObject)', () => type.decode(next())],
    ['protobufjs decode + toObject', () => type.toObject(type.decode(next()), toObjectOptions)],
    ['@bufbuild/protobuf fromBinary', () => fromBinary(desc, next())],
    ['passgate hot path (proto/check-decoder.ts)', () => hotPath(next())],
  ];
  for (const [, f] of variants) rate(f, 300); // JIT
  const sums = variants.map(() => 0);
  for (let r = 0; r < ROUNDS; r++) variants.forEach(([, f], i) => (sums[i]! += rate(f, 1000)));
  return variants.map(([name], i) => ['decode', name, (sums[i]! / ROUNDS).toFixed(0), (sums[i]! / sums[0]!).toFixed(2)]);
}

async function redisRows(): Promise<string[][]> {
  const url = process.env['BENCH_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
  const settings = fdsConfigSchema.parse({ store: 'redis', redis: { mode: 'single', url, keyPrefix: `bench:parts:${process.pid}:`, commandTimeoutMs: 5000 } })!;
  const logger = pino({ level: 'silent' });
  const store = new RedisStore(settings.redis!, logger, { onError: () => undefined });
  if (!(await store.ready(3000))) throw new Error(`bench:parts needs Redis at ${url} (BENCH_REDIS_URL)`);
  // ioredis reads the option per command; flipped here to compare, never in the service.
  const client = (store as unknown as { client: { options: { enableAutoPipelining: boolean } } }).client;
  const op = (rule: string, kind: string, subject: string): CounterOp => ({ rule, kind, subject, increment: 1, windowMs: 60_000, threshold: 1e9, ttls: [3_600_000], memoryMs: 86_400_000, reason: rule }) as CounterOp;
  const check: SubjectRef[] = [
    { kind: 'ip', subject: '198.18.0.1' },
    { kind: 'user', subject: 'u001@acme' },
    { kind: 'cert', subject: 'ab'.repeat(32) },
  ];
  const ops = [op('partner-ip-flood', 'ip', '198.18.0.1'), op('ip-auth-failures', 'ip', '198.18.0.2'), op('cert-auth-failures', 'cert', 'cd'.repeat(32))];
  const run = async (auto: boolean, ms: number): Promise<number> => {
    client.options.enableAutoPipelining = auto;
    const until = performance.now() + ms;
    let n = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (performance.now() < until) {
          await store.evaluate(check, ops);
          n++;
        }
      }),
    );
    return (n * 1000) / ms;
  };
  await run(true, 500);
  await run(false, 500);
  let on = 0;
  let off = 0;
  for (let r = 0; r < ROUNDS; r++) {
    on += await run(true, 1500);
    off += await run(false, 1500);
  }
  await store.close();
  return [
    ['redis', 'EVALSHA, 64 in flight, enableAutoPipelining on (today)', (on / ROUNDS).toFixed(0), '1.00'],
    ['redis', 'EVALSHA, 64 in flight, enableAutoPipelining off', (off / ROUNDS).toFixed(0), (off / on).toFixed(2)],
  ];
}

async function auditRows(): Promise<string[][]> {
  const line = {
    trace_id: '4bf92f3577b34da6a3ce929d0e0e4736', gateway: 'secure', route: 'partner-orders', method: 'POST', host: 'partner.shop.example', path: '/partner/v1/orders',
    source: '198.18.0.1', identity: { subject: 'u001@acme', kind: 'user', source: 'mtls' }, decision: 'allow', reason: undefined, status: 200, latency_ms: 0.412,
    mtls: { serial: '3a9f', fingerprint: 'ab'.repeat(32), subject: '', issuer: 'CN=Passgate Bench Partner CA,O=Shop', sans: { uri: ['spiffe://partners.shop.example/org/acme/user/u001'], dns: [] } },
    passport: { kid: 'bench-1', jti: '0b7c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e' },
  };
  const options = { level: 'info', base: { service: 'passgate' }, timestamp: pino.stdTimeFunctions.isoTime };
  const syncDest = pino.destination({ dest: '/dev/null', sync: true });
  const asyncDest = pino.destination({ dest: '/dev/null', sync: false, minLength: 4096 });
  await new Promise((ok) => asyncDest.once('ready', ok));
  const syncLog = pino(options, syncDest).child({ log: 'audit' });
  const asyncLog = pino(options, asyncDest).child({ log: 'audit' });
  rate(() => syncLog.info(line, 'decision'), 300);
  rate(() => asyncLog.info(line, 'decision'), 300);
  let s = 0;
  let a = 0;
  for (let r = 0; r < ROUNDS; r++) {
    s += rate(() => syncLog.info(line, 'decision'), 1000);
    a += rate(() => asyncLog.info(line, 'decision'), 1000);
  }
  asyncDest.flushSync();
  return [
    ['audit', 'pino sync destination (today)', (s / ROUNDS).toFixed(0), '1.00'],
    ['audit', 'pino async destination (4 KB buffer)', (a / ROUNDS).toFixed(0), (a / s).toFixed(2)],
  ];
}

async function main(): Promise<void> {
  const rows = [...(await decodeRows()), ...(await redisRows()), ...(await auditRows())];
  process.stdout.write(`\n## bench:parts — ${ROUNDS} interleaved rounds, ops/s of one core\n\n`);
  process.stdout.write(`${markdownTable(['part', 'variant', 'ops/s', 'vs first row of its part'], rows)}\n`);
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`bench:parts failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
