/** FDS end to end: real PassgateService over gRPC, the real Redis, the admin API over HTTP. */
import assert from 'node:assert/strict';
import type { PassgateService } from '../../ext-authz/src/server/service.js';
import { fdsCapability } from '../../ext-authz/src/fds/capability.js';
import { TOKEN, adminCall, bodyOf, checkClient, cleanup, config, eventually, redisFds, startService, statusOf, testPrefix, type CheckClient } from './helpers.js';

const ROUTES = [
  { name: 'login', prefix: '/login', stages: ['fds', { type: 'deny', status: 401, reason: 'bad_credentials' }] },
  { name: 'api', prefix: '/api', stages: ['fds', 'allow'] },
];
const RULES = [{ name: 'ip-fail', events: ['auth_failure'], subject: 'ip', threshold: 3, window: '10s', block: '1m' }];

describe('fds end to end (gRPC + admin API + Redis)', function () {
  let prefix: string;
  const services: PassgateService[] = [];
  const clients: CheckClient[] = [];
  async function start(extra: Record<string, unknown> = {}, p = prefix) {
    const svc = await startService(config(redisFds(p, { rules: RULES, ...extra }), ROUTES));
    services.push(svc);
    const c = checkClient(svc.grpcPort);
    clients.push(c);
    return { svc, c };
  }
  beforeEach(() => {
    prefix = testPrefix();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of services.splice(0)) await s.stop(100);
    await cleanup(prefix);
  });

  it('blocks an IP after plain 401s (derived auth_failure) with a 403 that leaks nothing', async () => {
    const { svc, c } = await start();
    for (let i = 0; i < 3; i++) assert.equal(statusOf(await c.check({ ip: '203.0.113.7', path: '/login' })), 401);
    const res = await c.check({ ip: '203.0.113.7', path: '/api/data' });
    assert.equal(statusOf(res), 403);
    const body = JSON.parse(bodyOf(res)) as Record<string, unknown>;
    assert.equal(body['reason'], 'blocked');
    assert.ok(!bodyOf(res).includes('ip-fail') && !bodyOf(res).includes('203.0.113.7'), 'no rule or subject in the client body');
    assert.equal(statusOf(await c.check({ ip: '203.0.113.8', path: '/api/data' })), 200);
    const inspect = await adminCall(svc.adminPort, 'GET', '/admin/fds/inspect?kind=ip&subject=203.0.113.7');
    assert.equal(inspect.status, 200);
    assert.equal(inspect.json.blocked.rule, 'ip-fail');
    const metrics = await (await fetch(`http://127.0.0.1:${svc.adminPort}/metrics`)).text();
    assert.match(metrics, /passgate_fds_blocks_created_total\{kind="ip",source="rule"\} 1/);
    assert.match(metrics, /passgate_fds_blocks_active 1/);
  });

  it('blocks IPv4 and IPv6 CIDR ranges from the admin API and unblocks them', async () => {
    const { svc, c } = await start();
    let r = await adminCall(svc.adminPort, 'POST', '/admin/fds/blocks', { kind: 'ip', subject: '10.9.77.1/16', reason: 'abuse range', ttl: '1h' });
    assert.equal(r.status, 201);
    assert.equal(r.json.block.subject, '10.9.0.0/16', 'stored canonical');
    r = await adminCall(svc.adminPort, 'POST', '/admin/fds/blocks', { kind: 'ip', subject: '2001:DB8:77::/48', reason: 'v6 range', ttl: 'none' });
    assert.equal(r.status, 201);
    await eventually('CIDR list reload', async () => statusOf(await c.check({ ip: '10.9.3.4', path: '/api' })) === 403);
    assert.equal(statusOf(await c.check({ ip: '10.10.0.1', path: '/api' })), 200);
    assert.equal(statusOf(await c.check({ ip: '2001:db8:77:1::5', path: '/api' })), 403);
    assert.equal(statusOf(await c.check({ ip: '2001:db8:78::5', path: '/api' })), 200);
    assert.equal(statusOf(await c.check({ ip: '::ffff:10.9.200.1', path: '/api' })), 403, 'IPv4-mapped IPv6 matches the v4 range');
    const inspect = await adminCall(svc.adminPort, 'GET', '/admin/fds/inspect?kind=ip&subject=10.9.1.1');
    assert.equal(inspect.json.coveredBy.subject, '10.9.0.0/16');
    r = await adminCall(svc.adminPort, 'DELETE', `/admin/fds/blocks?kind=ip&subject=${encodeURIComponent('10.9.0.0/16')}`);
    assert.equal(r.status, 200);
    await eventually('CIDR unblock', async () => statusOf(await c.check({ ip: '10.9.3.4', path: '/api' })) === 200);
    assert.equal(statusOf(await c.check({ ip: '2001:db8:77::9', path: '/api' })), 403, 'the other range stays');
  });

  it('an unblock on one instance reaches a second instance at once (pub/sub clears its cache)', async () => {
    const a = await start({ blockedCacheMs: 600_000 });
    const b = await start({ blockedCacheMs: 600_000 });
    const r = await adminCall(a.svc.adminPort, 'POST', '/admin/fds/blocks', { kind: 'ip', subject: '192.0.2.200', reason: 'manual', ttl: '1h' });
    assert.equal(r.status, 201);
    assert.equal(statusOf(await b.c.check({ ip: '192.0.2.200', path: '/api' })), 403, 'B sees the block in Redis');
    assert.equal(statusOf(await b.c.check({ ip: '192.0.2.200', path: '/api' })), 403, 'B now answers from its cache');
    const metricsB = await (await fetch(`http://127.0.0.1:${b.svc.adminPort}/metrics`)).text();
    assert.match(metricsB, /passgate_fds_blocked_checks_total\{kind="ip",cached="true"\} 1/);
    const del = await adminCall(a.svc.adminPort, 'DELETE', '/admin/fds/blocks?kind=ip&subject=192.0.2.200');
    assert.equal(del.status, 200);
    // B caches for 10 minutes; only the pub/sub message can make it allow within this bound.
    await eventually('B to allow after the unblock on A', async () => statusOf(await b.c.check({ ip: '192.0.2.200', path: '/api' })) === 200, 3000);
  });

  it('lists every block through SCAN pages', async () => {
    const { svc } = await start();
    for (let i = 0; i < 25; i++) {
      const r = await adminCall(svc.adminPort, 'POST', '/admin/fds/blocks', { kind: 'user', subject: `user-${i}`, reason: 'bulk', ttl: '10m' });
      assert.equal(r.status, 201);
    }
    await adminCall(svc.adminPort, 'POST', '/admin/fds/blocks', { kind: 'ip', subject: '198.51.100.0/24', reason: 'r', ttl: '10m' });
    const seen = new Set<string>();
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `/admin/fds/blocks?count=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const r = await adminCall(svc.adminPort, 'GET', q);
      assert.equal(r.status, 200);
      for (const item of r.json.items) seen.add(`${item.kind}:${item.subject}`);
      cursor = r.json.next;
      pages++;
    } while (cursor && pages < 100);
    assert.equal(seen.size, 26);
    assert.ok(seen.has('ip:198.51.100.0/24'));
    const users = await adminCall(svc.adminPort, 'GET', '/admin/fds/blocks?kind=ip&count=1000');
    assert.ok(users.json.items.every((i: { kind: string }) => i.kind === 'ip'));
  });

  it('rejects bad admin input with precise errors', async () => {
    const { svc } = await start();
    const post = (body: unknown) => adminCall(svc.adminPort, 'POST', '/admin/fds/blocks', body);
    let r = await post({ kind: 'ip', subject: '300.1.2.3', reason: 'x', ttl: '1h' });
    assert.equal(r.status, 400);
    assert.match(r.json.reason, /ip subject: "300\.1\.2\.3" is not an IPv4 or IPv6 address/);
    r = await post({ kind: 'ip', subject: '10.0.0.0/40', reason: 'x', ttl: '1h' });
    assert.match(r.json.reason, /not a valid CIDR range/);
    r = await post({ kind: 'planet', subject: 'mars', reason: 'x', ttl: '1h' });
    assert.equal(r.status, 400);
    assert.match(r.json.reason, /unknown subject kind "planet"; use one of user, device, ip, client, cert/);
    r = await post({ kind: 'user', subject: 'a', reason: 'x', ttl: '9999d' });
    assert.match(r.json.reason, /ttl 9999d is out of range; must be between 1s and 365d/);
    r = await post({ kind: 'user', subject: 'a', reason: 'x', ttl: 'forever' });
    assert.match(r.json.reason, /ttl "forever" is not a duration/);
    r = await post({ kind: 'user', subject: 'a', reason: 'x' });
    assert.match(r.json.reason, /ttl is required/);
    r = await post({ kind: 'user', subject: 'a', ttl: '1h' });
    assert.match(r.json.reason, /reason is required/);
    r = await post({ kind: 'user', subject: 'a', reason: 'x', ttl: '1h', tll: 1 });
    assert.match(r.json.reason, /unknown field\(s\) tll/);
    r = await post('{not json');
    assert.match(r.json.reason, /not valid JSON/);
    r = await post({ kind: 'user', subject: 'a', reason: 'x', ttl: '0s' });
    assert.match(r.json.reason, /ttl 0s is out of range/);
    // The query-string endpoints check the same way.
    const get = (method: string, path: string) => adminCall(svc.adminPort, method, path);
    for (const [method, path, reason] of [
      ['DELETE', '/admin/fds/blocks?kind=planet&subject=mars', /unknown subject kind "planet"/],
      ['DELETE', '/admin/fds/blocks?kind=ip&subject=1.2.3', /ip subject: "1\.2\.3" is not an IPv4 or IPv6 address/],
      ['GET', '/admin/fds/inspect?kind=ip&subject=2001:db8::/200', /not a valid CIDR range/],
      ['GET', '/admin/fds/inspect?subject=alice', /kind is required/],
      ['GET', '/admin/fds/blocks?kind=planet', /unknown subject kind "planet"/],
      ['GET', '/admin/fds/blocks?count=0', /count must be an integer from 1 to 1000/],
    ] as const) {
      r = await get(method, path);
      assert.equal(r.status, 400, `${method} ${path}`);
      assert.match(r.json.reason, reason);
    }
    r = await adminCall(svc.adminPort, 'DELETE', '/admin/fds/blocks?kind=user&subject=nobody');
    assert.equal(r.status, 404);
    r = await adminCall(svc.adminPort, 'GET', '/admin/fds/nothing');
    assert.equal(r.status, 404);
  });

  it('guards the admin API with the bearer token and refuses to serve without one', async () => {
    const { svc } = await start();
    assert.equal((await adminCall(svc.adminPort, 'GET', '/admin/fds/blocks', undefined, null)).status, 401);
    assert.equal((await adminCall(svc.adminPort, 'GET', '/admin/fds/blocks', undefined, 'wrong-token-wrong-token')).status, 401);
    assert.equal((await adminCall(svc.adminPort, 'GET', '/admin/fds/blocks')).status, 200);
    const saved = process.env['PASSGATE_FDS_ADMIN_TOKEN'];
    delete process.env['PASSGATE_FDS_ADMIN_TOKEN'];
    try {
      const cfg = redisFds(prefix, { rules: RULES });
      delete cfg['admin'];
      const svc2 = await startService(config(cfg, ROUTES));
      services.push(svc2);
      const r = await adminCall(svc2.adminPort, 'GET', '/admin/fds/blocks');
      assert.equal(r.status, 503);
      assert.match(r.json.reason, /no token is configured; set fds\.admin\.token/);
    } finally {
      if (saved !== undefined) process.env['PASSGATE_FDS_ADMIN_TOKEN'] = saved;
    }
  });

  it('reloads rules in place and reconnects only when the store changes', async () => {
    const { svc, c } = await start();
    const engine = svc.stateOf(fdsCapability)!.engine;
    await svc.applyConfig(config(redisFds(prefix, { rules: [{ ...RULES[0], threshold: 1 }] }), ROUTES));
    assert.equal(svc.stateOf(fdsCapability)!.engine, engine, 'same engine (no reconnect) for a rules change');
    assert.equal(statusOf(await c.check({ ip: '192.0.2.31', path: '/login' })), 401);
    assert.equal(statusOf(await c.check({ ip: '192.0.2.31', path: '/api' })), 403, 'the new threshold applies at once');
    const other = testPrefix();
    try {
      await svc.applyConfig(config(redisFds(other, { rules: RULES }), ROUTES));
      assert.notEqual(svc.stateOf(fdsCapability)!.engine, engine, 'a new store means a new engine');
      await eventually('new engine connected', async () => statusOf(await c.check({ ip: '192.0.2.31', path: '/api' })) === 200);
    } finally {
      await cleanup(other);
    }
  });

  it('takes the client IP from x-forwarded-for behind trusted hops (clientIp.source: xff)', async () => {
    const { svc, c } = await start({ clientIp: { source: 'xff', xffTrustedHops: 1 } });
    const r = await adminCall(svc.adminPort, 'POST', '/admin/fds/blocks', { kind: 'ip', subject: '203.0.113.5', reason: 'x', ttl: '10m' });
    assert.equal(r.status, 201);
    // One trusted proxy appended its peer (10.0.0.1); the client is the next entry from the right.
    const xff = (v: string) => ({ 'x-forwarded-for': v });
    assert.equal(statusOf(await c.check({ ip: '10.0.0.1', path: '/api', headers: xff('198.51.100.1, 203.0.113.5, 10.0.0.1') })), 403);
    // A client cannot escape by prepending entries: only the trusted position counts.
    assert.equal(statusOf(await c.check({ ip: '10.0.0.1', path: '/api', headers: xff('1.1.1.1, 203.0.113.5, 10.0.0.1') })), 403);
    assert.equal(statusOf(await c.check({ ip: '10.0.0.1', path: '/api', headers: xff('203.0.113.5, 198.51.100.2, 10.0.0.1') })), 200, 'a spoofed leftmost entry is not the client');
    assert.equal(statusOf(await c.check({ ip: '203.0.113.5', path: '/api', headers: xff('garbage') })), 403, 'unusable header: the peer address is used');
  });

  it('works with the in-memory store (embedded default) through the same admin API', async () => {
    const svc = await startService(config({ store: 'memory', admin: { token: TOKEN }, rules: RULES, blockedCacheMs: 600_000 }, ROUTES));
    services.push(svc);
    const c = checkClient(svc.grpcPort);
    clients.push(c);
    for (let i = 0; i < 3; i++) assert.equal(statusOf(await c.check({ ip: '192.0.2.77', path: '/login' })), 401);
    assert.equal(statusOf(await c.check({ ip: '192.0.2.77', path: '/api' })), 403);
    assert.equal((await adminCall(svc.adminPort, 'POST', '/admin/fds/blocks', { kind: 'ip', subject: '2001:db8::/32', reason: 'r', ttl: '1h' })).status, 201);
    assert.equal(statusOf(await c.check({ ip: '2001:db8::1', path: '/api' })), 403);
    const list = await adminCall(svc.adminPort, 'GET', '/admin/fds/blocks');
    assert.deepEqual(list.json.items.map((i: { subject: string }) => i.subject).sort(), ['192.0.2.77', '2001:db8::/32']);
    assert.equal((await adminCall(svc.adminPort, 'DELETE', '/admin/fds/blocks?kind=ip&subject=192.0.2.77')).status, 200);
    assert.equal(statusOf(await c.check({ ip: '192.0.2.77', path: '/api' })), 200, 'unblock clears the cache at once');
  });
});
