/**
 * The jwt stage and request-jwt mode over real gRPC, with keys served by a
 * real JWKS endpoint on loopback: every bad token gets its own 401 reason;
 * the JWKS going away keeps the last good keys; Redis going away applies the
 * route's failure mode to proof routes.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSecretKey, createHmac } from 'node:crypto';
import { startService, type Running } from '../support/service.js';
import { cleanup, freePort, REDIS_URL, testPrefix } from '../fds/helpers.js';
import { apiCheck, deniedHeader, ecKey, jti, nowSec, reasonOf, signEs256, statusOf } from './helpers.js';

const ISS = 'https://id.test';
const AUD = 'https://api.example.com';

describe('tokens: jwt stage and request-jwt over gRPC', function () {
  this.timeout(30_000);
  const issuerKey = ecKey();
  const device = ecKey();
  let jwksUp = true;
  let jwksHits = 0;
  let jwks: Server;
  let svc: Running;
  let deadRedis: Running;
  const prefix = testPrefix();

  const token = (claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}) =>
    signEs256({ alg: 'ES256', typ: 'at+jwt', kid: 'k1', ...header }, { iss: ISS, aud: AUD, sub: 'alice', exp: nowSec() + 300, iat: nowSec(), scope: 'read write', tenant: 'acme', ...claims }, issuerKey.privateKey);
  const rjwt = (claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}) => {
    const iat = nowSec();
    return signEs256({ typ: 'request+jwt', alg: 'ES256', kid: 'd1', ...header }, { iss: 'device', sub: 'alice', jti: jti(), iat, exp: iat + 30, htm: 'GET', htu: `https://${'api.example.com'}/pages/x`, ...claims }, device.privateKey);
  };

  before(async () => {
    jwks = createServer((_req, res) => {
      jwksHits++;
      if (!jwksUp) return void res.writeHead(503).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [{ ...issuerKey.jwk, kid: 'k1', alg: 'ES256', use: 'sig' }] }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const jwksUri = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks`;
    const cfg = (redisUrl: string) =>
      JSON.stringify({
        server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, defaultDeadlineMs: 3000 },
        fds: { store: 'redis', redis: { url: redisUrl, keyPrefix: prefix, commandTimeoutMs: 300, connectTimeoutMs: 200 } },
        tokens: {
          issuers: {
            id: { issuer: ISS, jwksUri, jwks: { minRefresh: '1s' }, algorithms: ['ES256'], audience: [AUD], typ: ['at+jwt'], requiredClaims: ['scope'], claims: { tenant: ['acme'] }, identity: { attributes: { tenant: 'tenant' } }, maxTokenBytes: 2048 },
          },
          clients: { device: { keys: [{ ...device.jwk, kid: 'd1' }], algorithms: ['ES256'] } },
        },
        gateways: {
          public: {
            kind: 'public',
            routes: [
              { name: 'api', match: { path: { prefix: '/v1/' } }, stages: [{ type: 'jwt', issuers: ['id'], from: [{ header: 'authorization' }, { cookie: 'at' }] }, { type: 'authorize', groups: ['scope:read'] }] },
              { name: 'pages', match: { path: { prefix: '/pages/' } }, failureMode: 'closed', stages: ['fds', { type: 'proof', mode: 'request-jwt', clients: ['device'] }] },
              { name: 'pages-open', match: { path: { prefix: '/open/' } }, failureMode: 'open', stages: ['fds', { type: 'proof', mode: 'request-jwt', clients: ['device'] }] },
            ],
          },
        },
        defaultGateway: 'public',
      });
    svc = await startService(cfg(REDIS_URL));
    deadRedis = await startService(cfg(`redis://127.0.0.1:${await freePort()}`));
  });
  after(async () => {
    await svc?.stop();
    await deadRedis?.stop();
    jwks?.close();
    await cleanup(prefix);
  });

  it('accepts a good token, maps scopes and attributes, strips the header or just the cookie', async () => {
    const r = await svc.check(apiCheck({ token: token(), scheme: 'Bearer' }));
    assert.equal(statusOf(r), 200, reasonOf(r));
    assert.ok(r.ok_response?.headers_to_remove?.includes('authorization'));
    const c = await svc.check(apiCheck({ headers: { cookie: `theme=dark; at=${token()}` } }));
    assert.equal(statusOf(c), 200, reasonOf(c));
    assert.equal(c.ok_response?.headers?.find((h) => h.header?.key === 'cookie')?.header?.value, 'theme=dark');
  });

  it('gives every bad token a precise 401 reason and a Bearer challenge', async () => {
    const hs = (() => {
      // HS256 "signed" with the issuer's public key as the HMAC secret: the classic confusion attack.
      const input = `${Buffer.from('{"alg":"HS256","typ":"at+jwt","kid":"k1"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: ISS, aud: AUD, sub: 'x', exp: nowSec() + 60, scope: 'read', tenant: 'acme' })).toString('base64url')}`;
      const secret = createSecretKey(Buffer.from(JSON.stringify(issuerKey.jwk)));
      return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
    })();
    const cases: Array<[string, string, string]> = [
      ['expired', token({ exp: nowSec() - 120 }), 'token_expired'],
      ['not yet valid', token({ nbf: nowSec() + 600 }), 'token_not_yet_valid'],
      ['no exp', token({ exp: undefined }), 'missing_exp'],
      ['wrong audience', token({ aud: 'https://other' }), 'wrong_audience'],
      ['unknown issuer', token({ iss: 'https://evil' }), 'unknown_issuer'],
      ['missing required claim', token({ scope: undefined }), 'missing_claim'],
      ['claim predicate', token({ tenant: 'other' }), 'claim_mismatch'],
      ['HS256 with the public key', hs, 'alg_not_allowed'],
      ['alg none', `${Buffer.from('{"alg":"none","typ":"at+jwt"}').toString('base64url')}.${token().split('.')[1]}.AA`, 'alg_not_allowed'],
      ['wrong typ', token({}, { typ: 'JWT' }), 'wrong_typ'],
      ['a DPoP proof as access token', token({}, { typ: 'dpop+jwt' }), 'wrong_typ'],
      ['too large', token({ pad: 'x'.repeat(3000) }), 'token_too_large'],
      ['garbage', 'not-a-jwt', 'malformed_token'],
      ['signed by another key', signEs256({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' }, { iss: ISS, aud: AUD, sub: 'a', exp: nowSec() + 60, scope: 'read', tenant: 'acme' }, ecKey().privateKey), 'bad_signature'],
    ];
    for (const [name, t, reason] of cases) {
      const r = await svc.check(apiCheck({ token: t, scheme: 'Bearer' }));
      assert.equal(statusOf(r), 401, name);
      assert.equal(reasonOf(r), reason, name);
      assert.match(deniedHeader(r, 'www-authenticate')!, /^Bearer /, name);
    }
    assert.equal(reasonOf(await svc.check(apiCheck({}))), 'token_missing');
    assert.equal(reasonOf(await svc.check(apiCheck({ headers: { authorization: 'Basic abc' } }))), 'malformed_authorization');
    assert.equal(reasonOf(await svc.check(apiCheck({ token: token({ scope: 'write' }), scheme: 'Bearer' }))), 'forbidden_identity', 'authorize sees the mapped scopes');
  });

  it('keeps the last good keys while the JWKS is down, and refetches at most once per minRefresh for unknown kids', async () => {
    jwksUp = false;
    try {
      const hits = jwksHits;
      for (let i = 0; i < 20; i++) assert.equal(reasonOf(await svc.check(apiCheck({ token: token({}, { kid: `forged-${i}` }), scheme: 'Bearer' }))), 'unknown_key');
      assert.ok(jwksHits - hits <= 1, `forged kids caused ${jwksHits - hits} fetches`);
      assert.equal(statusOf(await svc.check(apiCheck({ token: token(), scheme: 'Bearer' }))), 200, 'stale-if-error');
    } finally {
      jwksUp = true;
    }
  });

  it('request-jwt: accepts once, refuses a replay, and each bad request JWT gets its reason', async () => {
    const good = rjwt();
    const ok = await svc.check(apiCheck({ path: '/pages/x', headers: { 'request-jwt': good } }));
    assert.equal(statusOf(ok), 200, reasonOf(ok));
    assert.equal(reasonOf(await svc.check(apiCheck({ path: '/pages/x', headers: { 'request-jwt': good } }))), 'proof_replayed');
    const cases: Array<[string, string, string]> = [
      ['lifetime over the maximum', rjwt({ exp: nowSec() + 600 }), 'proof_lifetime_too_long'],
      ['expired', rjwt({ iat: nowSec() - 100, exp: nowSec() - 50 }), 'proof_expired'],
      ['issued in the future', rjwt({ iat: nowSec() + 60, exp: nowSec() + 80 }), 'proof_iat_future'],
      ['wrong typ', rjwt({}, { typ: 'jwt' }), 'proof_wrong_typ'],
      ['carries its own key', rjwt({}, { jwk: device.jwk }), 'proof_malformed'],
      ['unknown kid', rjwt({}, { kid: 'd2' }), 'proof_unknown_key'],
      ['unknown client', rjwt({ iss: 'someone' }), 'proof_unknown_client'],
      ['another method', rjwt({ htm: 'POST' }), 'proof_wrong_method'],
      ['another URL', rjwt({ htu: 'https://api.example.com/pages/y' }), 'proof_wrong_url'],
      ['missing jti', rjwt({ jti: undefined }), 'proof_missing_jti'],
    ];
    for (const [name, t, reason] of cases) {
      const r = await svc.check(apiCheck({ path: '/pages/x', headers: { 'request-jwt': t } }));
      assert.equal(statusOf(r), 401, name);
      assert.equal(reasonOf(r), reason, name);
    }
    assert.equal(reasonOf(await svc.check(apiCheck({ path: '/pages/x' }))), 'proof_missing');
  });

  it('with Redis down a closed proof route answers 503, an open one allows marked degraded', async () => {
    const closed = await deadRedis.check(apiCheck({ path: '/pages/x', headers: { 'request-jwt': rjwt() } }));
    assert.equal(statusOf(closed), 503);
    assert.equal(reasonOf(closed), 'fds_unavailable');
    const open = await deadRedis.check(apiCheck({ path: '/open/x', headers: { 'request-jwt': rjwt({ htu: 'https://api.example.com/open/x' }) } }));
    assert.equal(statusOf(open), 200);
    assert.equal(open.ok_response?.headers?.find((h) => h.header?.key === 'x-passgate-degraded')?.header?.value, 'true');
  });
});
