/**
 * The outage cache (engine.ts `known`, consulted only while the store fails): what the store answers is taken
 * in by engine.evaluate itself, in reply order. A Check of the same batch that created a block after an
 * earlier Check was answered "not blocked" keeps that block; a subject the store answers as not blocked is
 * dropped. Real Redis, FdsEngine over a RedisStore.
 */
import assert from 'node:assert/strict';
import pino from 'pino';
import { Registry } from 'prom-client';
import { FdsEngine, fdsMetrics } from '../../ext-authz/src/fds/engine.js';
import { fdsConfigSchema } from '../../ext-authz/src/fds/config.js';
import type { CounterOp } from '../../ext-authz/src/fds/store/store.js';
import { REDIS_URL, cleanup, testPrefix } from './helpers.js';

const S = { kind: 'ip' as const, subject: '198.51.100.77' };
const count: CounterOp = { rule: 'r', kind: 'ip', subject: S.subject, increment: 1, windowMs: 60_000, threshold: 2, ttls: [3_600_000], memoryMs: 600_000, reason: 'flood (rule r)' };

describe('fds: the outage cache follows the store\'s answers in reply order', () => {
  const prefix = testPrefix();
  let engine: FdsEngine;
  before(async () => {
    const settings = fdsConfigSchema.parse({ store: 'redis', redis: { url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 2000 } })!;
    engine = new FdsEngine(settings, pino({ level: 'silent' }), fdsMetrics(new Registry()));
    assert.equal(await engine.store.ready(5000), true, 'Redis at 127.0.0.1:6379 answers');
  });
  after(async () => {
    await engine?.close();
    await cleanup(prefix);
  });

  it('two Checks in one batch: the second creates a block, the first\'s older "not blocked" does not drop it', async () => {
    // Same turn: one script call; the first runs before the second crosses the threshold.
    const [a, b] = await Promise.all([engine.evaluate([S], [count], 5_000), engine.evaluate([S], [count], 5_000)]);
    assert.equal(a.blocked, undefined);
    assert.deepEqual(b.created.map((c) => c.subject), [S.subject], 'the second Check crossed the threshold');
    assert.equal(engine.staleBlock([S])?.subject, S.subject, 'the block is kept for an outage');
  });

  it('a subject the store answers as not blocked is dropped from the outage cache', async () => {
    const other = { kind: 'ip' as const, subject: '198.51.100.78' };
    engine.remember({ kind: 'ip', subject: other.subject, reason: 'r', createdBy: 'admin:t', createdAt: Date.now(), ttlMs: 60_000, expiresAt: Date.now() + 60_000 });
    assert.ok(engine.staleBlock([other]));
    const r = await engine.evaluate([other], [], 5_000);
    assert.equal(r.blocked, undefined, 'Redis has no block for it');
    assert.equal(engine.staleBlock([other]), undefined);
  });
});
