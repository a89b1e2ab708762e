/** Shared helpers for the FDS tests: real Redis, real PassgateService, real gRPC. */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import pino from 'pino';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { authzClient, check, httpCheck } from '../support/service.js';
import { sleep } from '../../bench/common/process.js';
import { fdsConfigSchema } from '../../ext-authz/src/fds/config.js';
import { RedisStore } from '../../ext-authz/src/fds/store/redis-store.js';

export { freePort, sleep } from '../../bench/common/process.js';

/** The shared test Redis; PASSGATE_TEST_REDIS_URL points a run at its own server (parallel worktrees). */
export const REDIS_URL = process.env['PASSGATE_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
export const TOKEN = 'test-admin-token-0123456789abcdef';

export function testPrefix(): string {
  return `test:fds:${randomBytes(5).toString('hex')}:`;
}

/** Deletes every key under `prefix` (SCAN, never KEYS). */
/** A RedisStore driven directly (no service): `redis` is the fds.redis section, over the shared test Redis by default. */
export function storeWith(redis: Record<string, unknown>): RedisStore {
  const settings = fdsConfigSchema.parse({ store: 'redis', redis: { url: REDIS_URL, commandTimeoutMs: 2000, ...redis } })!;
  return new RedisStore(settings.redis!, pino({ level: 'silent' }), { onError: () => undefined });
}

export async function cleanup(prefix: string, url = REDIS_URL): Promise<void> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await r.connect();
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await r.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } catch {
    // Redis gone (fault tests): nothing to clean.
  } finally {
    r.disconnect();
  }
}

export interface RouteSpec {
  name: string;
  prefix: string;
  failureMode?: 'open' | 'closed';
  stages: unknown[];
}

export function config(fds: Record<string, unknown> | undefined, routes: RouteSpec[]) {
  return validateConfig({
    server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, shutdownGraceMs: 500, defaultDeadlineMs: 1000 },
    logging: { level: 'silent', audit: false },
    gateways: {
      edge: {
        kind: 'public',
        routes: routes.map((r) => ({ name: r.name, match: { path: { prefix: r.prefix } }, ...(r.failureMode ? { failureMode: r.failureMode } : {}), stages: r.stages })),
      },
    },
    defaultGateway: 'edge',
    ...(fds ? { fds } : {}),
  });
}

/**
 * Redis FDS settings for tests. The command timeout is generous by default: tests about counting and blocking
 * must not depend on how loaded the machine is (a script that times out client-side may still have run).
 * Fault tests pass a short one.
 */
export function redisFds(prefix: string, extra: Record<string, unknown> = {}, url = REDIS_URL, commandTimeoutMs = 1000): Record<string, unknown> {
  return { store: 'redis', redis: { mode: 'single', url, keyPrefix: prefix, commandTimeoutMs, reconnectMaxMs: 200 }, admin: { token: TOKEN }, ...extra };
}

export async function startService(cfg: ReturnType<typeof config>): Promise<PassgateService> {
  return PassgateService.start({ config: cfg, grpcPort: 0, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) });
}

export interface CheckClient {
  check(opts: { ip?: string; path?: string; headers?: Record<string, string>; deadlineMs?: number }): Promise<CheckResponse>;
  close(): void;
}

export function checkClient(port: number): CheckClient {
  const client = authzClient(port);
  return {
    check: ({ ip = '198.51.100.1', path = '/api/x', headers = {}, deadlineMs = 2000 }) =>
      check(client, httpCheck({ path, headers, host: 'edge.example', gateway: 'edge', sourceAddress: ip }), deadlineMs),
    close: () => client.close(),
  };
}

/** HTTP status the client would get (200 for OK). */
export function statusOf(res: CheckResponse): number {
  if ((res.status?.code ?? 0) === 0) return 200;
  return Number(res.denied_response?.status?.code ?? 403);
}

export function bodyOf(res: CheckResponse): string {
  return String(res.denied_response?.body ?? '');
}

export function upstreamHeader(res: CheckResponse, name: string): string | undefined {
  return res.ok_response?.headers?.find((h) => h.header?.key === name)?.header?.value;
}

export async function adminCall(port: number, method: string, path: string, body?: unknown, token: string | null = TOKEN): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: await res.json() };
}

/** Polls until `cond` holds; throws with `what` after `limitMs` (a bound for liveness, not a speed assertion). */
export async function eventually(what: string, cond: () => Promise<boolean> | boolean, limitMs = 5000): Promise<void> {
  const end = Date.now() + limitMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await sleep(25);
  }
}

/** A private redis-server for fault tests (killable, pausable). */
export class OwnRedis {
  proc: ChildProcess | undefined;
  constructor(readonly port: number) {}
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    this.proc = spawn('/usr/bin/redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    const r = new Redis(this.url, { lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: null });
    r.on('error', () => undefined); // refused until the server listens; polled below
    try {
      await eventually('redis-server to answer', async () => {
        try {
          if (r.status !== 'ready') await r.connect().catch(() => undefined);
          return (await r.ping()) === 'PONG';
        } catch {
          return false;
        }
      });
    } finally {
      r.disconnect();
    }
  }
  pause(): void {
    this.proc?.kill('SIGSTOP');
  }
  resume(): void {
    this.proc?.kill('SIGCONT');
  }
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    p.kill('SIGCONT');
    const done = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await done;
    this.proc = undefined;
  }
}

/**
 * Commands clients sent to the Redis at `url` while `fn` ran (MONITOR; commands scripts run inside are
 * not counted). MONITOR is read from a plain socket: ioredis' monitor() sets its monitoring state a
 * microtask after MONITOR's +OK, so a monitor line in the same TCP read as the +OK reached an empty
 * command queue and threw ("Command queue state error") when the server was busy.
 */
export async function clientCommandsDuring(url: string, fn: () => Promise<void>): Promise<Map<string, number>> {
  const u = new URL(url);
  // The marker connection's own setup (CLIENT SETINFO, the ready check's INFO) is done before MONITOR starts.
  const marker = new Redis(url);
  if (marker.status !== 'ready') await new Promise((resolve) => marker.once('ready', resolve));
  const socket = connect(Number(u.port || 6379), u.hostname);
  socket.on('error', () => undefined);
  const seen = new Map<string, number>();
  const token = `fds-monitor-end-${Math.random()}`;
  let markerSeen: (() => void) | undefined;
  let started: (() => void) | undefined;
  const ok = new Promise<void>((resolve) => (started = resolve));
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\r\n')) !== -1) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 2);
      if (line === '+OK') {
        started?.();
        continue;
      }
      // +<time> [<db> <client or lua>] "<command>" "<arg>" ...
      const m = /^\+[\d.]+ \[\d+ ([^\]]+)\] "((?:[^"\\]|\\.)*)"(?: "((?:[^"\\]|\\.)*)")?/.exec(line);
      if (m === null) continue;
      const name = m[2]!.toLowerCase();
      if (name === 'echo' && m[3] === token) {
        markerSeen?.();
        continue;
      }
      if (m[1] === 'lua') continue;
      seen.set(name, (seen.get(name) ?? 0) + 1);
    }
  });
  socket.write('MONITOR\r\n');
  try {
    await ok;
    await fn();
    // MONITOR is asynchronous: wait until a marker sent after fn is seen, so every earlier command was.
    const done = new Promise<void>((resolve) => (markerSeen = resolve));
    await marker.echo(token);
    await done;
  } finally {
    socket.destroy();
    marker.disconnect();
  }
  return seen;
}

/** Counts of script/command calls on a Redis server (INFO commandstats). */
export async function commandCalls(url: string): Promise<Map<string, number>> {
  const r = new Redis(url);
  try {
    const info = await r.info('commandstats');
    const out = new Map<string, number>();
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
    return out;
  } finally {
    r.disconnect();
  }
}
