/** fds.redis.autoPipelining: the setting reaches the ioredis client, and Checks count and block either way. */
import assert from 'node:assert/strict';
import { fdsConfigSchema } from '../../ext-authz/src/fds/config.js';
import type { RedisStore } from '../../ext-authz/src/fds/store/redis-store.js';
import type { PassgateService } from '../../ext-authz/src/server/service.js';
import { REDIS_URL, checkClient, cleanup, config, freePort, redisFds, startService, statusOf, testPrefix, storeWith } from './helpers.js';

/** What ioredis was told: the store's Check connection is private, read through its options. */
function autoPipeliningOf(store: RedisStore): boolean | undefined {
  return (store as unknown as { client: { options: { enableAutoPipelining?: boolean } } }).client.options.enableAutoPipelining;
}

describe('fds.redis.autoPipelining', () => {
  it('defaults to on, single node and cluster alike; an explicit value wins', async () => {
    const stores: RedisStore[] = [];
    try {
      const seed = [{ host: '127.0.0.1', port: await freePort() }]; // nothing listens: only the client's options are read
      const cases: Array<[Record<string, unknown>, boolean]> = [
        [{ mode: 'single', url: REDIS_URL }, true],
        [{ mode: 'single', url: REDIS_URL, autoPipelining: false }, false],
        [{ mode: 'cluster', nodes: seed }, true],
        [{ mode: 'cluster', nodes: seed, autoPipelining: false }, false],
      ];
      for (const [redis, expected] of cases) {
        const s = storeWith({ keyPrefix: testPrefix(), ...redis });
        stores.push(s);
        assert.equal(autoPipeliningOf(s), expected, JSON.stringify(redis));
      }
    } finally {
      for (const s of stores) await s.close();
    }
  });

  it('refuses a value that is not a boolean, naming the key', () => {
    const r = fdsConfigSchema.safeParse({ store: 'redis', redis: { url: REDIS_URL, autoPipelining: 'off' } });
    assert.equal(r.success, false);
    assert.deepEqual(r.error!.issues[0]!.path, ['redis', 'autoPipelining']);
  });

  for (const autoPipelining of [true, false]) {
    describe(`Checks with autoPipelining: ${autoPipelining}`, () => {
      const prefix = testPrefix();
      let svc: PassgateService;
      after(async () => {
        await svc?.stop(100);
        await cleanup(prefix);
      });

      it('count failures concurrently, block at the threshold and allow other IPs', async () => {
        const fds = redisFds(prefix, { rules: [{ name: 'ip-fail', events: ['auth_failure'], subject: 'ip', threshold: 5, window: '10s', block: '1m' }] });
        (fds['redis'] as Record<string, unknown>)['autoPipelining'] = autoPipelining;
        svc = await startService(
          config(fds, [
            { name: 'login', prefix: '/login', stages: ['fds', { type: 'deny', status: 401, reason: 'bad_credentials' }] },
            { name: 'api', prefix: '/api', stages: ['fds', 'allow'] },
          ]),
        );
        const c = checkClient(svc.grpcPort);
        try {
          // In flight together, so an auto-pipelined client batches them into one write.
          const first = await Promise.all(Array.from({ length: 5 }, () => c.check({ ip: '203.0.113.50', path: '/login' })));
          assert.deepEqual(first.map(statusOf), [401, 401, 401, 401, 401]);
          assert.equal(statusOf(await c.check({ ip: '203.0.113.50', path: '/api/x' })), 403, 'blocked after 5 failures');
          assert.equal(statusOf(await c.check({ ip: '203.0.113.51', path: '/api/x' })), 200);
        } finally {
          c.close();
        }
      });
    });
  }
});
