/**
 * npm run bench:tokens — what tokens cost on the hot path.
 *
 * 1. µs per verification in process (the verifier modules the stages call):
 *    jwt with a cached key, dpop with a cached proof key and with a new key
 *    per proof, request-jwt.
 * 2. Redis commands per Check on `[fds, jwt, proof, passport]` (INFO
 *    commandstats delta over N Checks; must be 1 EVALSHA and nothing else).
 * 3. Throughput of that route over gRPC as a ratio of a bare `allow` route,
 *    same service, same run.
 * Redis: PASSGATE_TEST_REDIS_URL (default redis://127.0.0.1:6379).
 */
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { Redis } from 'ioredis';
import { deleteKeys } from '../common/redis-keys.js';
import { startService, httpCheck, type Running } from '../../test/support/service.js';
import { verifyJwt, type VerifiedJwt } from '../../ext-authz/src/tokens/jwt-verifier.js';
import { verifyDpop } from '../../ext-authz/src/tokens/dpop.js';
import { verifyRequestJwt } from '../../ext-authz/src/tokens/request-jwt.js';
import { ProofKeyCache } from '../../ext-authz/src/tokens/key-cache.js';
import { VerifiedTokenCache } from '../../ext-authz/src/tokens/token-cache.js';
import { TokensRuntime } from '../../ext-authz/src/tokens/runtime.js';
import { jwkThumbprint } from '../../ext-authz/src/tokens/jwk.js';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { closedLoop } from '../common/closed-loop.js';
import type { CheckRequest } from '../../ext-authz/src/proto/types.js';

const REDIS_URL = process.env['PASSGATE_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
function es256(header: object, payload: object, key: KeyObject): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}
const ec = () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, jwk: publicKey.export({ format: 'jwk' }) as Record<string, unknown> };
};
const now = () => Math.floor(Date.now() / 1000);
const ISS = 'https://issuer.bench';
const AUD = 'https://api.bench';
const URL_ = 'https://api.bench/v1/items';

const issuerKey = ec();
const browser = ec();
const jkt = jwkThumbprint(browser.jwk)!;
const accessToken = es256({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' }, { iss: ISS, aud: AUD, sub: 'alice', exp: now() + 3600, iat: now(), scope: 'read', cnf: { jkt } }, issuerKey.privateKey);
const ath = createHash('sha256').update(accessToken).digest('base64url');
const proofFor = (k = browser, url = URL_) => es256({ typ: 'dpop+jwt', alg: 'ES256', jwk: k.jwk }, { jti: randomBytes(12).toString('base64url'), htm: 'GET', htu: url, iat: now(), ath }, k.privateKey);

const tokensSection = {
  issuers: { bench: { issuer: ISS, keys: [{ ...issuerKey.jwk, kid: 'k1' }], algorithms: ['ES256'], audience: [AUD] } },
  clients: { device: { keys: [{ ...browser.jwk, kid: 'd1' }], algorithms: ['ES256'] } },
};

let baseline = 0;
function perCall(name: string, n: number, inputs: string[], f: (input: string) => unknown): number {
  for (let i = 0; i < Math.min(200, n); i++) f(inputs[i % inputs.length]!);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f(inputs[i % inputs.length]!);
  const us = Number(process.hrtime.bigint() - t0) / 1e3 / n;
  console.log(`  ${name.padEnd(36)} ${us.toFixed(1).padStart(7)} µs${baseline ? `  (${(us / baseline).toFixed(2)}× one crypto.verify)` : ''}`);
  return us;
}

async function inProcess(): Promise<void> {
  console.log('in process, per verification:');
  const cfg = validateConfig({ gateways: { g: { kind: 'public', routes: [] } }, tokens: tokensSection });
  const rt = new TokensRuntime();
  const issuer = rt.issuer(cfg.tokens!, 'bench');
  const client = rt.client(cfg.tokens!, 'device');
  const data = Buffer.from(accessToken.slice(0, accessToken.lastIndexOf('.')));
  const sig = Buffer.from(accessToken.slice(accessToken.lastIndexOf('.') + 1), 'base64url');
  const pub = createPublicKey({ key: issuerKey.jwk as never, format: 'jwk' });
  baseline = perCall('baseline: one ES256 crypto.verify', 5000, [''], () => verify('sha256', data, { key: pub, dsaEncoding: 'ieee-p1363' }, sig));
  perCall('jwt (cached key, signature checked)', 5000, [accessToken], (t) => {
    const r = verifyJwt(t, [issuer]);
    if (!('ok' in r) || !r.ok) throw new Error('jwt bench token did not verify');
  });
  const verified = new VerifiedTokenCache<VerifiedJwt>(10_000, 32 << 20, 60_000);
  perCall('jwt (verified-token cache hit)', 20000, [accessToken], (t) => {
    const r = verifyJwt(t, [issuer], Date.now(), verified);
    if (!('ok' in r) || !r.ok) throw new Error('jwt bench token did not verify');
  });
  const cache = new ProofKeyCache(10_000, 8 << 20);
  const opts = { algorithms: new Set(['ES256']), maxAgeSec: 60, skewSec: 5, maxBytes: 4096, maxJtiLength: 256, nonce: undefined };
  const proofs = Array.from({ length: 2000 }, () => proofFor());
  perCall('dpop (cached proof key)', 2000, proofs, (p) => {
    if (!verifyDpop({ proof: p, method: 'GET', htu: URL_, accessToken, boundJkt: jkt }, opts, cache).ok) throw new Error('dpop bench proof did not verify');
  });
  const fresh = Array.from({ length: 1000 }, () => proofFor(ec()));
  const cold = new ProofKeyCache(16, 64 << 10);
  perCall('dpop (new key each proof)', 1000, fresh, (p) => {
    if (!verifyDpop({ proof: p, method: 'GET', htu: URL_ }, opts, cold).ok) throw new Error('dpop bench proof did not verify');
  });
  const rjwts = Array.from({ length: 2000 }, () => es256({ typ: 'request+jwt', alg: 'ES256', kid: 'd1' }, { iss: 'device', sub: 'alice', jti: randomBytes(12).toString('base64url'), iat: now(), exp: now() + 30, htm: 'GET', htu: URL_ }, browser.privateKey));
  perCall('request-jwt (cached client key)', 2000, rjwts, (t) => {
    const r = verifyRequestJwt({ token: t, method: 'GET', htu: URL_ }, [client], { typ: 'request+jwt', maxLifetimeSec: 60, skewSec: 5, maxBytes: 4096, maxJtiLength: 256 });
    if (!('ok' in r) || !r.ok) throw new Error('request-jwt bench token did not verify');
  });
}

function commandCalls(info: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of info.matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)) out.set(m[1]!, Number(m[2]));
  return out;
}

async function overGrpc(): Promise<void> {
  const prefix = `bench:tokens:${randomBytes(4).toString('hex')}:`;
  const svc: Running = await startService(
    JSON.stringify({
      server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, defaultDeadlineMs: 2000 },
      logging: { level: 'warn', audit: false },
      fds: { store: 'redis', redis: { url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 500 }, rules: [{ name: 'replays', events: ['proof_replay'], subject: 'ip', threshold: 1000, window: '1m', block: '1m' }] },
      tokens: tokensSection,
      passport: { issuer: 'https://passgate.bench', audience: 'api', keys: { active: 'p1', entries: [{ id: 'p1', generate: true }] }, source: { type: 'static', users: { alice: { id: 'alice', roles: [] } } } },
      gateways: {
        g: {
          kind: 'public',
          routes: [
            { name: 'bare', match: { path: { prefix: '/bare/' } }, stages: ['allow'] },
            { name: 'full', match: { path: { prefix: '/v1/' } }, stages: ['fds', { type: 'jwt', issuers: ['bench'] }, { type: 'proof', mode: 'dpop' }, 'passport'] },
          ],
        },
      },
      defaultGateway: 'g',
    }),
  );
  const redis = new Redis(REDIS_URL);
  try {
    const req = (path: string, dpop?: string) =>
      httpCheck({ host: 'api.bench', path, headers: dpop ? { authorization: `DPoP ${accessToken}`, dpop } : {} });
    const probe = await svc.check(req('/v1/items', proofFor()));
    if (!probe.ok_response) throw new Error(`full route denied the bench request: ${String(probe.denied_response?.body)}`);

    // Redis commands per Check.
    const N = 200;
    const proofs = Array.from({ length: N }, () => proofFor());
    // MONITOR tells commands sent by clients from those a script runs (source "lua").
    const monitor = await redis.monitor();
    const sent = new Map<string, number>();
    let inScript = 0;
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (source === 'lua') inScript++;
      else sent.set(args[0]!.toLowerCase(), (sent.get(args[0]!.toLowerCase()) ?? 0) + 1);
    });
    await new Promise((r) => setTimeout(r, 100));
    const before = commandCalls(await redis.info('commandstats'));
    for (const p of proofs) await svc.check(req('/v1/items', p));
    const after = commandCalls(await redis.info('commandstats'));
    await new Promise((r) => setTimeout(r, 200));
    monitor.disconnect();
    console.log(`\nRedis commands per Check on [fds, jwt, proof, passport] (${N} Checks):`);
    for (const [name, n] of sent) if (name !== 'info') console.log(`  sent by Passgate (MONITOR): ${name.padEnd(8)} ${(n / N).toFixed(2)} per Check`);
    console.log(`  run inside that script (MONITOR source lua): ${(inScript / N).toFixed(2)} per Check`);
    const evals = (after.get('evalsha') ?? 0) - (before.get('evalsha') ?? 0);
    console.log(`  INFO commandstats evalsha delta: ${(evals / N).toFixed(2)} per Check`);

    // Throughput: same service, bare allow vs full route, closed loop with 32 in flight.
    const run = (label: string, make: () => CheckRequest, ms: number) => closedLoop(svc, label, make, ms, 32, 30);
    console.log('\nthroughput over gRPC (32 in flight, 3 s each):');
    const pool = Array.from({ length: 20_000 }, () => proofFor());
    let i = 0;
    const bare = await run('bare allow', () => req('/bare/x'), 3000);
    const full = await run('[fds, jwt, proof, passport]', () => req('/v1/items', pool[i++ % pool.length]), 3000);
    console.log(`  ratio full/bare: ${(full / bare).toFixed(2)}`);
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
