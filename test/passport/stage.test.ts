/**
 * The passport stage, run directly with hand-built CheckContexts (identity
 * set as an identity stage would): what it issues, when it reuses, how it
 * denies. Tokens are checked with the real consumer library.
 */
import assert from 'node:assert/strict';
import { passportStage } from '../../ext-authz/src/passport/passport-stage.js';
import { createPassportVerifier } from '../../ext-authz/src/passport/consumer/index.js';
import type { Stage } from '../../ext-authz/src/stages/stage.js';
import type { StageResult } from '../../ext-authz/src/pipeline/decision.js';
import type { PassgateConfig } from '../../ext-authz/src/config/schema.js';
import { worstCasePassportBytes } from '../../ext-authz/src/passport/claims.js';
import { PassportIssuer } from '../../ext-authz/src/passport/issuer.js';
import { RELAY, type RelayAttribute } from '../../ext-authz/src/passport/facts.js';
import { AuthService, configWith, ctxFor, factory, header, identity, keyFiles, passportSection } from './helpers.js';

function build(config: PassgateConfig, options: Record<string, unknown> = {}) {
  const f = factory(config);
  const stage = passportStage.create(passportStage.schema.parse({ type: 'passport', ...options }), f);
  const state = f.state!;
  const verifier = createPassportVerifier({ keys: JSON.parse(state.ring.jwksBody), issuer: 'https://passgate.test', audience: 'orders' });
  return { stage, state, verifier, metrics: f.metrics };
}

async function run(stage: Stage, ctx: ReturnType<typeof ctxFor>): Promise<StageResult> {
  return await stage.run(ctx);
}

describe('passport stage (static source)', () => {
  const config = configWith(passportSection());

  it('issues a Passport with the user and device blocks and sets it as x-passport', async () => {
    const { stage, verifier } = build(config);
    const ctx = ctxFor(identity('alice', { deviceId: 'd-1' }));
    const r = await run(stage, ctx);
    assert.equal(r.kind, 'continue');
    const token = header(ctx, 'x-passport');
    assert.ok(token);
    const v = await verifier.verify(token);
    assert.ok(v.ok, v.ok ? '' : v.error.message);
    const p = v.passport;
    assert.equal(p.sub, 'u-alice');
    assert.equal(p.iss, 'https://passgate.test');
    assert.deepEqual(p.aud, ['orders', 'billing']);
    assert.equal(p.kid, 'k1');
    assert.equal(p.alg, 'EdDSA');
    assert.equal(p.exp - p.iat, 300);
    assert.deepEqual(
      { ...p.user, created: 0, expires: 0 },
      { id: 'u-alice', source: 'mtls', authMethod: 'mtls', authLevel: 'HIGH', roles: ['admin'], scopes: ['orders:read'], created: 0, expires: 0 },
    );
    assert.equal(p.user.expires, p.exp);
    assert.deepEqual({ ...p.device!, created: 0, expires: 0 }, { id: 'd-1', type: 'mobile', os: 'ios', appVersion: '1.2.3', created: 0, expires: 0 });
    assert.deepEqual(ctx.audit['passport'], { kid: 'k1', jti: p.jti });
  });

  it('a second Check for the same user and device reuses the Passport synchronously (no signing)', async () => {
    const { stage, state } = build(config);
    const first = ctxFor(identity('alice', { deviceId: 'd-1' }));
    await run(stage, first);
    const signed = state.issuer.signatures;
    const second = ctxFor(identity('alice', { deviceId: 'd-1' }));
    const r = stage.run(second);
    assert.ok(!(r instanceof Promise), 'warm path must be synchronous');
    assert.equal(header(second, 'x-passport'), header(first, 'x-passport'));
    assert.equal(state.issuer.signatures, signed);
  });

  it('a different device, auth method or level gets its own Passport', async () => {
    const { stage, verifier } = build(config);
    const a = ctxFor(identity('alice', { deviceId: 'd-1' }));
    const b = ctxFor(identity('alice', { deviceId: 'd-2' }));
    const c = ctxFor(identity('alice', { deviceId: 'd-1', source: 'jwt' }));
    await Promise.all([run(stage, a), run(stage, b), run(stage, c)]);
    const [pa, pb, pc] = await Promise.all([a, b, c].map((x) => verifier.verifyOrThrow(header(x, 'x-passport'))));
    assert.equal(pa!.device!.type, 'mobile');
    assert.deepEqual({ id: pb!.device!.id, type: pb!.device!.type }, { id: 'd-2', type: 'unknown' });
    assert.equal(pc!.user.authLevel, 'LOW');
    assert.equal(pc!.user.source, 'jwt');
  });

  it('the same facts asked for in turn with another device, auth method or relay facts never get the previous Passport', async () => {
    // Unknown devices share the user's device-less facts object, so only the request values tell these apart.
    const { stage, verifier } = build(config);
    const issue = async (id: ReturnType<typeof identity>, relayKey?: string) => {
      const ctx = ctxFor(id);
      if (relayKey !== undefined) ctx.set(RELAY, { claims: {}, missing: [relayKey], key: relayKey } satisfies RelayAttribute);
      assert.equal((await run(stage, ctx)).kind, 'continue');
      return header(ctx, 'x-passport')!;
    };
    const x = await issue(identity('alice', { deviceId: 'x' }));
    const y = await issue(identity('alice', { deviceId: 'y' }));
    assert.notEqual(y, x);
    assert.equal((await verifier.verifyOrThrow(y)).device?.id, 'y');
    assert.equal(await issue(identity('alice', { deviceId: 'x' })), x, 'back to x: its cached Passport again');
    const relayed = await issue(identity('alice', { deviceId: 'x' }), 'terms');
    assert.deepEqual((await verifier.verifyOrThrow(relayed)).relayMissing, ['terms']);
    assert.equal(await issue(identity('alice', { deviceId: 'x' })), x);
    const webauthn = await issue(identity('alice', { deviceId: 'x', attributes: { authMethod: 'webauthn' } }));
    assert.equal((await verifier.verifyOrThrow(webauthn)).user.authMethod, 'webauthn');
    assert.equal(await issue(identity('alice', { deviceId: 'x' })), x);
    // Same auth method (so the same level), another identity source.
    const jwt = await issue(identity('alice', { deviceId: 'x', source: 'jwt', attributes: { authMethod: 'mtls' } }));
    assert.equal((await verifier.verifyOrThrow(jwt)).user.source, 'jwt');
    assert.equal(new Set([x, y, webauthn, jwt, relayed]).size, 5);
  });

  it('counts signatures in passgate_passport_signatures_total', async () => {
    const { stage, metrics } = build(config);
    await run(stage, ctxFor(identity('alice')));
    await run(stage, ctxFor(identity('alice')));
    await run(stage, ctxFor(identity('alice', { deviceId: 'd-1' })));
    const m = await metrics.registry.getSingleMetric('passgate_passport_signatures_total')!.get();
    assert.equal(m.values[0]?.value, 2);
  });

  it('sets the configured header name', async () => {
    const cfg = configWith(passportSection({ header: 'x-user-passport' }), ['passport'], { headers: { internal: ['x-user-passport'] } });
    const { stage, verifier } = build(cfg);
    const ctx = ctxFor(identity('alice'));
    await run(stage, ctx);
    assert.equal(header(ctx, 'x-passport'), undefined);
    assert.equal((await verifier.verifyOrThrow(header(ctx, 'x-user-passport'))).user.id, 'u-alice');
  });

  it('signs with an ES256 active key when configured; ttlSeconds sets the lifetime', async () => {
    const cfg = configWith(passportSection({ ttlSeconds: 60, keys: { active: 'ec', entries: [{ id: 'ec', alg: 'ES256', file: keyFiles().ecPem }] } }));
    const { stage, verifier } = build(cfg);
    const ctx = ctxFor(identity('alice', { deviceId: 'd-1' }));
    await run(stage, ctx);
    const token = header(ctx, 'x-passport')!;
    assert.deepEqual(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()), { alg: 'ES256', typ: 'passport+jwt', kid: 'ec' });
    const p = await verifier.verifyOrThrow(token);
    assert.deepEqual([p.alg, p.kid, p.exp - p.iat], ['ES256', 'ec', 60]);
  });

  it('concurrent cold Checks for one key sign once', async () => {
    const { stage, state } = build(config);
    const ctxs = Array.from({ length: 20 }, () => ctxFor(identity('alice')));
    await Promise.all(ctxs.map((c) => run(stage, c)));
    assert.equal(state.issuer.signatures, 1);
    assert.equal(new Set(ctxs.map((c) => header(c, 'x-passport'))).size, 1);
  });

  it('uses the authMethod attribute for the level', async () => {
    const cfg = configWith(passportSection({ authLevels: { webauthn: 'HIGHEST', jwt: 'LOW' } }));
    const { stage, verifier } = build(cfg);
    const ctx = ctxFor(identity('alice', { source: 'jwt', attributes: { authMethod: 'webauthn' } }));
    await run(stage, ctx);
    const p = await verifier.verifyOrThrow(header(ctx, 'x-passport'));
    assert.equal(p.user.authMethod, 'webauthn');
    assert.equal(p.user.authLevel, 'HIGHEST');
  });

  it('an auth method named like an Object.prototype member gets LOW, not a bypass of minAuthLevel', async () => {
    const { stage } = build(config, { minAuthLevel: 'HIGH' });
    for (const m of ['constructor', '__proto__', 'toString']) {
      const r = await run(stage, ctxFor(identity('alice', { source: 'jwt', attributes: { authMethod: m } })));
      assert.ok(r.kind === 'deny' && r.denial.reason === 'insufficient_auth_level', `${m}: ${JSON.stringify(r)}`);
    }
  });

  it('denies 401 no_identity without an identity or with an anonymous one, or skips when told to', async () => {
    const { stage } = build(config);
    for (const id of [undefined, identity('anon', { kind: 'anonymous' })]) {
      const ctx = ctxFor(id);
      const r = await run(stage, ctx);
      assert.equal(r.kind, 'deny');
      if (r.kind === 'deny') assert.deepEqual([r.denial.status, r.denial.reason], [401, 'no_identity']);
      assert.equal(header(ctx, 'x-passport'), undefined);
    }
    const skip = build(config, { whenNoIdentity: 'skip' }).stage;
    const ctx = ctxFor(undefined);
    assert.equal((await run(skip, ctx)).kind, 'continue');
    assert.equal(ctx.upstreamHeaders.length, 0);
  });

  it('denies 403 unknown_user for a user the source does not know', async () => {
    const { stage } = build(config);
    const ctx = ctxFor(identity('mallory'));
    const r = await run(stage, ctx);
    assert.ok(r.kind === 'deny' && r.denial.status === 403 && r.denial.reason === 'unknown_user');
  });

  it('denies 403 insufficient_auth_level below minAuthLevel', async () => {
    const { stage } = build(config, { minAuthLevel: 'HIGHEST' });
    const r = await run(stage, ctxFor(identity('alice')));
    assert.ok(r.kind === 'deny' && r.denial.reason === 'insufficient_auth_level', JSON.stringify(r));
    const ok = build(config, { minAuthLevel: 'HIGH' }).stage;
    assert.equal((await run(ok, ctxFor(identity('alice')))).kind, 'continue');
  });

  it('denies identity values that cannot go into a Passport instead of emitting them', async () => {
    const { stage } = build(config);
    const r = await run(stage, ctxFor(identity('alice', { deviceId: 'd"1' })));
    assert.ok(r.kind === 'deny' && r.denial.reason === 'identity_not_representable', JSON.stringify(r));
  });
});

describe('passport stage (http source)', () => {
  let auth: AuthService;
  const L = 64;
  const max = (c: string) => c.repeat(L);
  before(async () => {
    auth = await new AuthService({
      bob: { user: { id: 'u-bob', roles: ['reader'], scopes: ['a', 'b'], created: 1_700_000_000 }, device: { id: 'tv-9', type: 'tv', os: 'tizen' } },
      expired: { user: { id: 'u-old', expires: 1_600_000_000 } },
      huge: {
        user: { id: max('u'), roles: Array.from({ length: 16 }, () => max('r')), scopes: Array.from({ length: 32 }, () => max('s')) },
        device: { id: max('d'), type: max('t'), os: max('o'), appVersion: max('v') },
      },
    }).start();
  });
  after(() => auth.close());

  it('asks the auth service once and issues from its answer', async () => {
    const cfg = configWith(passportSection({ source: { type: 'http', url: auth.url, timeoutMs: 5_000 } }));
    const { stage, verifier } = build(cfg);
    const before = auth.requests.length;
    const ctx = ctxFor(identity('bob', { deviceId: 'tv-9' }));
    const r = stage.run(ctx);
    assert.ok(r instanceof Promise, 'a cold lookup is asynchronous');
    assert.equal((await r).kind, 'continue');
    const req = auth.requests.at(-1)!;
    assert.deepEqual([req.searchParams.get('subject'), req.searchParams.get('source'), req.searchParams.get('device')], ['bob', 'mtls', 'tv-9']);
    const p = await verifier.verifyOrThrow(header(ctx, 'x-passport'));
    assert.equal(p.user.id, 'u-bob');
    assert.equal(p.user.created, 1_700_000_000);
    assert.equal(p.device?.os, 'tizen');
    const again = ctxFor(identity('bob', { deviceId: 'tv-9' }));
    assert.ok(!(stage.run(again) instanceof Promise), 'warm Check is synchronous');
    assert.equal(auth.requests.length, before + 1);
  });

  it('denies 401 session_expired when the auth service says the session has ended', async () => {
    const { stage } = build(configWith(passportSection({ source: { type: 'http', url: auth.url, timeoutMs: 5_000 } })));
    const r = await run(stage, ctxFor(identity('expired')));
    assert.ok(r.kind === 'deny' && r.denial.reason === 'session_expired', JSON.stringify(r));
  });

  it('a maximal answer signs to no more than the worst case computed at config load', async () => {
    const cfg = configWith(passportSection({ source: { type: 'http', url: auth.url, timeoutMs: 5_000 } }));
    const { stage } = build(cfg);
    const ctx = ctxFor(identity('huge', { deviceId: 'd' }));
    assert.equal((await run(stage, ctx)).kind, 'continue');
    const token = header(ctx, 'x-passport')!;
    const worst = worstCasePassportBytes(cfg.passport!);
    assert.ok(token.length <= worst, `${token.length} > ${worst}`);
    assert.ok(token.length > worst * 0.8, `estimate is loose: ${token.length} vs ${worst}`);
  });
});

describe('passport issuer cache', () => {
  it('reuses a Passport until reuseFraction of its lifetime has passed, then signs a new one', async () => {
    const cfg = configWith(passportSection({ ttlSeconds: 100, reuseFraction: 0.5 }));
    const { state } = build(cfg);
    const p = cfg.passport!;
    const issuer = new PassportIssuer(state.ring, p.issuer, p.audience, p.reuseFraction, 10, p.limits.maxHeaderBytes);
    const t = Math.floor(Date.now() / 1000);
    const user = { id: 'u', source: 'mtls', authMethod: 'mtls', authLevel: 'HIGH' as const, roles: [], scopes: [], created: t, expires: t + 100 };
    const first = await issuer.sign('k', { now: t, exp: t + 100, user });
    assert.equal(first.reuseUntil, (t + 50) * 1000);
    assert.equal(issuer.cached('k', first.reuseUntil - 1), first);
    assert.equal(issuer.cached('k', first.reuseUntil), undefined, 'half the lifetime passed: not reused');
    const second = await issuer.sign('k', { now: t + 50, exp: t + 150, user });
    assert.notEqual(second.token, first.token);
    assert.equal(issuer.cached('k', first.reuseUntil), second);
    assert.equal(issuer.signatures, 2);
  });
});
