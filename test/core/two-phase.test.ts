/**
 * Start and reload are two-phase (prepare every capability, then commit all):
 * a config rejected by ANY section changes nothing that serves, and a start
 * that fails closes what it had opened. Each case here failed on the design
 * where capabilities installed their state while being reloaded one by one.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { decodeProtectedHeader } from 'jose';
import { pino } from 'pino';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { fdsCapability } from '../../ext-authz/src/fds/capability.js';
import { identityCapability } from '../../ext-authz/src/identity/capability.js';
import { passportCapability } from '../../ext-authz/src/passport/capability.js';
import { testCapability, testComposition, TEST_IDENTITY } from '../support/test-stages.js';
import { authzClient, check, headerMap, httpCheck } from '../support/service.js';
import { REDIS_URL, redisFds, testPrefix, cleanup } from '../fds/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'passgate-two-phase-'));
const garbageKey = join(dir, 'garbage.pem');
writeFileSync(garbageKey, 'not a key\n');

/** A config; `overrides` replaces top-level sections. */
function config(overrides: Record<string, unknown> = {}, routes: unknown[] = [{ name: 'app', match: { path: { prefix: '/app' } }, stages: [TEST_IDENTITY, 'passport'] }]) {
  return validateConfig(
    {
      gateways: { public: { kind: 'public', routes: [...routes, { name: 'bare', match: { path: { prefix: '/bare' } }, stages: ['allow'] }] } },
      defaultGateway: 'public',
      ...overrides,
    },
    'two-phase.yaml',
    testComposition(),
  );
}

function passport(active: string, entries: unknown[] = [{ id: active, generate: true }]) {
  return {
    issuer: 'https://passgate.test',
    audience: 'orders',
    keys: { active, entries },
    source: { type: 'static', users: { alice: { id: 'u-alice' } } },
  };
}

async function start(cfg: ReturnType<typeof config>): Promise<PassgateService> {
  return PassgateService.start({ config: cfg, capabilities: [testCapability], grpcPort: 0, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) });
}

async function jwksKids(svc: PassgateService): Promise<string[]> {
  const res = await fetch(`http://127.0.0.1:${svc.adminPort}/.well-known/jwks.json`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { keys: Array<{ kid: string }> };
  return body.keys.map((k) => k.kid);
}

async function rejected(svc: PassgateService, cfg: ReturnType<typeof config>, why: RegExp): Promise<void> {
  await assert.rejects(svc.applyConfig(cfg), (err: Error) => {
    assert.match(err.message, why);
    return true;
  });
}

describe('two-phase reload: a config rejected by another section changes nothing', function () {
  this.timeout(20_000);
  let svc: PassgateService | undefined;
  afterEach(async () => {
    await svc?.stop(200);
    svc = undefined;
  });

  it('passport: the JWKS keeps showing the old key and Checks keep signing with it', async () => {
    svc = await start(config({ passport: passport('k1'), fds: { store: 'memory' } }));
    assert.deepEqual(await jwksKids(svc), ['k1']);
    const state = svc.stateOf(passportCapability);
    // New passport keys, but the fds section cannot be prepared (its token file is missing).
    await rejected(svc, config({ passport: passport('k2'), fds: { store: 'memory', admin: { tokenFile: join(dir, 'missing-token') } } }), /fds\.admin\.tokenFile/);
    assert.deepEqual(await jwksKids(svc), ['k1'], 'the JWKS still publishes only the old key');
    assert.equal(svc.stateOf(passportCapability), state, 'the passport state is the one committed before');
    const client = authzClient(svc.grpcPort);
    try {
      const res = await check(client, httpCheck({ path: '/app', headers: { 'x-test-subject': 'alice' } }));
      const token = headerMap(res.ok_response?.headers)['x-passport'];
      assert.ok(token, JSON.stringify(res));
      assert.equal(decodeProtectedHeader(token).kid, 'k1', 'Checks sign with the old key');
    } finally {
      client.close();
    }
  });

  it('fds: the engine, its rules and its settings stay as they were', async () => {
    const rules = (threshold: number) => [{ name: 'logins', events: ['auth_failure'], subject: 'ip', threshold, window: '1m', block: '10m' }];
    const routes = [{ name: 'app', match: { path: { prefix: '/app' } }, stages: ['fds', 'allow'] }];
    svc = await start(config({ fds: { store: 'memory', rules: rules(5) }, passport: passport('k1') }, routes));
    const engine = svc.stateOf(fdsCapability)!.engine!;
    const before = { rules: engine.rules, settings: engine.settings, token: engine.adminToken };
    // New FDS rules; the passport section names a key file that holds no key (no route uses the passport stage).
    await rejected(
      svc,
      config({ fds: { store: 'memory', rules: rules(1), admin: { token: 'a-new-admin-token-0123456789' } }, passport: passport('k1', [{ id: 'k1', file: garbageKey }]) }, routes),
      /passport\.keys/,
    );
    assert.equal(svc.stateOf(fdsCapability)!.engine, engine, 'same engine');
    assert.equal(engine.rules, before.rules, 'old rules');
    assert.equal(engine.settings, before.settings, 'old settings');
    assert.equal(engine.adminToken, before.token, 'old admin token');
  });

  it('identity: the compiled mtls rules and GET /identity/mtls stay as they were', async () => {
    const mtls = (name: string) => ({ mtls: { rules: [{ name, uri: { prefix: 'spiffe://' }, identity: { subject: 'svc', kind: 'service' } }] } });
    svc = await start(config({ identity: mtls('old-rule'), passport: passport('k1') }, []));
    const state = svc.stateOf(identityCapability);
    const read = async () => (await (await fetch(`http://127.0.0.1:${svc!.adminPort}/identity/mtls`)).json()) as { rules: string[] };
    assert.deepEqual((await read()).rules, ['old-rule']);
    await rejected(svc, config({ identity: mtls('new-rule'), passport: passport('k1', [{ id: 'k1', file: garbageKey }]) }, []), /passport\.keys/);
    assert.deepEqual((await read()).rules, ['old-rule']);
    assert.equal(svc.stateOf(identityCapability), state);
  });

  it('core: the route table stays as it was', async () => {
    svc = await start(config({ passport: passport('k1') }, []));
    const client = authzClient(svc.grpcPort);
    try {
      const newRoute = [{ name: 'new', match: { path: { prefix: '/new' } }, stages: ['allow'] }];
      await rejected(svc, config({ passport: passport('k1', [{ id: 'k1', file: garbageKey }]) }, newRoute), /passport\.keys/);
      const res = await check(client, httpCheck({ path: '/new' }));
      assert.equal(res.denied_response?.status?.code, 404, 'the route of the rejected config does not exist');
    } finally {
      client.close();
    }
  });
});

describe('two-phase start: a failed start closes what it opened', function () {
  this.timeout(20_000);
  let blocker: Server;
  let prefix: string;
  before(async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  });
  after(() => blocker.close());
  beforeEach(() => {
    prefix = testPrefix();
  });
  afterEach(() => cleanup(prefix));

  async function clients(redis: Redis): Promise<number> {
    const list = (await redis.call('CLIENT', 'LIST')) as string;
    return list.split('\n').filter((l) => l.trim() !== '').length;
  }

  it('a taken gRPC port: the start fails naming it, and the FDS Redis connections are closed', async () => {
    const redis = new Redis(REDIS_URL, { lazyConnect: true });
    await redis.connect();
    try {
      const before = await clients(redis);
      const port = (blocker.address() as { port: number }).port;
      const cfg = config({ fds: redisFds(prefix), server: { grpc: { host: '127.0.0.1', port } } }, [{ name: 'app', stages: ['fds', 'allow'] }]);
      const err = await PassgateService.start({ config: cfg, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) }).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.ok(err, 'the start fails');
      assert.match(err.message, /^server\.grpc: cannot listen on 127\.0\.0\.1:\d+/);
      // CLIENT LIST counts this test's own connection too; the service's (store + subscriber) must be gone.
      let after = await clients(redis);
      for (let i = 0; i < 50 && after > before; i++) {
        await new Promise((r) => setTimeout(r, 50));
        after = await clients(redis);
      }
      assert.equal(after, before, 'no Redis connection left open by the failed start');
    } finally {
      redis.disconnect();
    }
  });
});
