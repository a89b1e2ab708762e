/**
 * Review of the packed FDS script arguments (script-ops.ts `countOp`/`encodeBatch`/`argCount`, lua/evaluate.ts,
 * keys.ts, redis-store.ts batching): whatever a client or the config can put in a subject, rule name or
 * reason must reach Redis and come back unchanged under the subject's own keys, numbers must mean in Lua what
 * they mean in JS, shadow ops must write nothing that blocks, and a batch must keep to its bound and answer
 * each Check with its own reply. Every case drives a real RedisStore against the real Redis.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import type { RedisStore } from '../../ext-authz/src/fds/store/redis-store.js';
import type { BlockRecord, Claim, CounterOp, SubjectRef } from '../../ext-authz/src/fds/store/store.js';
import { fdsConfigSchema } from '../../ext-authz/src/fds/config.js';
import { addOps, compileRules } from '../../ext-authz/src/fds/rules.js';
import { argCount, checkOp, claimOp, countOp, watchOp } from '../../ext-authz/src/fds/store/script-ops.js';
import { REDIS_URL, cleanup, storeWith } from './helpers.js';

const PREFIX = `review:packed:${process.pid}:`;

function count(subject: string, threshold: number, extra: Partial<CounterOp> = {}): CounterOp {
  return { rule: 'r', kind: 'user', subject, increment: 1, windowMs: 60_000, threshold, ttls: [60_000], memoryMs: 600_000, reason: 'x', ...extra };
}

/** Records the KEYS+ARGV size of every batched script call `store` sends. */
function spyCalls(store: RedisStore): number[] {
  const client = (store as unknown as { client: { fdsEvaluate: (...a: unknown[]) => Promise<unknown> } }).client;
  const sizes: number[] = [];
  const orig = client.fdsEvaluate.bind(client);
  client.fdsEvaluate = (...a: unknown[]) => {
    sizes.push(a.length - 1); // minus numkeys
    return orig(...a);
  };
  return sizes;
}

const checks = (subjects: readonly string[]): SubjectRef[] => subjects.map((subject) => ({ kind: 'user', subject }));

describe('fds packed script arguments review', function () {
  this.timeout(30_000);
  const layouts = ['single-tag', 'per-subject'] as const;
  const stores: Record<string, RedisStore> = {};
  let admin: Redis;
  let n = 0;
  /** A fresh prefix per test and layout, so keys of one case never meet another's. */
  const fresh = (layout: (typeof layouts)[number]) => {
    const p = `${PREFIX}${n++}:`;
    const s = storeWith({ keyPrefix: p, keyLayout: layout, autoPipelining: false });
    stores[p] = s;
    return s;
  };
  before(async () => {
    admin = new Redis(REDIS_URL);
    assert.equal(await admin.ping(), 'PONG', 'Redis at 127.0.0.1:6379 answers');
  });
  after(async () => {
    for (const s of Object.values(stores)) await s.close();
    admin?.disconnect();
    await cleanup(PREFIX);
  });

  for (const layout of layouts) {
    it(`${layout}: awkward subjects (space, '-', newline, NUL, quotes, non-ASCII, empty, 20k chars) are counted, blocked and answered as themselves`, async () => {
      const store = fresh(layout);
      assert.equal(await store.ready(5000), true);
      const subjects = ['a b', '-', ' ', '- - 1', 'line\nbreak\r\n', 'nul\u0000x', 'tab\tx', '"}{\\', '{fds}', 'ü用户😀', '\u2028\u2029', '', 'x'.repeat(20_000), '1e3', '0x10'];
      for (const s of subjects) {
        const r = await store.evaluate(checks([s]), [count(s, 1)]);
        assert.equal(r.created.length, 1, `subject ${JSON.stringify(s.slice(0, 40))} blocked`);
        assert.equal(r.created[0]!.subject, s);
        const stored = JSON.parse((await admin.get(store.keys.block('user', s)))!) as BlockRecord;
        assert.equal(stored.subject, s, 'Redis holds the record under the subject\'s own key');
        assert.equal(stored.rule, 'r');
      }
      // Each is answered as blocked with its own record; a neighbour spelling is not.
      for (const s of subjects) assert.equal((await store.evaluate(checks([s]), [])).blocked?.subject, s);
      for (const s of ['a', 'b', 'ab', '--', 'line', 'nul', 'x'.repeat(19_999), '1000', '16'])
        assert.equal((await store.evaluate(checks([s]), [])).blocked, undefined, `${JSON.stringify(s.slice(0, 40))} is another subject`);
    });
  }

  it('subjects that differ only in unpaired UTF-16 surrogates (a JWT sub may carry them) keep separate keys', async () => {
    const store = fresh('single-tag');
    assert.equal(await store.ready(5000), true);
    const r = await store.evaluate(checks(['\uD800']), [count('\uD800', 1)]);
    assert.equal(r.created[0]?.subject, '\uD800', 'the record keeps the subject (JSON escapes it)');
    for (const other of ['\uDC00', '\uDBFF', '\uFFFD']) {
      const res = await store.evaluate(checks([other]), []);
      assert.equal(res.blocked, undefined, `${JSON.stringify(other)} is not the blocked "\\ud800" (got block for ${JSON.stringify(res.blocked?.subject)})`);
    }
  });

  for (const layout of layouts) {
    it(`${layout}: a short subject spelling "sha256:<hash of a long subject>" does not share the long subject's keys`, async () => {
      const store = fresh(layout);
      assert.equal(await store.ready(5000), true);
      const long = `victim-${'v'.repeat(250)}`;
      const forged = `sha256:${createHash('sha256').update(long).digest('hex')}`;
      assert.equal((await store.evaluate(checks([forged]), [count(forged, 1)])).created[0]?.subject, forged);
      const res = await store.evaluate(checks([long]), []);
      assert.equal(res.blocked, undefined, `the ${long.length}-char subject is blocked by the block of ${JSON.stringify(forged)}`);
    });
  }

  it('rule names and reasons the config accepts pack and round-trip; names that could break the packing are refused at startup', async () => {
    const bad = ['a b', 'a\tb', '', 'x'.repeat(65), 'a:b', 'a,b', 'ü', 'a"b', 'a\nb'];
    for (const name of bad) {
      const parsed = fdsConfigSchema.safeParse({ rules: [{ name, events: ['auth_failure'], subject: 'user', threshold: 1, window: '1m', block: '1m' }] });
      assert.equal(parsed.success, false, `rule name ${JSON.stringify(name)} refused`);
      assert.deepEqual(parsed.error!.issues[0]!.path, ['rules', 0, 'name']);
      assert.match(parsed.error!.issues[0]!.message, /letters, digits/);
    }
    const reason = `"quoted" \\ back} {brace\nnew line ü😀 '-' 1e3 ${'r'.repeat(150)}`.slice(0, 200);
    const names = ['-', '.', '_', '1e3', '0x10', 'inf', 'nan', 'a-b.c_9', 'R'.repeat(64)];
    const cfg = fdsConfigSchema.parse({
      rules: names.map((name) => ({ name, events: ['auth_failure'], subject: 'user', threshold: 1, window: '1m', block: '90s', reason })),
    })!;
    const rules = compileRules(cfg.rules);
    const store = fresh('single-tag');
    assert.equal(await store.ready(5000), true);
    const ops: CounterOp[] = [];
    addOps(ops, rules, 'route', 'auth_failure', 'user', 'alice');
    assert.equal(ops.length, names.length);
    // One op per Check: the first block stops later counts of the same subject in a Check.
    for (const op of ops) {
      const r = await store.evaluate([], [op]);
      assert.equal(r.created.length, 1, `rule ${op.rule} blocked`);
      const c = r.created[0]!;
      assert.equal(c.rule, op.rule, 'rule round-trips as a string (not a number)');
      assert.equal(c.createdBy, `rule:${op.rule}`);
      assert.equal(c.reason, reason);
      assert.equal(c.ttlMs, 90_000);
      assert.equal(c.level, 1);
      assert.deepEqual(JSON.parse((await admin.get(store.keys.block('user', 'alice')))!), c, 'Redis holds exactly the answered record');
      await store.unblock('user', 'alice');
      await admin.del(store.keys.offense('user', 'alice')); // the offense level is the subject's, across rules
    }
  });

  it('numbers mean the same in Lua: config durations become integers, a 365-day escalation TTL and offense memory are exact', async () => {
    const cfg = fdsConfigSchema.parse({
      rules: [{ name: 'big', events: ['auth_failure'], subject: 'user', threshold: 2, window: '1.5s', block: 1000.4, escalate: { ttls: ['365d'], memory: '0.5d' } }],
    })!;
    const rule = compileRules(cfg.rules).all[0]!;
    assert.deepEqual([rule.windowMs, rule.ttls, rule.memoryMs], [1500, [1000, 31_536_000_000], 43_200_000]);
    const store = fresh('single-tag');
    assert.equal(await store.ready(5000), true);
    const ops = (): CounterOp[] => {
      const o: CounterOp[] = [];
      addOps(o, compileRules(cfg.rules), 'route', 'auth_failure', 'user', 'bob');
      addOps(o, compileRules(cfg.rules), 'route', 'auth_failure', 'user', 'bob'); // increment 2 = threshold
      return o;
    };
    const first = await store.evaluate([], ops());
    assert.equal(first.created[0]?.ttlMs, 1000);
    await store.unblock('user', 'bob');
    const second = await store.evaluate([], ops());
    const c = second.created[0]!;
    assert.equal(c.level, 2);
    assert.equal(c.ttlMs, 31_536_000_000);
    assert.equal(c.expiresAt! - c.createdAt, 31_536_000_000, 'expiresAt is exact (no %.14g rounding)');
    const pttl = await admin.pttl(store.keys.block('user', 'bob'));
    assert.ok(pttl > 31_536_000_000 - 60_000 && pttl <= 31_536_000_000, `block PTTL ${pttl}`);
    const opttl = await admin.pttl(store.keys.offense('user', 'bob'));
    assert.ok(opttl > 43_200_000 - 60_000 && opttl <= 43_200_000, `offense PTTL ${opttl}`);
    // The window is 1500 ms, not 1 or 15: a lone event is gone from the log after it.
    await store.unblock('user', 'bob');
    await store.evaluate([], [ops()[0]!].map((o) => ({ ...o, increment: 1 })));
    const cpttl = await admin.pttl(store.keys.counter('big', 'user', 'bob'));
    assert.ok(cpttl > 1000 && cpttl <= 1500, `counter PTTL ${cpttl}`);
  });

  it('claim values: fractions round up, a past expiry gets the minimum TTL', async () => {
    const store = fresh('single-tag');
    assert.equal(await store.ready(5000), true);
    const now = Date.now();
    const cl: Claim[] = [
      { key: 'frac', expiresAt: now + 60_000.2, minTtlMs: 1000 },
      { key: 'past', expiresAt: now - 10_000_000, minTtlMs: 1500.3 },
    ];
    assert.equal((await store.evaluate([], [], cl)).replayed ?? false, false);
    const frac = await admin.pttl(store.keys.claim('frac'));
    const past = await admin.pttl(store.keys.claim('past'));
    assert.ok(frac > 55_000 && frac <= 60_001, `frac PTTL ${frac}`);
    assert.ok(past > 1000 && past <= 1501, `past PTTL ${past}`);
    assert.equal((await store.evaluate([], [], [cl[1]!])).replayed, true);
  });

  for (const layout of layouts) {
    it(`${layout}: a shadow op crossing its threshold writes no block, no offense, no real counter, and is reported as shadow`, async () => {
      const store = fresh(layout);
      assert.equal(await store.ready(5000), true);
      const r = await store.evaluate(checks(['sam']), [count('sam', 2, { shadow: true, increment: 3, rule: 'sh' })]);
      assert.equal(r.created.length, 0);
      assert.equal(r.wouldBlock?.length, 1);
      const w = r.wouldBlock![0] as BlockRecord & { shadow?: boolean };
      assert.deepEqual([w.subject, w.rule, w.level, w.ttlMs, w.shadow], ['sam', 'sh', 0, 0, true]);
      const ks = store.keys;
      assert.equal(await admin.exists(ks.block('user', 'sam'), ks.offense('user', 'sam'), ks.counter('sh', 'user', 'sam'), ks.shadowCounter('sh', 'user', 'sam')), 0, 'nothing stored');
      // Below its threshold a shadow op counts only in its own key, and a real op of the same rule starts from zero.
      await store.evaluate([], [count('sam', 5, { shadow: true, rule: 'sh' })]);
      assert.equal(await admin.zcard(ks.shadowCounter('sh', 'user', 'sam')), 1);
      const real = await store.evaluate([], [count('sam', 2, { rule: 'sh' })]);
      assert.equal(real.created.length, 0, 'the shadow count did not fill the real window');
      assert.equal((await store.evaluate(checks(['sam']), [])).blocked, undefined);
    });
  }

  it('argCount is exactly what each op type adds to the call (nonce, shape, keys, values)', async () => {
    const store = fresh('single-tag');
    assert.equal(await store.ready(5000), true);
    await store.putSession('s1', { version: 'v1', sealed: 'x', absoluteExpiresAt: Date.now() + 60_000 }, 60_000, []);
    const sizes = spyCalls(store);
    const cl = (key: string): Claim => ({ key, expiresAt: Date.now() + 60_000, minTtlMs: 1000 });
    // 2 + checks 3×1 + claims 2×3 + counts 2×6 + watch 1×3 = 26 per Check, plus the call's Check count.
    const r = await store.evaluate(checks(['a', 'b', 'c']), [count('a', 100), count('b', 100)], [cl('x'), cl('y')], [{ id: 's1', version: 'v1', ttlMs: 60_000 }]);
    assert.deepEqual(r.watched, ['live']);
    assert.deepEqual(sizes, [1 + 26]);
    const k = store.keys;
    const built = [checkOp(k, 'user', 'a', 0), claimOp(k, cl('x')), countOp(k, count('a', 100), '0'), watchOp(k, { id: 's1', version: 'v1', ttlMs: 1 }, 0)];
    assert.equal(argCount(built), 2 + 1 + 3 + 6 + 3, 'the batch bound counts what the call carries');
    await Promise.all([store.evaluate(checks(['a']), []), store.evaluate([], [count('z', 100)])]);
    assert.deepEqual(sizes.slice(1), [1 + 3 + 8], 'two Checks in one call: 1 + (2+1) + (2+6)');
  });

  it('a batch never carries more than 4,096 KEYS+ARGV, counting the call\'s own Check-count argument', async () => {
    const store = fresh('single-tag');
    assert.equal(await store.ready(5000), true);
    const sizes = spyCalls(store);
    // Two Checks of 2,048 arguments each (nonce, shape, 2,046 block checks): together exactly the bound.
    const subjects = (c: number) => Array.from({ length: 2046 }, (_, i) => `b${c}-${i}`);
    await Promise.all([store.evaluate(checks(subjects(0)), []), store.evaluate(checks(subjects(1)), [])]);
    // 64 Checks of 64 arguments each: both bounds reached together.
    await Promise.all(Array.from({ length: 64 }, (_, c) => store.evaluate(checks(Array.from({ length: 62 }, (_, i) => `s${c}-${i}`)), [])));
    for (const n of sizes) assert.ok(n <= 4096, `a call of ${n} KEYS+ARGV (calls: ${sizes.join(', ')})`);
  });

  it('replies go back to their own Check across bound splits, a lone oversized Check and a failing Check', async () => {
    const store = fresh('single-tag');
    assert.equal(await store.ready(5000), true);
    const N = 60;
    const now = Date.now();
    for (let c = 0; c < N; c++) await store.block({ kind: 'user', subject: `mine-${c}`, reason: `r${c}`, createdBy: 'admin:t', createdAt: now, ttlMs: 60_000, expiresAt: now + 60_000 });
    await admin.set(store.keys.counter('r', 'user', 'broken-17'), 'not a zset');
    const sizes = spyCalls(store);
    const plan = Array.from({ length: N }, (_, c) => {
      const filler = Array.from({ length: c === 30 ? 5000 : (c * 37) % 400 }, (_, i) => `free-${c}-${i}`);
      const pos = filler.length === 0 ? 0 : c % filler.length;
      const list = [...filler.slice(0, pos), `mine-${c}`, ...filler.slice(pos)];
      const ops = [count(`new-${c}`, 1), ...(c === 17 ? [count('broken-17', 100)] : [])];
      return store.evaluate(checks(list), ops, [{ key: `claim-${c % 10}`, expiresAt: now + 60_000, minTtlMs: 1000 }]);
    });
    const out = await Promise.allSettled(plan);
    assert.ok(sizes.length >= 3, `split into ${sizes.length} calls`);
    for (let c = 0; c < N; c++) {
      const o = out[c]!;
      if (c === 17) {
        assert.equal(o.status, 'rejected');
        assert.match(String((o as PromiseRejectedResult).reason), /WRONGTYPE/);
        continue;
      }
      assert.equal(o.status, 'fulfilled', `Check ${c}: ${String((o as PromiseRejectedResult).reason)}`);
      const r = (o as PromiseFulfilledResult<Awaited<(typeof plan)[number]>>).value;
      assert.equal(r.blocked?.subject, `mine-${c}`, `Check ${c} answered with its own block`);
      assert.equal(r.blocked?.reason, `r${c}`);
      assert.deepEqual(r.created.map((x) => x.subject), [`new-${c}`], `Check ${c} created its own block`);
    }
    // Blocked Checks burn no claim, so none of the claims exists.
    assert.equal(await admin.exists(...Array.from({ length: 10 }, (_, i) => store.keys.claim(`claim-${i}`))), 0);
  });
});
