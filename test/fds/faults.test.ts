/**
 * Redis faults with a private redis-server (killed, paused, absent at start):
 * every Check still gets the route's failure-mode answer, and the service
 * recovers when Redis returns. Also measures round trips per Check on that
 * private server (INFO commandstats), where no one else sends commands.
 */
import assert from 'node:assert/strict';
import type { PassgateService } from '../../ext-authz/src/server/service.js';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import {
  OwnRedis,
  clientCommandsDuring,
  adminCall,
  bodyOf,
  checkClient,
  commandCalls,
  config,
  eventually,
  freePort,
  redisFds,
  startService,
  statusOf,
  testPrefix,
  upstreamHeader,
  type CheckClient,
} from './helpers.js';

const ROUTES = [
  { name: 'closed', prefix: '/closed', failureMode: 'closed' as const, stages: ['fds', 'allow'] },
  { name: 'open', prefix: '/open', failureMode: 'open' as const, stages: ['fds', 'allow'] },
];

function assertFailureMode(res: CheckResponse, route: 'closed' | 'open'): void {
  if (route === 'closed') {
    assert.equal(statusOf(res), 503);
    assert.equal(JSON.parse(bodyOf(res)).reason, 'fds_unavailable');
  } else {
    assert.equal(statusOf(res), 200);
    assert.equal(upstreamHeader(res, 'x-passgate-degraded'), 'true');
  }
}

describe('fds with Redis faults (own redis-server)', function () {
  this.timeout(30_000);
  let redis: OwnRedis;
  let svc: PassgateService | undefined;
  let client: CheckClient | undefined;

  beforeEach(async () => {
    redis = new OwnRedis(await freePort());
  });
  afterEach(async () => {
    client?.close();
    client = undefined;
    await svc?.stop(100);
    svc = undefined;
    await redis.kill();
  });

  async function startSvc(extra: Record<string, unknown> = {}) {
    svc = await startService(config(redisFds(testPrefix(), extra, redis.url, 50), ROUTES));
    client = checkClient(svc.grpcPort);
    return { svc, client };
  }

  async function burst(c: CheckClient, route: 'closed' | 'open', n: number, deadlineMs = 1500): Promise<CheckResponse[]> {
    return Promise.all(Array.from({ length: n }, (_, i) => c.check({ ip: `192.0.2.${i + 1}`, path: `/${route}/x`, deadlineMs })));
  }

  it('answers with the failure mode while Redis is paused (SIGSTOP) and recovers on SIGCONT', async () => {
    await redis.start();
    const { svc, client: c } = await startSvc();
    assert.equal(statusOf(await c.check({ path: '/closed/x' })), 200);
    redis.pause();
    for (const res of await burst(c, 'closed', 20)) assertFailureMode(res, 'closed');
    for (const res of await burst(c, 'open', 20)) assertFailureMode(res, 'open');
    redis.resume();
    await eventually('closed route to allow again', async () => statusOf(await c.check({ path: '/closed/x' })) === 200);
    const metrics = await (await fetch(`http://127.0.0.1:${svc.adminPort}/metrics`)).text();
    // 20 from the burst, plus polls answered while the circuit waited for its probe after SIGCONT.
    assert.ok(Number(/passgate_fds_degraded_decisions_total\{mode="closed"\} (\d+)/.exec(metrics)?.[1]) >= 20);
    assert.match(metrics, /passgate_fds_degraded_decisions_total\{mode="open"\} 20/);
    assert.match(metrics, /passgate_fds_redis_errors_total\{op="evaluate"\} [1-9]/);
    // 20 timeouts opened the circuit: part of the second burst was answered without touching Redis.
    assert.match(metrics, /passgate_fds_redis_errors_total\{op="breaker_open"\} [1-9]/);
  });

  it('answers with the failure mode when Redis is killed and reconnects when it returns', async () => {
    await redis.start();
    const { client: c } = await startSvc();
    assert.equal(statusOf(await c.check({ path: '/open/x' })), 200);
    await redis.kill();
    for (const res of await burst(c, 'closed', 10)) assertFailureMode(res, 'closed');
    for (const res of await burst(c, 'open', 10)) assertFailureMode(res, 'open');
    await redis.start();
    await eventually('reconnect after Redis restarts', async () => statusOf(await c.check({ path: '/closed/x' })) === 200, 10_000);
    const ok = await c.check({ path: '/open/x' });
    assert.equal(upstreamHeader(ok, 'x-passgate-degraded'), undefined);
  });

  it('starts and answers while Redis is down, then recovers when it comes up', async () => {
    const { client: c } = await startSvc();
    assertFailureMode(await c.check({ path: '/closed/x' }), 'closed');
    assertFailureMode(await c.check({ path: '/open/x' }), 'open');
    await redis.start();
    await eventually('first connection', async () => statusOf(await c.check({ path: '/closed/x' })) === 200, 10_000);
  });

  it('applies the failure mode within a Check deadline shorter than the command timeout', async () => {
    await redis.start();
    // Commands may take 5 s here, but Checks get 1 s: only the engine's own deadline bound can answer in time.
    // Without it the core would keep the chain's allow when the finish hook overran (a fail-open on a closed route).
    const cfg = config(redisFds(testPrefix(), {}, redis.url), ROUTES);
    (cfg.fds!.redis as { commandTimeoutMs: number }).commandTimeoutMs = 5000;
    cfg.server.deadlineMarginMs = 300; // answer well before the client gives up, even on a loaded machine
    svc = await startService(cfg);
    client = checkClient(svc.grpcPort);
    await eventually('connected', async () => statusOf(await client!.check({ path: '/closed/x' })) === 200);
    redis.pause();
    const results = await Promise.all(Array.from({ length: 5 }, (_, i) => client!.check({ ip: `192.0.2.${i + 1}`, path: '/closed/x', deadlineMs: 1000 })));
    redis.resume();
    // FDS gives up just before the core's deadline timer; on a loaded machine either may name the 503.
    for (const r of results) {
      assert.equal(statusOf(r), 503);
      assert.ok(['fds_unavailable', 'deadline_exceeded'].includes(JSON.parse(bodyOf(r)).reason), bodyOf(r));
    }
  });

  it('costs exactly 1 Redis round trip per Check, and 0 for a cached blocked subject', async () => {
    await redis.start();
    // Every measured Check both checks its IP's block and updates a counter (the `request` rule): still one script.
    const rules = [
      { name: 'f', events: ['auth_failure'], subject: 'ip', threshold: 1000, window: '60s', block: '1m' },
      { name: 'r', events: ['request'], subject: 'ip', threshold: 1000, window: '60s', block: '1m' },
    ];
    const { svc, client: c } = await startSvc({ rules, blockedCacheMs: 60_000, cidrRefreshMs: 3_600_000 });
    await c.check({ path: '/closed/x' }); // loads the script (EVALSHA miss → EVAL) outside the measurement
    const before = await commandCalls(redis.url);
    const hot = await clientCommandsDuring(redis.url, async () => {
      for (let i = 0; i < 50; i++) assert.equal(statusOf(await c.check({ ip: `198.51.100.${i}`, path: '/closed/x' })), 200);
    });
    const after = await commandCalls(redis.url);
    assert.deepEqual([...hot.entries()], [['evalsha', 50]], 'exactly one command per Check, and it is the script');
    assert.equal((after.get('evalsha') ?? 0) - (before.get('evalsha') ?? 0), 50, 'commandstats agrees');
    const counted = await adminCall(svc.adminPort, 'GET', '/admin/fds/inspect?kind=ip&subject=198.51.100.7');
    assert.deepEqual(counted.json.counters, [{ rule: 'f', count: 0 }, { rule: 'r', count: 1 }], 'the same round trip updated the counter');
    const r = await adminCall(svc.adminPort, 'POST', '/admin/fds/blocks', { kind: 'ip', subject: '203.0.113.66', reason: 'x', ttl: '10m' });
    assert.equal(r.status, 201);
    assert.equal(statusOf(await c.check({ ip: '203.0.113.66', path: '/closed/x' })), 403); // learns the block (1 round trip)
    const cached = await clientCommandsDuring(redis.url, async () => {
      for (let i = 0; i < 50; i++) assert.equal(statusOf(await c.check({ ip: '203.0.113.66', path: '/closed/x' })), 403);
    });
    assert.deepEqual([...cached.entries()], [], 'cached blocked subject: no Redis command');
  });
});
