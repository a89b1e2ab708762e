/** The relay stage against a real terms service on loopback: headers, claims, and both failure policies. */
import assert from 'node:assert/strict';
import { relayStage, RELAY_MISSING_HEADER } from '../../ext-authz/src/passport/relay-stage.js';
import { RELAY } from '../../ext-authz/src/passport/facts.js';
import { passportStage } from '../../ext-authz/src/passport/passport-stage.js';
import { RelayProvider } from '../../ext-authz/src/passport/relay-provider.js';
import { createPassportVerifier } from '../../ext-authz/src/passport/consumer/index.js';
import type { PassgateConfig } from '../../ext-authz/src/config/schema.js';
import { AuthService, configWith, ctxFor, factory, header, identity, passportSection } from './helpers.js';

describe('relay stage', () => {
  let terms: AuthService;
  let config: PassgateConfig;
  before(async () => {
    terms = await new AuthService({ alice: { accepted: true, version: '2026-01' }, bob: { accepted: false } }).start();
    config = configWith(
      passportSection({
        relay: {
          providers: {
            terms: { url: `http://127.0.0.1:${terms.port}/terms/{user}`, field: 'accepted', timeoutMs: 5_000 },
            tos: { url: `http://127.0.0.1:${terms.port}/terms/{user}`, field: 'version', timeoutMs: 5_000 },
          },
        },
      }),
      [{ type: 'relay', providers: ['terms'] }, 'passport'],
    );
  });
  after(() => terms.close());
  beforeEach(() => {
    terms.mode = 'ok';
  });

  function stages(relayOptions: Record<string, unknown>) {
    const f = factory(config);
    const relay = relayStage.create(relayStage.schema.parse({ type: 'relay', providers: ['terms'], ...relayOptions }), f);
    const passport = passportStage.create(passportStage.schema.parse({ type: 'passport' }), f);
    const ring = f.state!.ring;
    const verifier = createPassportVerifier({ keys: JSON.parse(ring.jwksBody), issuer: 'https://passgate.test', audience: 'orders' });
    return { relay, passport, verifier };
  }

  it('fetches once per user and injects x-passgate-relay-<name>', async () => {
    const { relay } = stages({});
    const before = terms.requests.length;
    const ctx = ctxFor(identity('alice'));
    assert.equal((await relay.run(ctx)).kind, 'continue');
    assert.equal(header(ctx, 'x-passgate-relay-terms'), 'true');
    assert.equal(terms.requests.at(-1)!.pathname, '/terms/alice');
    const again = ctxFor(identity('alice'));
    const r = relay.run(again);
    assert.ok(!(r instanceof Promise), 'cached answer is synchronous');
    assert.equal(header(again, 'x-passgate-relay-terms'), 'true');
    assert.equal(terms.requests.length, before + 1);
    const bob = ctxFor(identity('bob'));
    await relay.run(bob);
    assert.equal(header(bob, 'x-passgate-relay-terms'), 'false');
  });

  it('a cached fact is refetched once its ttlSeconds have passed', async () => {
    let now = 1_000_000;
    const provider = new RelayProvider('terms', config.passport!.relay.providers['terms']!, { now: () => now });
    const asked = () => terms.requests.filter((u) => u.pathname === '/terms/alice').length;
    const before = asked();
    assert.deepEqual(await provider.get(identity('alice'), 10_000), { kind: 'found', value: true, stale: false });
    now += 59_999;
    assert.ok(!(provider.get(identity('alice'), 10_000) instanceof Promise), 'still fresh: from the cache');
    now += 2;
    assert.equal((await provider.get(identity('alice'), 10_000)).kind, 'found');
    assert.equal(asked(), before + 2, 'fetched again after the 60 s TTL');
    provider.close();
  });

  it('into: claim puts the fact into the Passport the next stage signs (and several providers run together)', async () => {
    const { relay, passport, verifier } = stages({ into: 'claim', providers: ['terms', 'tos'] });
    const ctx = ctxFor(identity('alice'));
    await relay.run(ctx);
    await passport.run(ctx);
    assert.equal(header(ctx, 'x-passgate-relay-terms'), undefined, 'claim only: no header');
    const p = await verifier.verifyOrThrow(header(ctx, 'x-passport'));
    assert.deepEqual(p.relay, { terms: true, tos: '2026-01' });
    assert.equal(p.relayMissing, undefined);
  });

  it('onFailure: omit — goes on, marks the provider missing (header and claim)', async () => {
    terms.mode = 'error500';
    const { relay, passport, verifier } = stages({ into: 'both', onFailure: 'omit' });
    const ctx = ctxFor(identity('carol'));
    assert.equal((await relay.run(ctx)).kind, 'continue');
    assert.equal(header(ctx, 'x-passgate-relay-terms'), undefined);
    assert.equal(header(ctx, RELAY_MISSING_HEADER), 'terms');
    assert.equal(ctx.audit['relay_terms'], 'bad_status');
    terms.mode = 'ok';
    // carol is unknown to the user directory, so issue for alice with the same relay result.
    const a = ctxFor(identity('alice'));
    a.set(RELAY, ctx.get(RELAY)!);
    await passport.run(a);
    const p = await verifier.verifyOrThrow(header(a, 'x-passport'));
    assert.deepEqual(p.relayMissing, ['terms']);
    assert.equal(p.relay, undefined);
  });

  it('onFailure: deny — answers 503 relay_unavailable with the cause in the detail', async () => {
    terms.mode = 'garbage';
    const { relay } = stages({ onFailure: 'deny' });
    const r = await relay.run(ctxFor(identity('dave')));
    assert.ok(r.kind === 'deny' && r.denial.status === 503 && r.denial.reason === 'relay_unavailable', JSON.stringify(r));
    assert.ok(r.kind === 'deny' && /relay provider "terms": answered with a body that is not JSON/.test(r.denial.detail ?? ''));
  });

  it('a provider that needs a user cannot answer without an identity: handled as a failure', async () => {
    const { relay } = stages({});
    const ctx = ctxFor(undefined);
    assert.equal((await relay.run(ctx)).kind, 'continue');
    assert.equal(header(ctx, RELAY_MISSING_HEADER), 'terms');
    assert.equal(ctx.audit['relay_terms'], 'no_identity');
  });

  it('a string answer over maxValueLength is a provider failure, not a giant header', async () => {
    terms.users['eve'] = { accepted: 'x'.repeat(65) };
    const { relay } = stages({});
    const ctx = ctxFor(identity('eve'));
    await relay.run(ctx);
    assert.equal(header(ctx, 'x-passgate-relay-terms'), undefined);
    assert.equal(ctx.audit['relay_terms'], 'invalid_answer');
  });
});
