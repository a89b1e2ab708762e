/**
 * The Checks that meet in one event-loop turn share one FDS script call (redis-store.ts, lua/evaluate.ts):
 * each gets the answer it would have had from its own call sent in the same order, and a failed call fails
 * every Check of its batch, never another batch's.
 */
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import type { RedisStore } from '../../ext-authz/src/fds/store/redis-store.js';
import type { CounterOp } from '../../ext-authz/src/fds/store/store.js';
import { REDIS_URL, cleanup, testPrefix, storeWith, commandCalls } from './helpers.js';

function count(subject: string, threshold: number): CounterOp {
  return {
    rule: 'r', kind: 'ip', subject, increment: 1, windowMs: 60_000, threshold, ttls: [60_000], memoryMs: 600_000,
    reason: `${threshold} x failure (rule r)`,
  };
}

/** evalsha+eval calls the server ran while `fn` ran (commandstats). */
async function scriptCalls(fn: () => Promise<void>): Promise<number> {
  const scripts = (m: Map<string, number>) => (m.get('evalsha') ?? 0) + (m.get('eval') ?? 0);
  const before = scripts(await commandCalls(REDIS_URL));
  await fn();
  return scripts(await commandCalls(REDIS_URL)) - before;
}

describe('fds: Checks of one event-loop turn share one script call', () => {
  const prefix = testPrefix();
  let store: RedisStore;
  let admin: Redis;
  before(async () => {
    admin = new Redis(REDIS_URL);
    store = storeWith({ keyPrefix: prefix, autoPipelining: false });
    assert.equal(await store.ready(5000), true, 'Redis at 127.0.0.1:6379 answers');
    await store.evaluate([{ kind: 'ip', subject: '192.0.2.250' }], []); // loads the script outside the counts below
  });
  after(async () => {
    await store?.close();
    admin?.disconnect();
    await cleanup(prefix);
  });

  it('20 concurrent Checks: fewer calls than Checks, and each answer is the one sequential calls give', async () => {
    let results: Awaited<ReturnType<RedisStore['evaluate']>>[] = [];
    const calls = await scriptCalls(async () => {
      // The 5th count of one IP crosses the threshold: that Check creates the block, and the Checks after it in
      // the batch see the subject blocked (and are not counted), as separate calls in that order would.
      results = await Promise.all(Array.from({ length: 20 }, () => store.evaluate([{ kind: 'ip', subject: '198.51.100.9' }], [count('198.51.100.9', 5)])));
    });
    assert.ok(calls >= 1 && calls < 20, `${calls} script calls for 20 Checks`);
    assert.deepEqual(results.map((r) => r.created.length), [0, 0, 0, 0, 1, ...Array(15).fill(0)]);
    assert.deepEqual(results.map((r) => r.blocked !== undefined), [false, false, false, false, false, ...Array(15).fill(true)]);
    assert.equal(results[5]!.blocked!.subject, '198.51.100.9');
    assert.equal(results[5]!.blocked!.rule, 'r');
  });

  it('a proof id claimed twice in one batch: the first Check is fresh, the second a replay', async () => {
    const claim = { key: `jti-${Date.now()}`, expiresAt: Date.now() + 60_000, minTtlMs: 1000 };
    const [a, b, c] = await Promise.all([
      store.evaluate([], [], [claim]),
      store.evaluate([], [], [claim]),
      store.evaluate([], [], [{ ...claim, key: `${claim.key}-other` }]),
    ]);
    assert.equal(a!.replayed ?? false, false);
    assert.equal(b!.replayed, true);
    assert.equal(c!.replayed ?? false, false);
  });

  it('more Checks than one call takes are split into several calls, every one answered', async () => {
    const subjects = Array.from({ length: 150 }, (_, i) => `203.0.113.${i % 250}-${i}`);
    let results: Awaited<ReturnType<RedisStore['evaluate']>>[] = [];
    const calls = await scriptCalls(async () => {
      results = await Promise.all(subjects.map((s) => store.evaluate([{ kind: 'ip', subject: s }], [count(s, 1000)])));
    });
    assert.equal(results.length, 150);
    for (const r of results) assert.equal(r.blocked, undefined);
    assert.ok(calls >= 3, `${calls} calls: a call holds at most 64 Checks`);
    const inspected = await admin.keys(`${prefix}*c:r:ip:203.0.113.7-7*`);
    assert.equal(inspected.length, 1, 'each Check counted in its own key');
  });

  it('a Check whose ops fail inside Redis fails alone: the Checks before and after it in the batch are answered', async () => {
    await store.evaluate([], [count('192.0.2.77', 1000)]);
    const [key] = await admin.keys(`${prefix}*c:r:ip:192.0.2.77`);
    assert.ok(key, 'the counter key of the subject');
    await admin.del(key);
    await admin.set(key, 'not a sorted set'); // its count now fails with WRONGTYPE
    let calls = 0;
    let outcomes: PromiseSettledResult<unknown>[] = [];
    calls = await scriptCalls(async () => {
      outcomes = await Promise.allSettled([
        store.evaluate([{ kind: 'ip', subject: '192.0.2.76' }], [count('192.0.2.76', 1000)]),
        store.evaluate([{ kind: 'ip', subject: '192.0.2.77' }], [count('192.0.2.77', 1000)]),
        store.evaluate([{ kind: 'ip', subject: '192.0.2.78' }], [count('192.0.2.78', 1000)]),
      ]);
    });
    assert.ok(calls >= 1 && calls < 3, `${calls} script calls: the three Checks shared one (another client may add one)`);
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((outcomes[1] as PromiseRejectedResult).reason), /FDS Check 2 of the call failed: .*WRONGTYPE/);
    assert.equal((await admin.keys(`${prefix}*c:r:ip:192.0.2.78`)).length, 1, 'the Check after the failed one was counted');
  });

  it('a failed call fails the Checks of its batch, and the next turn is served again', async () => {
    const broken = storeWith({ keyPrefix: prefix, url: 'redis://127.0.0.1:1', commandTimeoutMs: 300, connectTimeoutMs: 200 });
    try {
      const outcomes = await Promise.allSettled(Array.from({ length: 3 }, () => broken.evaluate([{ kind: 'ip', subject: '192.0.2.9' }], [])));
      assert.deepEqual(outcomes.map((o) => o.status), ['rejected', 'rejected', 'rejected']);
    } finally {
      await broken.close();
    }
    const ok = await store.evaluate([{ kind: 'ip', subject: '192.0.2.9' }], []);
    assert.equal(ok.blocked, undefined);
  });
});
