/**
 * The http PassportSource against a real auth service on loopback, broken
 * on purpose: down, slow, 500, garbage, over-limit answers, unknown users;
 * plus single-flight, the circuit breaker and stale-if-error. Cache
 * freshness runs on a fake clock so no test waits for a TTL.
 */
import assert from 'node:assert/strict';
import { HttpSource } from '../../ext-authz/src/passport/sources/http-source.js';
import type { LookupResult } from '../../ext-authz/src/passport/sources/cached-http.js';
import type { SourceFacts } from '../../ext-authz/src/passport/sources/source.js';
import { passportStage } from '../../ext-authz/src/passport/passport-stage.js';
import { freePort } from '../../bench/common/process.js';
import { AuthService, configWith, ctxFor, factory, identity, passportSection } from './helpers.js';

const limits = configWith(passportSection()).passport!.limits;

function source(url: string, extra: Record<string, unknown> = {}, now?: () => number) {
  // Generous timeouts: a loaded CI machine must not turn a fault test into a timeout test.
  const cfg = configWith(passportSection({ source: { type: 'http', url, timeoutMs: 5_000, ...extra } })).passport!.source;
  assert.equal(cfg.type, 'http');
  const states: string[] = [];
  const s = new HttpSource(cfg as never, limits, { onBreakerChange: (st) => states.push(st), ...(now ? { now } : {}) });
  return { s, states };
}

async function look(s: HttpSource, subject: string, remainingMs = 10_000): Promise<LookupResult<SourceFacts>> {
  return await s.lookup(identity(subject), remainingMs);
}

function errorOf(r: LookupResult<SourceFacts>): { reason: string; detail: string } {
  assert.equal(r.kind, 'error', JSON.stringify(r));
  return r as { reason: string; detail: string };
}

describe('http passport source', () => {
  let auth: AuthService;
  beforeEach(async () => {
    auth = await new AuthService({ bob: { user: { id: 'u-bob', roles: ['r'] } } }).start();
  });
  afterEach(() => auth.close());

  it('found, then cached; 404 is not_found and cached negatively', async () => {
    const { s } = source(auth.url);
    assert.equal((await look(s, 'bob')).kind, 'found');
    assert.equal((s.lookup(identity('bob'), 1000) as LookupResult<SourceFacts>).kind, 'found');
    assert.equal((await look(s, 'nobody')).kind, 'not_found');
    assert.equal((s.lookup(identity('nobody'), 1000) as LookupResult<SourceFacts>).kind, 'not_found', 'negative answer is cached');
    assert.equal(auth.requests.length, 2);
    s.close();
  });

  it('the cache is bounded by maxEntries (least recently used goes first)', async () => {
    const { s } = source(auth.url, { cache: { maxEntries: 1 } });
    assert.equal((await look(s, 'bob')).kind, 'found');
    assert.equal((await look(s, 'nobody')).kind, 'not_found');
    assert.equal((await look(s, 'bob')).kind, 'found');
    assert.deepEqual(auth.requests.map((u) => u.searchParams.get('subject')), ['bob', 'nobody', 'bob'], 'bob was evicted by nobody');
    s.close();
  });

  it('refetched identical facts keep their fingerprint (Passport reused); changed facts get a new one', async () => {
    let now = 1_000_000;
    const { s } = source(auth.url, { cache: { ttlSeconds: 60 } }, () => now);
    const fp = async () => {
      const r = await look(s, 'bob');
      assert.equal(r.kind, 'found');
      return r.kind === 'found' ? r.value.fingerprint : '';
    };
    const first = await fp();
    now += 61_000;
    assert.equal(await fp(), first);
    assert.equal(auth.requests.length, 2, 'it was really refetched');
    auth.users['bob'] = { user: { id: 'u-bob', roles: ['r', 'admin'] } };
    now += 61_000;
    assert.notEqual(await fp(), first);
    s.close();
  });

  it('auth service down: error "unreachable"', async () => {
    const { s } = source(`http://127.0.0.1:${await freePort()}/v1/facts`);
    const e = errorOf(await look(s, 'bob'));
    assert.equal(e.reason, 'unreachable');
    assert.match(e.detail, /^passport source 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    s.close();
  });

  it('answering 500: error "bad_status"', async () => {
    auth.mode = 'error500';
    const { s } = source(auth.url);
    const e = errorOf(await look(s, 'bob'));
    assert.equal(e.reason, 'bad_status');
    assert.match(e.detail, /answered HTTP 500/);
    s.close();
  });

  it('garbage JSON: error "invalid_answer"', async () => {
    auth.mode = 'garbage';
    const { s } = source(auth.url);
    const e = errorOf(await look(s, 'bob'));
    assert.equal(e.reason, 'invalid_answer');
    assert.match(e.detail, /not JSON/);
    s.close();
  });

  it('answers breaking the limits or the schema are invalid, naming the field', async () => {
    auth.users = {
      many: { user: { id: 'u', roles: Array.from({ length: 17 }, (_, i) => `r${i}`) } },
      quote: { user: { id: 'u"x' } },
      nouser: { id: 'u' },
      baddevice: { user: { id: 'u' }, device: { type: 'tv' } },
      badtime: { user: { id: 'u', expires: 'tomorrow' } },
    };
    const { s } = source(auth.url);
    const want: Record<string, RegExp> = {
      many: /user\.roles has 17 entries, over the limit of 16/,
      quote: /user\.id may only contain printable ASCII/,
      nouser: /no "user" object/,
      baddevice: /device\.id is required/,
      badtime: /user\.expires must be epoch seconds/,
    };
    for (const [subject, re] of Object.entries(want)) {
      const e = errorOf(await look(s, subject));
      assert.equal(e.reason, 'invalid_answer', subject);
      assert.match(e.detail, re, subject);
    }
    s.close();
  });

  it('slow auth service: the request is bounded by the remaining Check deadline', async () => {
    auth.mode = 'hang';
    const { s } = source(auth.url, { timeoutMs: 10_000 });
    const e = errorOf(await look(s, 'bob', 60));
    assert.equal(e.reason, 'timeout');
    assert.match(e.detail, /no answer within 57 ms/, 'timeout = remaining deadline minus the reserve, not the configured 10 s');
    s.close();
  });

  it('no time left: fails without calling the service', async () => {
    const { s } = source(auth.url);
    const e = errorOf(await look(s, 'bob', 2));
    assert.equal(e.reason, 'deadline');
    assert.equal(auth.requests.length, 0);
    s.close();
  });

  it('one request in flight per key', async () => {
    const { s } = source(auth.url);
    auth.holdNext();
    const all = Array.from({ length: 25 }, () => s.lookup(identity('bob'), 1_000));
    const other = s.lookup(identity('nobody'), 1_000);
    auth.release();
    const results = await Promise.all(all);
    assert.ok(results.every((r) => r.kind === 'found'));
    assert.equal((await other).kind, 'not_found');
    assert.equal(auth.requests.length, 2, 'one request for bob, one for nobody');
    s.close();
  });

  it('circuit breaker: opens after the threshold, fails fast, half-opens after openMs, closes on success', async () => {
    let now = 1_000_000;
    const { s, states } = source(auth.url, { circuitBreaker: { failureThreshold: 3, openMs: 5_000 } }, () => now);
    auth.mode = 'error500';
    for (let i = 0; i < 3; i++) errorOf(await look(s, `u${i}`));
    assert.deepEqual(states, ['open']);
    const sent = auth.requests.length;
    const e = errorOf(await look(s, 'bob'));
    assert.equal(e.reason, 'circuit_open');
    assert.equal(auth.requests.length, sent, 'no request while open');
    auth.mode = 'ok';
    now += 5_001;
    assert.equal((await look(s, 'bob')).kind, 'found');
    assert.deepEqual(states, ['open', 'half-open', 'closed']);
    s.close();
  });

  it('stale-if-error: expired facts are served while the service fails, but only within the window', async () => {
    let now = 1_000_000;
    const { s } = source(auth.url, { cache: { ttlSeconds: 60, staleIfErrorSeconds: 120 }, circuitBreaker: { failureThreshold: 100 } }, () => now);
    const fresh = await look(s, 'bob');
    assert.ok(fresh.kind === 'found' && !fresh.stale);
    auth.mode = 'error500';
    now += 61_000; // expired, inside the stale window
    const stale = await look(s, 'bob');
    assert.ok(stale.kind === 'found' && stale.stale, JSON.stringify(stale));
    assert.equal(stale.kind === 'found' && stale.value.user.id, 'u-bob');
    now += 120_000; // past ttl + stale window
    assert.equal(errorOf(await look(s, 'bob')).reason, 'bad_status');
    s.close();
  });

  it("through the stage: a source fault is a `fail` (the route failure mode decides)", async () => {
    const cfg = configWith(passportSection({ source: { type: 'http', url: `http://127.0.0.1:${await freePort()}/x`, timeoutMs: 5_000 } }));
    const stage = passportStage.create(passportStage.schema.parse({ type: 'passport' }), factory(cfg));
    const r = await stage.run(ctxFor(identity('bob')));
    assert.equal(r.kind, 'fail');
    assert.ok(r.kind === 'fail' && r.reason === 'passport_source_unavailable' && /ECONNREFUSED/.test(r.detail ?? ''), JSON.stringify(r));
  });
});
