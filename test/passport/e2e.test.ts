/**
 * End to end over real gRPC on loopback, with the real service, checker,
 * capability and admin port. The identity comes from a TEST-ONLY stage type
 * (helpers.ts, registered with registerStageDefinition) reading
 * `x-test-subject`; everything after it (routing, passport stage, header
 * policy, response encoding, gRPC) is what ships.
 */
import assert from 'node:assert/strict';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { ConfigError } from '../../ext-authz/src/config/load.js';
import { createPassportVerifier } from '../../ext-authz/src/passport/consumer/index.js';
import { authzClient, check as grpcCheck, type AuthzClient } from '../support/service.js';
import { testCapability } from '../support/test-stages.js';
import { AuthService, configWith, keyFiles, passportSection, silent, TEST_IDENTITY } from './helpers.js';


function check(c: AuthzClient, path: string, headers: Record<string, string>): Promise<CheckResponse> {
  // A generous deadline: a loaded machine must not turn these into deadline tests.
  return grpcCheck(c, { attributes: { context_extensions: { gateway: 'public' }, request: { http: { method: 'GET', path, host: 'app.test', headers } } } }, 10_000);
}

function upstream(res: CheckResponse, name: string): { value: string | undefined; append: unknown } | undefined {
  const h = res.ok_response?.headers?.find((x) => x.header?.key === name);
  return h ? { value: h.header?.value, append: h.append?.value } : undefined;
}

const FORGED = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.';

describe('passport end to end (gRPC + admin JWKS)', function () {
  let svc: PassgateService;
  let c: AuthzClient;
  let jwksUrl = '';
  const files = keyFiles();
  const k1Only = passportSection({ keys: { active: 'k1', entries: [{ id: 'k1', generate: true }] }, jwks: { maxAgeSeconds: 60 } });
  const routes = [TEST_IDENTITY, 'passport'];

  before(async () => {
    svc = await PassgateService.start({ config: configWith(k1Only, routes), grpcPort: 0, adminPort: 0, processMetrics: false, logger: silent, capabilities: [testCapability] });
    c = authzClient(svc.grpcPort);
    jwksUrl = `http://127.0.0.1:${svc.adminPort}/.well-known/jwks.json`;
  });
  after(async () => {
    c.close();
    await svc.stop(0);
  });

  it('a client-forged x-passport never reaches upstream: replaced on passport routes (overwrite)', async () => {
    const res = await check(c, '/app/orders', { 'x-passport': FORGED, 'x-test-subject': 'alice', 'x-test-device': 'd-1' });
    assert.equal(res.status?.code, 0);
    const h = upstream(res, 'x-passport');
    assert.ok(h && h.value !== FORGED, 'our Passport is set');
    assert.equal(h.append, false, 'append=false: overwrite every client copy');
    assert.ok(!res.ok_response?.headers_to_remove?.includes('x-passport'), 'must not remove the header we set (Envoy removes after setting)');
    const v = createPassportVerifier({ jwksUrl, issuer: 'https://passgate.test', audience: 'orders' });
    const p = await v.verifyOrThrow(h.value);
    assert.equal(p.user.id, 'u-alice');
    assert.equal(p.device?.os, 'ios');
  });

  it('…and removed on routes that issue none', async () => {
    const res = await check(c, '/bare', { 'x-passport': FORGED, 'x-passgate-relay-terms': 'true', 'x-test-subject': 'alice' });
    assert.equal(res.status?.code, 0);
    assert.equal(upstream(res, 'x-passport'), undefined);
    assert.ok(res.ok_response?.headers_to_remove?.includes('x-passport'));
    assert.ok(res.ok_response?.headers_to_remove?.includes('x-passgate-relay-terms'), 'forged relay header is stripped too');
  });

  it('…and a request without identity is denied 401, not forwarded', async () => {
    const res = await check(c, '/app/orders', { 'x-passport': FORGED });
    assert.equal(res.denied_response?.status?.code, 401);
    assert.match(res.denied_response?.body ?? '', /"reason":"no_identity"/);
  });

  it('serves the JWKS with cache-control and an ETag; If-None-Match gets 304', async () => {
    const r = await fetch(jwksUrl);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('cache-control'), 'public, max-age=60');
    assert.equal(r.headers.get('content-type'), 'application/jwk-set+json');
    const etag = r.headers.get('etag');
    assert.ok(etag);
    const body = (await r.json()) as { keys: Array<Record<string, string>> };
    assert.deepEqual(body.keys.map((k) => [k['kid'], k['alg'], k['use'], k['d']]), [['k1', 'EdDSA', 'sig', undefined]]);
    const again = await fetch(jwksUrl, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
  });

  it('a reload that changes nothing passport-related keeps the cached Passports (no signing burst)', async () => {
    const before = upstream(await check(c, '/app/x', { 'x-test-subject': 'alice', 'x-test-device': 'keep' }), 'x-passport')!.value;
    await svc.applyConfig(configWith(k1Only, routes, { logging: { level: 'warn' } }));
    const after = upstream(await check(c, '/app/x', { 'x-test-subject': 'alice', 'x-test-device': 'keep' }), 'x-passport')!.value;
    assert.equal(after, before);
    await svc.applyConfig(configWith({ ...k1Only, ttlSeconds: 120 }, routes));
    const changed = upstream(await check(c, '/app/x', { 'x-test-subject': 'alice', 'x-test-device': 'keep' }), 'x-passport')!.value;
    assert.notEqual(changed, before, 'a new TTL means new Passports');
    const p = await createPassportVerifier({ jwksUrl, issuer: 'https://passgate.test', audience: 'orders' }).verifyOrThrow(changed);
    assert.equal(p.exp - p.iat, 120, 'signed with the new ttlSeconds');
  });

  it('rotation via applyConfig: no failed request, new kid picked up by the verifier, old Passports verify during the overlap', async () => {
    const v = createPassportVerifier({ jwksUrl, issuer: 'https://passgate.test', audience: 'orders' });
    const old = upstream(await check(c, '/app/x', { 'x-test-subject': 'alice' }), 'x-passport')!.value!;
    assert.equal((await v.verifyOrThrow(old)).kid, 'k1');
    assert.equal(v.jwksFetches, 1);

    // Phase 1+2 together (the hard case): publish k2 and make it active while Checks are running.
    const rotated = configWith(
      passportSection({ keys: { active: 'k2', entries: [{ id: 'k1', generate: true }, { id: 'k2', file: files.edPem }] }, jwks: { maxAgeSeconds: 60 } }),
      routes,
    );
    const during = Array.from({ length: 30 }, (_, i) => check(c, '/app/x', { 'x-test-subject': 'alice', 'x-test-device': `dev-${i}` }));
    await svc.applyConfig(rotated);
    const after = Array.from({ length: 10 }, (_, i) => check(c, '/app/x', { 'x-test-subject': 'alice', 'x-test-device': `post-${i}` }));
    const answers = await Promise.all([...during, ...after]);
    for (const a of answers) {
      assert.equal(a.status?.code, 0, 'no Check failed during the rotation');
      const r = await v.verify(upstream(a, 'x-passport')!.value);
      assert.ok(r.ok, r.ok ? '' : `${r.error.code}: ${r.error.message}`);
    }
    const fresh = upstream(await check(c, '/app/x', { 'x-test-subject': 'alice', 'x-test-device': 'new' }), 'x-passport')!.value!;
    assert.equal((await v.verifyOrThrow(fresh)).kid, 'k2', 'new Passports are signed by the new active key');
    assert.equal(v.jwksFetches, 2, 'one refetch, caused by the new kid');
    assert.equal((await v.verifyOrThrow(old)).kid, 'k1', 'old Passport still verifies during the overlap');
    const jwks = (await (await fetch(jwksUrl)).json()) as { keys: Array<{ kid: string }> };
    assert.deepEqual(jwks.keys.map((k) => k.kid), ['k1', 'k2']);

    // Phase 3: retire k1. A verifier that learns the new JWKS rejects old Passports precisely.
    await svc.applyConfig(configWith(passportSection({ keys: { active: 'k2', entries: [{ id: 'k2', file: files.edPem }] } }), routes));
    const late = createPassportVerifier({ jwksUrl, issuer: 'https://passgate.test', audience: 'orders' });
    const r = await late.verify(old);
    assert.ok(!r.ok && r.error.code === 'unknown_kid');
  });

  it('a reload with a key file that is not a key is rejected naming the key and file; the old keys keep signing', async () => {
    const bad = configWith(
      passportSection({ keys: { active: 'k3', entries: [{ id: 'k2', file: files.edPem }, { id: 'k3', file: files.garbage }] } }),
      routes,
    );
    await assert.rejects(
      () => svc.applyConfig(bad),
      (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.startsWith(`passport.keys.entries[1].file: ${files.garbage} is not a PEM or JWK key`)),
    );
    const res = await check(c, '/app/x', { 'x-test-subject': 'alice', 'x-test-device': 'after-bad-reload' });
    assert.equal(res.status?.code, 0);
    const v = createPassportVerifier({ jwksUrl, issuer: 'https://passgate.test', audience: 'orders' });
    assert.equal((await v.verifyOrThrow(upstream(res, 'x-passport')!.value)).kid, 'k2');
  });
});

describe('passport end to end: auth service faults over gRPC', () => {
  let svc: PassgateService;
  let c: AuthzClient;
  let auth: AuthService;

  before(async () => {
    auth = await new AuthService({ bob: { user: { id: 'u-bob', roles: ['r'] } } }).start();
    const config = configWith(
      passportSection({ source: { type: 'http', url: auth.url, timeoutMs: 5_000, cache: { ttlSeconds: 60, staleIfErrorSeconds: 0 }, circuitBreaker: { failureThreshold: 100 } } }),
      [TEST_IDENTITY, 'passport'],
      { server: { defaultDeadlineMs: 10_000 } },
    );
    // Second route: same chain, fail-open.
    const routesCfg = config.gateways['public']!.routes;
    routesCfg.splice(1, 0, { ...routesCfg[0]!, name: 'open', match: { path: { prefix: '/open' } }, failureMode: 'open' });
    svc = await PassgateService.start({ config, grpcPort: 0, adminPort: 0, processMetrics: false, logger: silent, capabilities: [testCapability] });
    c = authzClient(svc.grpcPort);
  });
  after(async () => {
    c.close();
    await svc.stop(0);
    await auth.close();
  });

  it('user not found → 403 unknown_user', async () => {
    const res = await check(c, '/app/x', { 'x-test-subject': 'nobody' });
    assert.equal(res.denied_response?.status?.code, 403);
    assert.match(res.denied_response?.body ?? '', /"reason":"unknown_user"/);
  });

  it('auth service answering 500: fail-closed route → 503; fail-open route → degraded OK without a Passport', async () => {
    auth.mode = 'error500';
    const closed = await check(c, '/app/x', { 'x-test-subject': 'carol', 'x-passport': FORGED });
    assert.equal(closed.denied_response?.status?.code, 503);
    assert.match(closed.denied_response?.body ?? '', /"reason":"passport_source_unavailable"/);
    const open = await check(c, '/open/x', { 'x-test-subject': 'carol', 'x-passport': FORGED });
    assert.equal(open.status?.code, 0);
    assert.equal(upstream(open, 'x-passgate-degraded')?.value, 'true');
    assert.equal(upstream(open, 'x-passport'), undefined);
    assert.ok(open.ok_response?.headers_to_remove?.includes('x-passport'), 'the forged copy is still stripped');
    auth.mode = 'ok';
  });

  it('a cached user keeps getting Passports while the auth service is down', async () => {
    assert.equal((await check(c, '/app/x', { 'x-test-subject': 'bob' })).status?.code, 0);
    auth.mode = 'error500';
    const res = await check(c, '/app/x', { 'x-test-subject': 'bob' });
    assert.equal(res.status?.code, 0);
    assert.ok(upstream(res, 'x-passport')?.value);
    auth.mode = 'ok';
  });
});
