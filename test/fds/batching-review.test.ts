/**
 * Review of FDS batching (redis-store.ts `call`/`flushBatch`, script-ops.ts `encodeBatch`, lua/evaluate.ts):
 * a batch must answer every Check as its own call sent in that order would, a failing Check fails alone,
 * and the batch respects its documented bounds and lifecycle (close, not ready, stall).
 */
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import type { RedisStore } from '../../ext-authz/src/fds/store/redis-store.js';
import type { Claim, CounterOp, SubjectRef, Watch } from '../../ext-authz/src/fds/store/store.js';
import { OwnRedis, REDIS_URL, cleanup, freePort, testPrefix, storeWith } from './helpers.js';

function count(subject: string, threshold: number, extra: Partial<CounterOp> = {}): CounterOp {
  return { rule: 'r', kind: 'ip', subject, increment: 1, windowMs: 60_000, threshold, ttls: [60_000, 120_000], memoryMs: 600_000, reason: 'r', ...extra };
}

/** Records the KEYS+ARGV size of every batched script call this store sends. */
function spyCalls(store: RedisStore): number[] {
  const client = (store as unknown as { client: { fdsEvaluate: (...a: unknown[]) => Promise<unknown> } }).client;
  const sizes: number[] = [];
  const orig = client.fdsEvaluate.bind(client);
  client.fdsEvaluate = (...a: unknown[]) => {
    sizes.push(a.length - 1);
    return orig(...a);
  };
  return sizes;
}

type Args = [SubjectRef[], CounterOp[], Claim[]?, Watch[]?];
/** Times differ between runs (TIME); everything else must be equal. */
const norm = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (k, x) => (k === 'createdAt' || k === 'expiresAt' ? 0 : x)));
const settle = (p: Promise<unknown>) =>
  p.then(
    (value) => ({ status: 'fulfilled', value: norm(value) }),
    (err) => ({ status: 'rejected', reason: String(err).replace(/Check \d+ of/, 'Check N of') }),
  );

describe('fds batching review', function () {
  this.timeout(20_000);
  const pa = testPrefix();
  const pb = testPrefix();
  let a: RedisStore;
  let b: RedisStore;
  let admin: Redis;
  before(async () => {
    a = storeWith({ keyPrefix: pa, autoPipelining: false });
    b = storeWith({ keyPrefix: pb, autoPipelining: false });
    admin = new Redis(REDIS_URL);
    assert.equal(await a.ready(5000), true);
    assert.equal(await b.ready(5000), true);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    admin?.disconnect();
    await cleanup(pa);
    await cleanup(pb);
  });

  it('a batch mixing check, claim, count (fresh/replay/shadow), watch and a failing Check answers and writes exactly what sequential calls do', async () => {
    const exp = Date.now() + 60_000;
    for (const s of [a, b]) await s.putSession('s1', { version: 'v1', sealed: 'x', absoluteExpiresAt: exp }, 60_000, []);
    // A counter key of the wrong type: the Check counting it fails inside Redis after its earlier ops wrote.
    for (const p of [pa, pb]) await admin.set(`${p}{fds}:c:r:ip:10.0.0.9`, 'not a zset');
    const cl = (key: string): Claim => ({ key, expiresAt: exp, minTtlMs: 1000 });
    const checks: Args[] = [
      [[{ kind: 'ip', subject: '10.0.0.1' }], [count('10.0.0.1', 2)], [cl('j1')], [{ id: 's1', version: 'v1', ttlMs: 60_000 }]],
      [[{ kind: 'ip', subject: '10.0.0.2' }], [count('10.0.0.1', 2, { when: 'fresh' }), count('10.0.0.2', 1, { when: 'replay', rule: 'rp' })], [cl('j1')], [{ id: 's1', version: 'v0', ttlMs: 60_000 }, { id: 'none', version: 'v', ttlMs: 1000 }]],
      [[{ kind: 'ip', subject: '10.0.0.1' }, { kind: 'ip', subject: '10.0.0.2' }], [count('10.0.0.3', 1, { shadow: true })], [cl('j2')]],
      [[{ kind: 'user', subject: 'u' }], [count('10.0.0.4', 1), count('10.0.0.9', 5)], [cl('j3')]],
      [[], [], [cl('j3')], [{ id: 's1', version: 'v1', ttlMs: 60_000 }]],
      [[{ kind: 'ip', subject: '10.0.0.4' }], [count('10.0.0.4', 1)], [cl('j4')]],
      [[], [], [], []],
      [[{ kind: 'ip', subject: '10.0.0.6' }], [count('10.0.0.6', 1, { shadow: true }), count('10.0.0.6', 2)]],
      [[{ kind: 'ip', subject: '10.0.0.6' }], [count('10.0.0.6', 1, { shadow: true }), count('10.0.0.6', 2)]],
      [[{ kind: 'ip', subject: '10.0.0.6' }], [count('10.0.0.5', 3, { increment: 3 })]],
    ];
    const sizes = spyCalls(a);
    const batched = await Promise.all(checks.map((c) => settle(a.evaluate(...c))));
    assert.equal(sizes.length, 1, 'the Checks shared one script call');
    const sequential = [];
    for (const c of checks) sequential.push(await settle(b.evaluate(...c)));
    assert.deepEqual(batched, sequential);
    assert.equal(batched[3]!.status, 'rejected', 'the Check over the wrong-type key failed');
    assert.equal(batched.filter((r) => r.status === 'rejected').length, 1, 'and only it');
    const dump = async (p: string) => {
      const out: Record<string, unknown> = {};
      for (const k of (await admin.keys(`${p}*`)).sort()) {
        const t = await admin.type(k);
        const v = t === 'zset' ? await admin.zcard(k) : t === 'string' ? await admin.get(k) : t;
        out[k.slice(p.length)] = [t, typeof v === 'string' && v.startsWith('{') ? norm(JSON.parse(v)) : v, (await admin.pttl(k)) > 0];
      }
      return out;
    };
    assert.deepEqual(await dump(pa), await dump(pb));
  });

  it('a batched script call never carries more than the documented 4096 KEYS+ARGV', async () => {
    const sizes = spyCalls(a);
    const small = (i: number): CounterOp[] => [0, 1, 2, 3].map((j) => count(`10.1.${i}.${j}`, 1000)); // 58 args per Check
    const big: CounterOp[] = Array.from({ length: 50 }, (_, j) => count(`10.2.0.${j}`, 1000)); // 702 args
    const all = [...Array.from({ length: 60 }, (_, i) => a.evaluate([], small(i))), a.evaluate([], big)];
    const results = await Promise.all(all);
    assert.equal(results.length, 61);
    assert.ok(sizes.length >= 1);
    for (const n of sizes) assert.ok(n <= 4096, `a call of ${n} KEYS+ARGV (MAX_BATCH_ARGS is 4096; "a batch is sent before it grows past either bound")`);
  });

  it('Checks queued for a turn are rejected, not left pending, when the store closes or is not connected yet', async () => {
    const p = testPrefix();
    const closing = storeWith({ keyPrefix: p });
    assert.equal(await closing.ready(5000), true);
    const pending = closing.evaluate([{ kind: 'ip', subject: '192.0.2.1' }], []);
    await closing.close();
    await assert.rejects(pending);
    const early = storeWith({ keyPrefix: p });
    try {
      await assert.rejects(early.evaluate([{ kind: 'ip', subject: '192.0.2.1' }], []));
    } finally {
      await early.close();
      await cleanup(p);
    }
  });

  it('under a stalled Redis the batch queue does not grow: each turn is sent, times out, and the store recovers', async () => {
    const own = new OwnRedis(await freePort());
    await own.start();
    const p = testPrefix();
    const store = storeWith({ keyPrefix: p, url: own.url, commandTimeoutMs: 100 });
    try {
      assert.equal(await store.ready(5000), true);
      await store.evaluate([], []);
      own.pause();
      const outcomes: Promise<PromiseSettledResult<unknown>[]>[] = [];
      for (let turn = 0; turn < 5; turn++) {
        outcomes.push(Promise.allSettled(Array.from({ length: 100 }, (_, i) => store.evaluate([{ kind: 'ip', subject: `192.0.2.${i}` }], [count(`192.0.2.${i}`, 1000)]))));
        await new Promise((r) => setImmediate(r));
        assert.equal((store as unknown as { batch: unknown[] }).batch.length, 0, 'every turn was sent');
      }
      for (const o of await Promise.all(outcomes)) for (const r of o) assert.equal(r.status, 'rejected');
      own.resume();
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        ok = await store.evaluate([{ kind: 'ip', subject: '192.0.2.1' }], []).then(() => true, () => false);
        if (!ok) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(ok, true, 'served again after the stall');
    } finally {
      await store.close();
      await own.kill();
    }
  });
});
