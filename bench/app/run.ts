/**
 * npm run bench:app — what a device-signed app request costs.
 *
 * 1. µs per Check in process (the Checker on `[fds, app-signature]` and on
 *    `[fds, app-signature, passport]`, cached credential and device key,
 *    memory FDS store; every request has its own nonce), against one ES256
 *    crypto.verify and the bare allow route in the same run.
 * 2. Redis round trips per signed Check with FDS (redis store) on the route:
 *    INFO commandstats delta over N Checks (must be 1 EVALSHA per Check).
 * 3. gRPC throughput of `[fds, app-signature, passport]` as a ratio of the
 *    bare allow route, same service, same run (closed loop, 32 in flight).
 * Redis: PASSGATE_TEST_REDIS_URL (default redis://127.0.0.1:6379).
 */
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { Redis } from 'ioredis';
import { deleteKeys } from '../common/redis-keys.js';
import pino from 'pino';
import { startService, httpCheck, type Running } from '../../test/support/service.js';
import { freePort } from '../common/process.js';
import { clientCommandsDuring } from '../../test/fds/helpers.js';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { assemble } from '../../ext-authz/src/server/assemble.js';
import { Checker } from '../../ext-authz/src/check/checker.js';
import { Metrics } from '../../ext-authz/src/observability/metrics.js';
import { AppDevice, offlineAttestation } from '../../ext-authz/src/app-signature/client.js';
import type { CheckRequest } from '../../ext-authz/src/proto/types.js';
import { closedLoop } from '../common/closed-loop.js';

const REDIS_URL = process.env['PASSGATE_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const HOST = 'app.bench';
const authority = generateKeyPairSync('ec', { namedCurve: 'P-256' });

function config(fds: Record<string, unknown>, registrationPort: number): string {
  return JSON.stringify({
    server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, defaultDeadlineMs: 2000 },
    logging: { level: 'warn', audit: false },
    fds: { ...fds, rules: [{ name: 'bad', events: ['app_signature_invalid', 'app_signature_replay'], subject: 'device', threshold: 1000, window: '1m', block: '1m' }] },
    appSignature: { registration: { listen: { host: '127.0.0.1', port: registrationPort }, authorities: { bench: { publicKey: authority.publicKey.export({ type: 'spki', format: 'pem' }).toString() } } } },
    passport: { issuer: 'https://passgate.bench', audience: 'api', keys: { active: 'p1', entries: [{ id: 'p1', generate: true }] }, source: { type: 'static', users: { alice: { id: 'alice', roles: [] } } } },
    gateways: {
      g: {
        kind: 'app',
        routes: [
          { name: 'bare', match: { path: { prefix: '/bare/' } }, stages: ['allow'] },
          { name: 'sig', match: { path: { prefix: '/sig/' } }, stages: ['fds', 'app-signature'] },
          { name: 'full', match: { path: { prefix: '/v1/' } }, stages: ['fds', 'app-signature', 'passport'] },
        ],
      },
    },
    defaultGateway: 'g',
  });
}

async function device(registrationPort: number): Promise<AppDevice> {
  const d = AppDevice.generate('ecdsa-p256-sha256');
  await d.register(`http://127.0.0.1:${registrationPort}/app/v1/devices`, 'ios', offlineAttestation(authority.privateKey, { authority: 'bench', jkt: d.jkt, platform: 'ios', user: 'alice' }));
  return d;
}

/** Pre-signed Checks, one nonce each (signing is the device's cost, not the gateway's). */
function signedPool(d: AppDevice, path: string, n: number): CheckRequest[] {
  return Array.from({ length: n }, () => httpCheck({ host: HOST, path, headers: d.sign({ method: 'GET', url: `https://${HOST}${path}`, lifetimeSec: 60 }) }));
}

async function inProcess(): Promise<void> {
  const regPort = await freePort();
  const logger = pino({ level: 'silent' });
  const metrics = new Metrics(false);
  const assembled = await assemble(parseConfigText(config({ store: 'memory' }, regPort), 'bench.yaml'), { logger, metrics });
  const checker = new Checker(assembled.table, { logger, metrics });
  try {
    const d = await device(regPort);
    const N = 5000;
    const time = async (label: string, reqs: CheckRequest[], base?: number): Promise<number> => {
      for (let i = 0; i < 200; i++) await checker.check(reqs[i]!, Date.now() + 2000);
      const t0 = process.hrtime.bigint();
      let denied = 0;
      for (let i = 200; i < reqs.length; i++) if (!(await checker.check(reqs[i]!, Date.now() + 2000)).ok_response) denied++;
      const us = Number(process.hrtime.bigint() - t0) / 1e3 / (reqs.length - 200);
      console.log(`  ${label.padEnd(40)} ${us.toFixed(1).padStart(7)} µs${base ? `  (${(us / base).toFixed(2)}× one ES256 verify)` : ''}${denied ? `  ${denied} DENIED` : ''}`);
      return us;
    };
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const data = Buffer.from('x'.repeat(400));
    const sig = sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    const pub = createPublicKey(publicKey.export({ format: 'pem', type: 'spki' }));
    for (let i = 0; i < 500; i++) verify('sha256', data, { key: pub, dsaEncoding: 'ieee-p1363' }, sig);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) verify('sha256', data, { key: pub, dsaEncoding: 'ieee-p1363' }, sig);
    const base = Number(process.hrtime.bigint() - t0) / 1e3 / N;
    console.log('in process, per Check (Checker, memory FDS store, cached credential and key):');
    console.log(`  ${'baseline: one ES256 crypto.verify'.padEnd(40)} ${base.toFixed(1).padStart(7)} µs`);
    const bare = await time('bare allow route', Array.from({ length: N }, () => httpCheck({ host: HOST, path: '/bare/x' })), base);
    const sigUs = await time('[fds, app-signature]', signedPool(d, '/sig/items', N), base);
    await time('[fds, app-signature, passport]', signedPool(d, '/v1/items', N), base);
    console.log(`  app-signature over bare: +${(sigUs - bare).toFixed(1)} µs`);
  } finally {
    await assembled.close();
  }
}

function commandCalls(info: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of info.matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)) out.set(m[1]!, Number(m[2]));
  return out;
}

async function overGrpc(): Promise<void> {
  const prefix = `bench:app:${randomBytes(4).toString('hex')}:`;
  const regPort = await freePort();
  const svc: Running = await startService(config({ store: 'redis', redis: { url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 500 } }, regPort));
  const redis = new Redis(REDIS_URL);
  try {
    const d = await device(regPort);
    const probe = await svc.check(signedPool(d, '/v1/items', 1)[0]!);
    if (!probe.ok_response) throw new Error(`full route denied the bench request: ${String(probe.denied_response?.body)}`);
    const N = 200;
    const reqs = signedPool(d, '/v1/items', N);
    const before = commandCalls(await redis.info('commandstats'));
    // MONITOR tells the commands Passgate sent (round trips) from those its script ran inside Redis.
    const sent = await clientCommandsDuring(REDIS_URL, async () => {
      for (const r of reqs) await svc.check(r);
    });
    const after = commandCalls(await redis.info('commandstats'));
    const evalsha = (after.get('evalsha') ?? 0) - (before.get('evalsha') ?? 0);
    console.log(`\nRedis round trips per Check on [fds, app-signature, passport] (${N} Checks):`);
    for (const [name, n] of sent) if (name !== 'info') console.log(`  sent by Passgate (MONITOR): ${name.padEnd(8)} ${(n / N).toFixed(2)} per Check`);
    console.log(`  INFO commandstats evalsha delta: ${(evalsha / N).toFixed(2)} per Check (the block checks, counters and the nonce claim run inside it)`);

    const run = (label: string, make: () => CheckRequest, ms: number) => closedLoop(svc, label, make, ms, 32, 34);
    console.log('\nthroughput over gRPC (32 in flight, 3 s each):');
    // Signed just before the run (signatures live 60 s); a wrapped pool would replay, and replays are refused.
    const pool = signedPool(d, '/v1/items', 12_000);
    let i = 0;
    const bare = await run('bare allow', () => httpCheck({ host: HOST, path: '/bare/x' }), 3000);
    const full = await run('[fds, app-signature, passport]', () => pool[i++ % pool.length]!, 3000);
    console.log(`  ratio full/bare: ${(full / bare).toFixed(2)}${i > pool.length ? ' (pool wrapped: replays counted as denied)' : ''}`);
  } finally {
    redis.disconnect();
    await svc.stop();
    const r = new Redis(REDIS_URL);
    await deleteKeys(r, prefix);
    r.disconnect();
  }
}

await inProcess();
await overGrpc();
