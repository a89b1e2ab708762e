/**
 * FDS key layouts and the split of a Check's ops by slot (no Redis needed for most), then the per-subject
 * layout on a single node (a deployment preparing a move to a cluster).
 */
import assert from 'node:assert/strict';
import calculateSlot from 'cluster-key-slot';
import pino from 'pino';
import { fdsConfigSchema } from '../../ext-authz/src/fds/config.js';
import { KeyLayout, keyLayoutOf } from '../../ext-authz/src/fds/store/keys.js';
import { perSubjectName } from '../../ext-authz/src/fds/store/migrate-layout.js';
import { RedisStore } from '../../ext-authz/src/fds/store/redis-store.js';
import { checkOp, claimOp, countOp, encodeCall, groupBySlot, mergeReplies, replayFollowUps, type ScriptOp } from '../../ext-authz/src/fds/store/script-ops.js';
import type { CounterOp } from '../../ext-authz/src/fds/store/store.js';
import { Redis } from 'ioredis';
import { REDIS_URL, cleanup, eventually, testPrefix } from './helpers.js';

const OP: CounterOp = { rule: 'r', kind: 'user', subject: 'alice', increment: 1, windowMs: 1000, threshold: 5, ttls: [60_000], memoryMs: 1000, reason: 'x' };

function rec(subject: string): string {
  return JSON.stringify({ kind: 'user', subject, reason: 'r', createdBy: 'admin:t', createdAt: 1, ttlMs: null, expiresAt: null });
}

describe('fds key layouts and per-slot ops', () => {
  it('keeps the names of earlier versions in the single-tag layout', () => {
    const k = new KeyLayout('p:', 'fds', 'single-tag');
    assert.equal(k.block('ip', '203.0.113.7'), 'p:{fds}:b:ip:203.0.113.7');
    assert.equal(k.counter('r', 'user', 'alice'), 'p:{fds}:c:r:user:alice');
    assert.equal(k.offense('user', 'alice'), 'p:{fds}:o:user:alice');
    assert.equal(k.claim('dpop:edge:t:j'), 'p:{fds}:j:dpop:edge:t:j');
    assert.equal(k.key('s:abc', 'w'), 'p:{fds}:s:abc:w');
    assert.equal(k.cidr, 'p:{fds}:cidr');
    assert.equal(k.channel, 'p:{fds}:events');
  });

  it('gives each subject its own tag in the per-subject layout; shared keys stay under the one tag', () => {
    const k = new KeyLayout('p:', 'fds', 'per-subject');
    assert.equal(k.block('user', 'alice'), 'p:{user:alice}:b');
    assert.equal(k.counter('r', 'user', 'alice'), 'p:{user:alice}:c:r');
    assert.equal(k.offense('user', 'alice'), 'p:{user:alice}:o');
    assert.equal(k.claim('dpop:edge:t:j'), 'p:{j:dpop:edge:t:j}:j');
    assert.equal(k.key('s:abc', 'w'), 'p:{s:abc}:w');
    assert.equal(k.cidr, 'p:{fds}:cidr');
    assert.equal(k.channel, 'p:{fds}:events');
    // A brace in a subject cannot end the tag early (nor make two subjects share a key).
    assert.equal(k.block('user', 'a}b'), 'p:{user:a%7Db}:b');
    assert.notEqual(k.block('user', 'a%7Db'), k.block('user', 'a}b'));
    // Long subjects are hashed as before, inside the tag.
    assert.match(k.block('user', 'x'.repeat(300)), /^p:\{user:sha256:[0-9a-f]{64}\}:b$/);
    assert.equal(k.blockPattern(), 'p:{*}:b');
    assert.equal(k.blockPattern('ip'), 'p:{ip:*}:b');
  });

  it('defaults to per-subject on a cluster and single-tag elsewhere', () => {
    assert.equal(keyLayoutOf({ mode: 'cluster' }), 'per-subject');
    assert.equal(keyLayoutOf({ mode: 'single' }), 'single-tag');
    assert.equal(keyLayoutOf({ mode: 'sentinel' }), 'single-tag');
    assert.equal(keyLayoutOf({ mode: 'single', keyLayout: 'per-subject' }), 'per-subject');
    const parsed = fdsConfigSchema.safeParse({ redis: { mode: 'cluster', nodes: [{ host: 'h', port: 1 }], keyLayout: 'sharded' } });
    assert.equal(parsed.success, false);
    assert.deepEqual(parsed.error!.issues[0]!.path, ['redis', 'keyLayout']);
  });

  it('puts every key of an op in one slot, and groups a Check by slot in order', () => {
    const k = new KeyLayout('p:', 'fds', 'per-subject');
    const ops: ScriptOp[] = [];
    for (let i = 0; i < 50; i++) ops.push(checkOp(k, 'user', `u${i}`, i), countOp(k, { ...OP, subject: `u${i}` }, String(i)));
    ops.push(claimOp(k, { key: 'dpop:x', expiresAt: 1, minTtlMs: 1 }));
    for (const op of ops) assert.equal(new Set(op.keys.map((x) => calculateSlot(x))).size, 1, op.keys.join(' '));
    const groups = groupBySlot(ops);
    assert.ok(groups.length > 40);
    assert.equal(groups.flat().length, ops.length);
    for (const g of groups) {
      assert.equal(new Set(g.map((op) => calculateSlot(op.keys[0]!))).size, 1);
      for (let i = 1; i < g.length; i++) assert.ok(ops.indexOf(g[i - 1]!) < ops.indexOf(g[i]!), 'order kept within a group');
    }
    // One group in the single-tag layout.
    const one = new KeyLayout('p:', 'fds', 'single-tag');
    assert.equal(groupBySlot([checkOp(one, 'user', 'a', 0), checkOp(one, 'ip', '192.0.2.1', 1), claimOp(one, { key: 'j', expiresAt: 1, minTtlMs: 1 })]).length, 1);
    const { keys, args } = encodeCall('n', [checkOp(one, 'user', 'a', 0), countOp(one, OP, '0')]);
    assert.equal(keys.length, 4);
    assert.deepEqual(args.slice(0, 3), [1, 'n', 'cn'], 'one Check: the count of Checks, its nonce, its shape (one letter per op)');
    assert.equal(args.length, 3 + 3, 'a check has no values, a count three');
  });

  it('merges replies: the first blocked subject in Check order, any replay, every block created', () => {
    const k = new KeyLayout('p:', 'fds', 'per-subject');
    const a = checkOp(k, 'user', 'a', 0);
    const b = checkOp(k, 'user', 'b', 1);
    const merged = mergeReplies([
      { ops: [b], reply: ['1', rec('b'), '', '', rec('made')] },
      { ops: [a], reply: ['1', rec('a'), '1', ''] },
    ]);
    assert.equal(merged.blocked?.subject, 'a');
    assert.equal(merged.replayed, true);
    assert.deepEqual(merged.created.map((r) => r.subject), ['made']);
    assert.equal(mergeReplies([{ ops: [a], reply: ['', '', '', ''] }]).blocked, undefined);
  });

  it('plans the replay follow-up only for calls that did not see the replay', () => {
    const k = new KeyLayout('p:', 'fds', 'per-subject');
    const fresh = countOp(k, { ...OP, when: 'fresh' }, '0');
    const replay = countOp(k, { ...OP, when: 'replay' }, '1');
    const always = countOp(k, { ...OP, subject: 'bob' }, '2');
    const plan = replayFollowUps([
      { ops: [fresh, replay, always], reply: ['', '', '', ''] },
      { ops: [claimOp(k, { key: 'j', expiresAt: 1, minTtlMs: 1 }), countOp(k, { ...OP, subject: 'c', when: 'fresh' }, '3')], reply: ['', '', '1', ''] },
    ]);
    assert.equal(plan.length, 1);
    assert.deepEqual(plan[0]!.map((o) => o.type), ['retract', 'count']);
    assert.deepEqual(plan[0]![0]!.args, ['0', 1]);
    assert.equal(plan[0]![1]!.args[1], '1 - 1 0', 'the replay count applies unconditionally ("-"), with its own member tag (1)');
    assert.equal(replay.args[1], '1 r 1 0', 'the op it follows up ran only with a replay');
  });
});

describe('fds key layout upgrade (single-tag to per-subject)', () => {
  const prefix = testPrefix();
  let store: RedisStore | undefined;
  after(async () => {
    await store?.close();
    await cleanup(prefix);
  });

  it('names the per-subject key of every moved old key', () => {
    const k = new KeyLayout('p:', 'fds', 'per-subject');
    assert.equal(perSubjectName(k, 'p:{fds}:b:ip:2001:db8::1'), 'p:{ip:2001:db8::1}:b');
    assert.equal(perSubjectName(k, 'p:{fds}:o:user:alice'), 'p:{user:alice}:o');
    assert.equal(perSubjectName(k, 'p:{fds}:c:login-fail:ip:2001:db8::1'), 'p:{ip:2001:db8::1}:c:login-fail');
    assert.equal(perSubjectName(k, 'p:{fds}:j:dpop:edge:t:j'), 'p:{j:dpop:edge:t:j}:j');
    assert.equal(perSubjectName(k, 'p:{fds}:cidr'), undefined);
    assert.equal(perSubjectName(k, 'p:{fds}:b:'), undefined);
  });

  it('moves blocks, offenses, counters and claims with their TTL at start, and keeps newer keys', async () => {
    const r = new Redis(REDIS_URL);
    try {
      await r.set(`${prefix}{fds}:b:user:dave`, rec('dave'), 'PX', 600_000);
      await r.set(`${prefix}{fds}:b:user:erin`, rec('old-erin'));
      await r.set(`${prefix}{user:erin}:b`, rec('erin'));
      await r.set(`${prefix}{fds}:o:user:dave`, '2', 'PX', 600_000);
      await r.zadd(`${prefix}{fds}:c:r:user:dave`, Date.now(), 'm1');
      await r.set(`${prefix}{fds}:j:dpop:edge:t:9`, '1', 'PX', 600_000);
      await r.hset(`${prefix}{fds}:cidr`, '10.0.0.0/8', rec('10.0.0.0/8'));
      const settings = fdsConfigSchema.parse({ store: 'redis', redis: { mode: 'single', url: REDIS_URL, keyPrefix: prefix, keyLayout: 'per-subject', commandTimeoutMs: 1000 } })!;
      store = new RedisStore(settings.redis!, pino({ level: 'silent' }), { onError: () => undefined });
      await eventually('marker set', async () => (await r.get(`${prefix}{fds}:layout`)) === 'per-subject');
      assert.equal((await store.evaluate([{ kind: 'user', subject: 'dave' }], [])).blocked?.subject, 'dave');
      assert.ok((await r.pttl(`${prefix}{user:dave}:b`)) > 500_000);
      assert.equal((await store.inspect('user', 'dave', [{ name: 'r', windowMs: 60_000 }])).offenses, 2);
      assert.equal(await r.zcard(`${prefix}{user:dave}:c:r`), 1);
      assert.equal((await store.evaluate([], [], [{ key: 'dpop:edge:t:9', expiresAt: Date.now() + 1000, minTtlMs: 1000 }])).replayed, true);
      assert.equal((await store.evaluate([{ kind: 'user', subject: 'erin' }], [])).blocked?.subject, 'erin', 'the newer key kept');
      assert.equal(await r.exists(`${prefix}{fds}:b:user:dave`, `${prefix}{fds}:b:user:erin`, `${prefix}{fds}:o:user:dave`, `${prefix}{fds}:j:dpop:edge:t:9`), 0);
      assert.equal((await store.loadCidrs()).length, 1, 'CIDR ranges stay under the shared tag');
    } finally {
      r.disconnect();
    }
  });
});

describe('fds per-subject layout on a single node', () => {
  const prefix = testPrefix();
  let store: RedisStore;

  before(() => {
    const settings = fdsConfigSchema.parse({ store: 'redis', redis: { mode: 'single', url: REDIS_URL, keyPrefix: prefix, keyLayout: 'per-subject', commandTimeoutMs: 1000 } })!;
    store = new RedisStore(settings.redis!, pino({ level: 'silent' }), { onError: () => undefined });
  });
  after(async () => {
    await store.close();
    await cleanup(prefix);
  });

  it('counts, blocks, claims, lists and unblocks in one script call', async () => {
    assert.ok(await store.ready(5000));
    const op = { ...OP, subject: 'carol', threshold: 2 };
    assert.equal((await store.evaluate([{ kind: 'user', subject: 'carol' }], [op])).created.length, 0);
    const second = await store.evaluate([{ kind: 'user', subject: 'carol' }], [op]);
    assert.equal(second.created[0]?.subject, 'carol');
    assert.equal((await store.evaluate([{ kind: 'user', subject: 'carol' }], [])).blocked?.subject, 'carol');
    const claim = { key: 'dpop:edge:t:1', expiresAt: Date.now() + 10_000, minTtlMs: 1000 };
    assert.equal((await store.evaluate([], [], [claim])).replayed, undefined);
    assert.equal((await store.evaluate([], [], [claim])).replayed, true);
    const page = await store.list(null, 100, 'user');
    assert.deepEqual(page.items.map((r) => r.subject), ['carol']);
    assert.equal(await store.unblock('user', 'carol'), true);
    assert.equal((await store.evaluate([{ kind: 'user', subject: 'carol' }], [])).blocked, undefined);
    assert.equal((await store.inspect('user', 'carol', [{ name: 'r', windowMs: 1000 }])).offenses, 1);
  });
});
