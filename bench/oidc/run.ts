/**
 * `npm run bench:oidc`: what a valid SSO session costs a Check, against the
 * same parts as the tests (oidc-provider on loopback, Redis at
 * PASSGATE_TEST_REDIS_URL, default redis://127.0.0.1:6379):
 *   bare          allow-only route (the baseline)
 *   session+fds   fds + oidc stages, warm session (the watch rides in fds's one EVALSHA)
 *   session       oidc stage alone, warm session (the stage sends its watch itself)
 * in process (`Checker.check`) and over gRPC (one client, sequential), as
 * µs/op and the ratio to bare; then Redis round trips per warm Check
 * (MONITOR: must be 1) and Redis memory per session (MEMORY USAGE).
 */
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { assemble } from '../../ext-authz/src/server/assemble.js';
import { Checker } from '../../ext-authz/src/check/checker.js';
import { Metrics } from '../../ext-authz/src/observability/metrics.js';
import { buildCheckRequest } from '../../ext-authz/src/proto/check-request.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { parseTicket } from '../../ext-authz/src/oidc/seal.js';
import { authzClient, check } from '../../test/support/service.js';
import { clientCommandsDuring } from '../../test/fds/helpers.js';
import { Browser, newKeyPrefix, REDIS_URL, ssoConfig, startSso, TestOpenIdProvider } from '../../test/oidc/support.js';
import { KeyLayout } from '../../ext-authz/src/fds/store/keys.js';

const OPS = Number(process.env['BENCH_OPS'] ?? 20_000);
const GRPC_OPS = Number(process.env['BENCH_GRPC_OPS'] ?? 4_000);
const COOKIE = '__Host-passgate';

function request(path: string, cookie: string): CheckRequest {
  return buildCheckRequest({ path, host: 'tools.corp.example', gateway: 'tools', headers: { cookie: `${COOKIE}=${cookie}; other=1`, accept: 'text/html', 'sec-fetch-mode': 'navigate' } });
}

function status(res: CheckResponse): number {
  return res.ok_response ? 200 : (res.denied_response?.status?.code ?? -1);
}

async function timeInProcess(c: Checker, req: CheckRequest, ops: number): Promise<number> {
  const deadline = Date.now() + 600_000;
  for (let i = 0; i < 500; i++) await c.check(req, deadline);
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    const r = c.check(req, deadline);
    if (r instanceof Promise) await r;
  }
  return Number(process.hrtime.bigint() - start) / 1000 / ops;
}

async function main(): Promise<void> {
  const op = await new TestOpenIdProvider().listen();
  const keyPrefix = newKeyPrefix();
  const stack = await startSso({ issuer: op.issuer, keyPrefix });
  await op.configure(stack.origin);
  const redis = new Redis(REDIS_URL);
  const logger = pino({ level: 'silent' });
  const assembled = await assemble(parseConfigText(ssoConfig({ issuer: op.issuer, keyPrefix }), 'bench.yaml'), { logger, metrics: new Metrics(false) });
  const client = authzClient(stack.service.grpcPort);
  try {
    const browser = new Browser('alice');
    const page = await browser.navigate(`${stack.origin}/bench`);
    if (page.status !== 200) throw new Error(`login failed: ${page.status} ${page.text.slice(0, 200)}`);
    const cookie = browser.cookie('127.0.0.1', COOKIE)!;
    const checker = new Checker(assembled.table, { logger, metrics: new Metrics(false) });
    const cases: Array<[string, string]> = [
      ['bare', '/bare/x'],
      ['session+fds', '/app/x'],
      ['session', '/plain/x'],
    ];
    for (const [, path] of cases) {
      const s = status(await checker.check(request(path, cookie), Date.now() + 5_000));
      if (s !== 200) throw new Error(`${path}: ${s}`);
    }
    console.log(`bench:oidc  in process: ${OPS} Checks each; over gRPC: ${GRPC_OPS} sequential Checks each (Redis ${REDIS_URL})`);
    const inProc = new Map<string, number>();
    for (const [name, path] of cases) inProc.set(name, await timeInProcess(checker, request(path, cookie), OPS));
    const grpc = new Map<string, number>();
    for (const [name, path] of cases) {
      const req = request(path, cookie);
      for (let i = 0; i < 200; i++) await check(client, req, 5_000);
      const start = process.hrtime.bigint();
      for (let i = 0; i < GRPC_OPS; i++) await check(client, req, 5_000);
      grpc.set(name, Number(process.hrtime.bigint() - start) / 1000 / GRPC_OPS);
    }
    const base = inProc.get('bare')!;
    const gbase = grpc.get('bare')!;
    console.log('case           in-process µs/op  ratio   gRPC µs/op  ratio');
    for (const [name] of cases) {
      const a = inProc.get(name)!;
      const g = grpc.get(name)!;
      console.log(`${name.padEnd(14)} ${a.toFixed(1).padStart(16)} ${(a / base).toFixed(2).padStart(6)}x ${g.toFixed(1).padStart(11)} ${(g / gbase).toFixed(2).padStart(6)}x`);
    }
    for (const [name, path] of cases.slice(1)) {
      const n = 200;
      const req = request(path, cookie);
      const seen = await clientCommandsDuring(REDIS_URL, async () => {
        for (let i = 0; i < n; i++) await checker.check(req, Date.now() + 5_000);
      });
      const perCheck = [...seen].filter(([cmd]) => !['hgetall', 'ping', 'info', 'echo'].includes(cmd));
      const total = perCheck.reduce((t, [, c]) => t + c, 0);
      console.log(`Redis round trips per warm Check (${name}): ${(total / n).toFixed(2)}  (${perCheck.map(([c, k]) => `${c}=${k}`).join(', ')})`);
    }
    const t = parseTicket(cookie)!;
    const sessionBytes = Number(await redis.memory('USAGE', new KeyLayout(keyPrefix, 'fds', 'single-tag').session('session', t.id)));
    const indexKeys = await redis.keys(`${keyPrefix}{fds}:oidc:i:*`);
    let indexBytes = 0;
    for (const k of indexKeys) indexBytes += Number(await redis.memory('USAGE', k));
    console.log(`Redis memory per session: ${sessionBytes} bytes (session hash) + ${indexKeys.length} index set(s) ${indexBytes} bytes for this user (sid, sub; shared by the user's sessions)`);
  } finally {
    client.close();
    await assembled.close();
    await stack.stop();
    await op.close();
    const keys = await redis.keys(`${keyPrefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
