/**
 * Detection rules at the stage level (an identity stage made up for the test
 * sets the user and reports failures), against the real Redis and against
 * the memory store: both must behave the same.
 */
import assert from 'node:assert/strict';
import pino from 'pino';
import { Metrics } from '../../ext-authz/src/observability/metrics.js';
import { CheckContext } from '../../ext-authz/src/pipeline/context.js';
import { runChain } from '../../ext-authz/src/pipeline/run-chain.js';
import { deny, CONTINUE, type Decision } from '../../ext-authz/src/pipeline/decision.js';
import { toRequestView } from '../../ext-authz/src/pipeline/request-view.js';
import type { Stage } from '../../ext-authz/src/stages/stage.js';
import type { CompiledGateway, CompiledRoute } from '../../ext-authz/src/routing/route-table.js';
import { buildCheckRequest } from '../../ext-authz/src/proto/check-request.js';
import { fdsStage } from '../../ext-authz/src/fds/fds-stage.js';
import { fdsCapability } from '../../ext-authz/src/fds/capability.js';
import type { FdsEngine } from '../../ext-authz/src/fds/engine.js';
import { cleanup, config, eventually, redisFds, sleep, testPrefix } from './helpers.js';

const logger = pino({ level: 'silent' });

interface Harness {
  engine: FdsEngine;
  metrics: Metrics;
  check(o: { ip?: string; user?: string; fail?: boolean; route?: string }): Promise<{ decision: Decision; ctx: CheckContext }>;
  created(): Promise<number>;
  close(): Promise<void>;
}

function identity(user: string | undefined, fail: boolean): Stage {
  return {
    type: 'test-identity',
    run(ctx) {
      if (user === undefined) return CONTINUE;
      ctx.identity = { subject: user, kind: 'user', source: 'test', attributes: {}, groups: [] };
      if (!fail) return CONTINUE;
      ctx.report('auth_failure', 'user', user);
      return deny(401, 'bad_credentials');
    },
  };
}

async function harness(fds: Record<string, unknown>): Promise<Harness> {
  const metrics = new Metrics(false);
  const cfg = config(fds, [{ name: 'login', prefix: '/', stages: ['fds', 'allow'] }]);
  const prepared = await fdsCapability.prepare(cfg, { logger, metrics, previous: undefined, stageDefinition: () => undefined, dependency: () => undefined as never });
  prepared.commit?.();
  const engine = prepared.state.engine!;
  const stage = fdsStage.create(fdsStage.schema.parse({ type: 'fds' }), { config: cfg, logger, metrics, state: prepared.state, path: 'test' });
  const allow: Stage = { type: 'allow', run: () => ({ kind: 'allow' }) };
  return {
    engine,
    metrics,
    async check({ ip = '203.0.113.9', user, fail = false, route = 'login' }) {
      const view = toRequestView(buildCheckRequest({ method: 'POST', path: '/login', host: 'a', sourceAddress: ip, sourcePort: 1 }));
      const stages = [stage, identity(user, fail), allow];
      const r: CompiledRoute = { name: route, matches: () => true, stages, failureMode: 'closed' };
      const gw: CompiledGateway = { name: 'edge', kind: 'public', trustXfcc: false, challenge: 'Bearer', routes: [r], defaultRoute: r };
      const ctx = new CheckContext(view, gw, r, Date.now() + 2000, 't', performance.now());
      const decision = await runChain(ctx, stages, { logger, metrics });
      return { decision, ctx };
    },
    async created() {
      const m = await metrics.registry.getSingleMetric('passgate_fds_blocks_created_total')!.get();
      return m.values.reduce((a, v) => a + v.value, 0);
    },
    close: async () => {
      await prepared.close?.();
    },
  };
}

const reasonOf = (d: Decision) => (d.kind === 'deny' ? d.denial.reason : 'allowed');

for (const store of ['redis', 'memory'] as const) {
  describe(`fds rules (${store} store)`, function () {
    let prefix: string;
    let h: Harness | undefined;
    const make = async (extra: Record<string, unknown>) => {
      const base = store === 'redis' ? redisFds(prefix) : { store: 'memory' };
      const { commandTimeoutMs, ...rest } = extra;
      if (commandTimeoutMs !== undefined && store === 'redis') (base['redis'] as Record<string, unknown>)['commandTimeoutMs'] = commandTimeoutMs;
      h = await harness({ ...base, ...rest });
      assert.ok(await h.engine.store.ready(2000), 'store connects');
      return h;
    };
    beforeEach(() => {
      prefix = testPrefix();
    });
    afterEach(async () => {
      await h?.close();
      h = undefined;
      if (store === 'redis') await cleanup(prefix);
    });

    it('blocks a user for 15 min after 5 failed authentications within 60 s', async () => {
      const t = await make({ rules: [{ name: 'user-auth', events: ['auth_failure'], subject: 'user', threshold: 5, window: '60s', block: '15m' }] });
      for (let i = 0; i < 4; i++) assert.equal(reasonOf((await t.check({ user: 'alice', fail: true, ip: `192.0.2.${i}` })).decision), 'bad_credentials');
      assert.equal(reasonOf((await t.check({ user: 'alice' })).decision), 'allowed', '4 failures do not block');
      const fifth = await t.check({ user: 'alice', fail: true });
      assert.equal(reasonOf(fifth.decision), 'bad_credentials', 'the crossing failure keeps its own deny');
      const after = await t.check({ user: 'alice', ip: '198.51.100.77' });
      assert.equal(reasonOf(after.decision), 'blocked');
      assert.equal(after.decision.kind === 'deny' && after.decision.denial.status, 403);
      assert.equal(after.decision.kind === 'deny' && after.decision.denial.detail, undefined, 'no detail in the denial itself');
      const audit = after.ctx.audit['fds'] as { blocked: { kind: string; subject: string; rule: string } };
      assert.deepEqual([audit.blocked.kind, audit.blocked.subject, audit.blocked.rule], ['user', 'alice', 'user-auth']);
      const inspected = await t.engine.store.inspect('user', 'alice', []);
      assert.equal(inspected.block?.ttlMs, 15 * 60_000);
      assert.equal(reasonOf((await t.check({ user: 'bob' })).decision), 'allowed', 'other users are unaffected');
      assert.equal(await t.created(), 1);
    });

    it('blocks an IP for 1 h after 100 failures within 60 s, across users', async () => {
      const t = await make({ rules: [{ name: 'ip-fail', events: ['auth_failure'], subject: 'ip', threshold: 100, window: '60s', block: '1h' }] });
      // Users fail; the 401 counts as the IP's auth_failure (authFailureStatuses default [401]).
      for (let i = 0; i < 99; i++) await t.check({ user: `u${i}`, fail: true, ip: '203.0.113.50' });
      assert.equal(reasonOf((await t.check({ ip: '203.0.113.50' })).decision), 'allowed');
      await t.check({ user: 'last', fail: true, ip: '203.0.113.50' });
      const blocked = await t.check({ ip: '203.0.113.50' });
      assert.equal(reasonOf(blocked.decision), 'blocked');
      assert.equal((await t.engine.store.inspect('ip', '203.0.113.50', [])).block?.ttlMs, 3_600_000);
      assert.equal(reasonOf((await t.check({ ip: '203.0.113.51' })).decision), 'allowed');
    });

    it('counts only inside the sliding window (edge)', async () => {
      const t = await make({ rules: [{ name: 'w', events: ['auth_failure'], subject: 'user', threshold: 3, window: '1s', block: '1m' }] });
      await t.check({ user: 'carol', fail: true });
      await t.check({ user: 'carol', fail: true });
      await sleep(1150); // both earlier failures leave the 1 s window
      await t.check({ user: 'carol', fail: true });
      assert.equal(reasonOf((await t.check({ user: 'carol' })).decision), 'allowed', 'only 1 failure is inside the window');
      const counters = (await t.engine.store.inspect('user', 'carol', [{ name: 'w', windowMs: 1000 }])).counters;
      assert.equal(counters[0]?.count, 1);
      await t.check({ user: 'carol', fail: true });
      await t.check({ user: 'carol', fail: true });
      assert.equal(reasonOf((await t.check({ user: 'carol' })).decision), 'blocked', '3 inside the window block');
    });

    it('lets a block expire after its TTL and escalates the next one (recidive)', async () => {
      const t = await make({
        blockedCacheMs: 200,
        rules: [{ name: 'esc', events: ['auth_failure'], subject: 'user', threshold: 2, window: '10s', block: '1s', escalate: { ttls: ['30s', '1h'], memory: '1h' } }],
      });
      await t.check({ user: 'dave', fail: true });
      await t.check({ user: 'dave', fail: true });
      const first = await t.engine.store.inspect('user', 'dave', []);
      // The whole record, so the memory store, the Redis store and its Lua script cannot drift apart.
      const { createdAt, expiresAt, ...shape } = first.block!;
      assert.deepEqual(shape, { kind: 'user', subject: 'dave', reason: '2 × auth_failure within 10s (rule esc)', createdBy: 'rule:esc', ttlMs: 1000, rule: 'esc', level: 1 });
      assert.equal(expiresAt, createdAt + 1000);
      assert.equal(reasonOf((await t.check({ user: 'dave' })).decision), 'blocked');
      await eventually('the 1 s block to expire', async () => reasonOf((await t.check({ user: 'dave' })).decision) === 'allowed');
      await t.check({ user: 'dave', fail: true });
      await t.check({ user: 'dave', fail: true });
      const second = await t.engine.store.inspect('user', 'dave', []);
      assert.equal(second.block?.level, 2);
      assert.equal(second.block?.ttlMs, 30_000, 'second offense uses the first escalation TTL');
      assert.equal(second.offenses, 2);
      // An unblock ends the block but not the record of offenses: the 3rd and 4th blocks use the last TTL.
      for (const level of [3, 4]) {
        assert.equal(await t.engine.store.unblock('user', 'dave'), true);
        t.engine.forget('user', 'dave');
        await t.check({ user: 'dave', fail: true });
        await t.check({ user: 'dave', fail: true });
        const next = await t.engine.store.inspect('user', 'dave', []);
        assert.deepEqual([next.block?.level, next.block?.ttlMs], [level, 3_600_000]);
      }
    });

    it('keeps a user whose name has a slash apart from CIDR ranges', async () => {
      const t = await make({});
      const now = Date.now();
      await t.engine.store.block({ kind: 'user', subject: 'org/acme/alice', reason: 'r', createdBy: 'admin:test', createdAt: now, ttlMs: 60_000, expiresAt: now + 60_000 });
      assert.equal(reasonOf((await t.check({ user: 'org/acme/alice' })).decision), 'blocked');
      assert.equal((await t.engine.store.inspect('user', 'org/acme/alice', [])).block?.subject, 'org/acme/alice');
      assert.deepEqual((await t.engine.store.loadCidrs()).map((r) => r.subject), [], 'not stored as a range');
      assert.equal(await t.engine.store.unblock('user', 'org/acme/alice'), true);
      t.engine.forget('user', 'org/acme/alice');
      assert.equal(reasonOf((await t.check({ user: 'org/acme/alice' })).decision), 'allowed');
    });

    it('counts 200 concurrent failures exactly and creates exactly one block', async () => {
      // Generous timeout: this test is about exact counting under concurrency, not latency (a timed-out
      // script may still have run, and its block would then not be seen by this process).
      const t = await make({
        commandTimeoutMs: 3000,
        rules: [
          { name: 'exact', events: ['auth_failure'], subject: 'user', threshold: 200, window: '60s', block: '1m' },
          { name: 'tally', events: ['auth_failure'], subject: 'user', threshold: 100_000, window: '60s', block: '1m' },
        ],
      });
      await Promise.all(Array.from({ length: 199 }, (_, i) => t.check({ user: 'eve', fail: true, ip: `10.0.${i >> 8}.${i & 255}` })));
      const mid = await t.engine.store.inspect('user', 'eve', [
        { name: 'exact', windowMs: 60_000 },
        { name: 'tally', windowMs: 60_000 },
      ]);
      assert.equal(mid.block, undefined, '199 < threshold');
      assert.deepEqual(mid.counters.map((c) => c.count), [199, 199]);
      await Promise.all(Array.from({ length: 200 }, () => t.check({ user: 'eve', fail: true })));
      assert.equal(await t.created(), 1, 'exactly one block from the crossing update');
      assert.ok((await t.engine.store.inspect('user', 'eve', [])).block);
    });

    it('answers a cached blocked subject from memory', async () => {
      const t = await make({ blockedCacheMs: 60_000, rules: [{ name: 'c', events: ['auth_failure'], subject: 'user', threshold: 1, window: '10s', block: '1h' }] });
      await t.check({ user: 'frank', fail: true });
      const first = await t.check({ user: 'frank' });
      assert.equal(reasonOf(first.decision), 'blocked');
      const second = await t.check({ user: 'frank' });
      assert.equal(reasonOf(second.decision), 'blocked');
      assert.equal((second.ctx.audit['fds'] as { cached: boolean }).cached, true);
    });

    it('counts plain requests per route and blocks the flooding IP', async () => {
      const t = await make({ rules: [{ name: 'flood', events: ['request'], subject: 'ip', threshold: 5, window: '10s', block: '1m', routes: ['login'] }] });
      for (let i = 0; i < 4; i++) assert.equal(reasonOf((await t.check({ ip: '192.0.2.99' })).decision), 'allowed');
      assert.equal(reasonOf((await t.check({ ip: '192.0.2.99', route: 'other' })).decision), 'allowed', 'other routes are not counted');
      assert.equal(reasonOf((await t.check({ ip: '192.0.2.99' })).decision), 'blocked', 'the crossing request itself is blocked');
    });
  });
}
