/**
 * Issue 12 item 4: a block known before a Redis outage holds through it
 * (stale-if-error, until the block's own expiry) on fail-open routes, with a
 * private redis-server killed or paused.
 */
import assert from 'node:assert/strict';
import type { PassgateService } from '../../ext-authz/src/server/service.js';
import { OwnRedis, adminCall, bodyOf, checkClient, config, freePort, redisFds, startService, statusOf, testPrefix, upstreamHeader, type CheckClient } from '../fds/helpers.js';

const ROUTES = [{ name: 'open', prefix: '/open', failureMode: 'open' as const, stages: ['fds', 'allow'] }];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('fds: blocks survive a Redis outage (issue 12 item 4)', function () {
  this.timeout(30_000);
  let redis: OwnRedis;
  let svc: PassgateService | undefined;
  let client: CheckClient | undefined;

  beforeEach(async () => {
    redis = new OwnRedis(await freePort());
    await redis.start();
    // The fresh in-process cache lasts 200 ms: the outage below outlasts it.
    svc = await startService(config(redisFds(testPrefix(), { blockedCacheMs: 200 }, redis.url, 50), ROUTES));
    client = checkClient(svc.grpcPort);
  });
  afterEach(async () => {
    client?.close();
    await svc?.stop(100);
    await redis.kill();
  });

  async function blockAndSee(ip: string, ttl: string): Promise<void> {
    assert.equal((await adminCall(svc!.adminPort, 'POST', '/admin/fds/blocks', { kind: 'ip', subject: ip, reason: 'abuse', ttl })).status, 201);
    // Seen once through the store, so this process knows it.
    const res = await client!.check({ ip, path: '/open/x' });
    assert.equal(statusOf(res), 403);
    assert.equal(JSON.parse(bodyOf(res)).reason, 'blocked');
  }

  for (const fault of ['kill', 'pause'] as const) {
    it(`a known block stays a 403 while Redis is ${fault === 'kill' ? 'killed' : 'paused'}, past the fresh cache's lifetime; others pass degraded`, async () => {
      await blockAndSee('192.0.2.10', '10m');
      if (fault === 'kill') await redis.kill();
      else redis.pause();
      await sleep(400);
      for (let i = 0; i < 3; i++) {
        const res = await client!.check({ ip: '192.0.2.10', path: '/open/x' });
        assert.equal(statusOf(res), 403, `attempt ${i}`);
        assert.equal(JSON.parse(bodyOf(res)).reason, 'blocked');
        await sleep(250);
      }
      const other = await client!.check({ ip: '192.0.2.11', path: '/open/x' });
      assert.equal(statusOf(other), 200);
      assert.equal(upstreamHeader(other, 'x-passgate-degraded'), 'true');
      if (fault === 'pause') redis.resume();
    });
  }

  it('a known block still ends at its own expiry during the outage', async () => {
    await blockAndSee('192.0.2.20', '1s');
    await redis.kill();
    await sleep(1300);
    const res = await client!.check({ ip: '192.0.2.20', path: '/open/x' });
    assert.equal(statusOf(res), 200);
    assert.equal(upstreamHeader(res, 'x-passgate-degraded'), 'true');
  });
});
