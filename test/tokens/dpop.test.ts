/**
 * DPoP end to end: a real OIDC provider issues DPoP-bound JWT access tokens,
 * proofs are made with the `dpop` package as a browser would, Checks go over
 * real gRPC to a real PassgateService whose replay cache is real Redis.
 */
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { startService, headerMap, type Running } from '../support/service.js';
import { cleanup, REDIS_URL, testPrefix } from '../fds/helpers.js';
import { TestProvider, RESOURCE } from './provider.js';
import { apiCheck, browserKey, deniedHeader, ecKey, jti, nowSec, proof, reasonOf, scriptCalls, signEs256, statusOf } from './helpers.js';
import { jwkThumbprint } from '../../ext-authz/src/tokens/jwk.js';
import { accessTokenHash } from '../../ext-authz/src/tokens/dpop.js';

const URL_ = 'https://api.example.com/v1/items';
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function yaml(issuer: string, prefix: string, extraRoutes: unknown[] = [], fdsStore: 'redis' | 'memory' = 'redis'): string {
  return JSON.stringify({
    server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, shutdownGraceMs: 500, defaultDeadlineMs: 2000 },
    logging: { level: 'info', audit: true },
    fds:
      fdsStore === 'redis'
        ? {
            store: 'redis',
            redis: { url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 1000 },
            rules: [
              { name: 'replays', events: ['proof_replay'], subject: 'ip', threshold: 3, window: '1m', block: '1m' },
              { name: 'badproofs', events: ['bad_proof', 'bad_token'], subject: 'ip', threshold: 1000, window: '1m', block: '1m' },
            ],
          }
        : { store: 'memory' },
    tokens: {
      issuers: { op: { issuer, algorithms: ['ES256'], audience: [RESOURCE], typ: ['at+jwt'], jwks: { minRefresh: '1s' } } },
    },
    gateways: {
      public: {
        kind: 'public',
        routes: [
          { name: 'api', match: { path: { prefix: '/v1/' } }, stages: ['fds', { type: 'jwt', issuers: ['op'] }, { type: 'proof', mode: 'dpop' }] },
          ...extraRoutes,
        ],
      },
    },
    defaultGateway: 'public',
  });
}

describe('tokens: DPoP with a real OIDC provider over gRPC', function () {
  this.timeout(60_000);
  let op: TestProvider;
  let svc: Running;
  const prefix = testPrefix();

  before(async () => {
    op = await new TestProvider().start();
    svc = await startService(
      yaml(op.issuer, prefix, [
        { name: 'nofds', match: { path: { prefix: '/nofds/' } }, stages: [{ type: 'jwt', issuers: ['op'] }, { type: 'proof', mode: 'dpop' }] },
        { name: 'bearer', match: { path: { prefix: '/bearer/' } }, stages: [{ type: 'jwt', issuers: ['op'] }] },
        { name: 'nonce', match: { path: { prefix: '/nonce/' } }, stages: [{ type: 'jwt', issuers: ['op'] }, { type: 'proof', mode: 'dpop', nonce: true }] },
      ]),
    );
  });
  after(async () => {
    await svc?.stop();
    await op?.close();
    await cleanup(prefix);
  });

  function auditFor(reason: string): Record<string, unknown> | undefined {
    return svc.logs.lines.filter((l) => l['log'] === 'audit' && l['reason'] === reason).at(-1);
  }

  it('allows a fresh proof bound to the token, strips both, and maps the identity', async () => {
    const key = await browserKey();
    const token = await op.token(key);
    const r = await svc.check(apiCheck({ token, dpop: await proof(key, 'GET', URL_, token) }));
    assert.equal(statusOf(r), 200, reasonOf(r));
    assert.ok(r.ok_response?.headers_to_remove?.includes('authorization'));
    assert.ok(r.ok_response?.headers_to_remove?.includes('dpop'));
    const line = svc.logs.lines.filter((l) => l['log'] === 'audit').at(-1)!;
    assert.deepEqual((line['identity'] as Record<string, string>).subject, 'web-app');
    assert.equal((line['identity'] as Record<string, string>).source, 'jwt');
  });

  it('refuses a replay with proof_replayed, in one Redis script per Check, and blocks the IP after repeated replays', async () => {
    const key = await browserKey();
    const token = await op.token(key);
    const p = await proof(key, 'GET', URL_, token);
    const ip = `198.51.100.${1 + (randomBytes(1)[0]! % 200)}`;
    const before = await scriptCalls(REDIS_URL);
    const first = await svc.check(apiCheck({ token, dpop: p, ip }));
    const second = await svc.check(apiCheck({ token, dpop: p, ip }));
    const after = await scriptCalls(REDIS_URL);
    assert.equal(statusOf(first), 200);
    assert.equal(statusOf(second), 401);
    assert.equal(reasonOf(second), 'proof_replayed');
    assert.match(deniedHeader(second, 'www-authenticate')!, /^DPoP error="invalid_dpop_proof".*algs="ES256 EdDSA"/);
    assert.equal(after - before, 2, 'one EVALSHA per Check, claims included');
    assert.ok(auditFor('proof_replayed'));
    // The third replay crosses the rule's threshold (block created in that same call); the next Check is blocked.
    await svc.check(apiCheck({ token, dpop: p, ip }));
    assert.equal(reasonOf(await svc.check(apiCheck({ token, dpop: p, ip }))), 'proof_replayed');
    const blocked = await svc.check(apiCheck({ token, dpop: p, ip }));
    assert.equal(reasonOf(blocked), 'blocked', 'three proof_replay events block the IP');
  });

  it('burns the jti last: a proof denied by a later check can still be used once', async () => {
    const key = await browserKey();
    const token = await op.token(key);
    const p = await proof(key, 'GET', URL_, token);
    // Bound to another token: the stage denies before any claim is sent.
    const other = await op.token(key);
    const denied = await svc.check(apiCheck({ token: other, dpop: p }));
    assert.equal(reasonOf(denied), 'proof_ath_mismatch');
    const ok = await svc.check(apiCheck({ token, dpop: p }));
    assert.equal(statusOf(ok), 200, reasonOf(ok));
  });

  it('a route without fds still refuses replays (its own single round trip)', async () => {
    const key = await browserKey();
    const token = await op.token(key);
    const url = 'https://api.example.com/nofds/x';
    const p = await proof(key, 'GET', url, token);
    const before = await scriptCalls(REDIS_URL);
    assert.equal(statusOf(await svc.check(apiCheck({ path: '/nofds/x', token, dpop: p }))), 200);
    const again = await svc.check(apiCheck({ path: '/nofds/x', token, dpop: p }));
    assert.equal(reasonOf(again), 'proof_replayed');
    assert.equal((await scriptCalls(REDIS_URL)) - before, 2);
  });

  it('refuses a DPoP-bound token sent as Bearer, and a DPoP token on a route without a proof stage', async () => {
    const key = await browserKey();
    const token = await op.token(key);
    assert.equal(reasonOf(await svc.check(apiCheck({ path: '/bearer/x', token, scheme: 'Bearer' }))), 'token_requires_dpop');
    assert.equal(reasonOf(await svc.check(apiCheck({ path: '/bearer/x', token }))), 'proof_missing');
    const plain = await op.token();
    assert.equal(statusOf(await svc.check(apiCheck({ path: '/bearer/x', token: plain, scheme: 'Bearer' }))), 200);
  });

  it('asks for a nonce with use_dpop_nonce and DPoP-Nonce, accepts it, and hands out nonces on OK', async () => {
    const key = await browserKey();
    const token = await op.token(key);
    const url = 'https://api.example.com/nonce/x';
    const first = await svc.check(apiCheck({ path: '/nonce/x', token, dpop: await proof(key, 'GET', url, token) }));
    assert.equal(reasonOf(first), 'use_dpop_nonce');
    assert.match(deniedHeader(first, 'www-authenticate')!, /error="use_dpop_nonce"/);
    const nonce = deniedHeader(first, 'dpop-nonce')!;
    assert.ok(nonce);
    const ok = await svc.check(apiCheck({ path: '/nonce/x', token, dpop: await proof(key, 'GET', url, token, nonce) }));
    assert.equal(statusOf(ok), 200, reasonOf(ok));
    assert.equal(headerMap(ok.ok_response?.response_headers_to_add as never)['dpop-nonce'], nonce);
  });

  it('normalises htu per RFC 9449: host case and default port are equal, query and fragment ignored, another port is not', async () => {
    const key = await browserKey();
    const token = await op.token(key);
    for (const u of ['https://API.Example.COM/v1/items', 'https://api.example.com:443/v1/items', 'https://api.example.com/v1/items?x=1#frag', 'https://api.example.com/v1/%69tems']) {
      const r = await svc.check(apiCheck({ token, dpop: await proof(key, 'GET', u, token) }));
      assert.equal(statusOf(r), 200, `${u}: ${reasonOf(r)}`);
    }
    const r = await svc.check(apiCheck({ token, dpop: await proof(key, 'GET', 'https://api.example.com:8443/v1/items', token) }));
    assert.equal(reasonOf(r), 'proof_wrong_url');
  });

  it('gives every bad proof a precise 401 reason, an audit line and an FDS event, never a gRPC error', async () => {
    const browser = ecKey();
    const jkt = jwkThumbprint(browser.jwk)!;
    // A token bound to the hand-made key: get one with a proof the dpop package makes for that key.
    const { webcrypto } = await import('node:crypto');
    const pair = {
      privateKey: await webcrypto.subtle.importKey('jwk', browser.privateKey.export({ format: 'jwk' }) as JsonWebKey, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']),
      publicKey: await webcrypto.subtle.importKey('jwk', browser.jwk as JsonWebKey, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']),
    } as CryptoKeyPair;
    const token = await op.token(pair);
    const ath = accessTokenHash(token);
    const good = () => ({ jti: jti(), htm: 'GET', htu: URL_, iat: nowSec(), ath });
    const hdr = { typ: 'dpop+jwt', alg: 'ES256', jwk: browser.jwk };
    const sign = (h: Record<string, unknown>, p: Record<string, unknown>) => signEs256(h, p, browser.privateKey);
    const valid = sign(hdr, good());
    const [h64, p64, s64] = valid.split('.');
    const other = ecKey();
    const cases: Array<[string, string, string]> = [
      ['two segments', `${h64}.${p64}`, 'proof_malformed'],
      ['padding in a segment', `${h64}=.${p64}.${s64}`, 'proof_malformed'],
      // 64 signature bytes leave 4 unused bits in the last character: setting one decodes to the same bytes.
      ['non-canonical trailing bits', `${h64}.${p64}.${s64!.slice(0, -1)}${B64[B64.indexOf(s64!.at(-1)!) | 1]}`, 'proof_malformed'],
      ['alg none', `${Buffer.from(JSON.stringify({ ...hdr, alg: 'none' })).toString('base64url')}.${p64}.${s64}`, 'proof_alg_not_allowed'],
      ['HS256 with the public key as secret', sign({ ...hdr, alg: 'HS256' }, good()), 'proof_alg_not_allowed'],
      ['jwk with its private part', sign({ ...hdr, jwk: browser.privateKey.export({ format: 'jwk' }) }, good()), 'proof_private_jwk'],
      ['wrong typ', sign({ ...hdr, typ: 'jwt' }, good()), 'proof_wrong_typ'],
      ['huge header', sign({ ...hdr, pad: 'x'.repeat(6000) }, good()), 'proof_too_large'],
      ['missing jti', sign(hdr, { ...good(), jti: undefined }), 'proof_missing_jti'],
      ['another method', sign(hdr, { ...good(), htm: 'POST' }), 'proof_wrong_method'],
      ['another URL', sign(hdr, { ...good(), htu: 'https://api.example.com/v1/other' }), 'proof_wrong_url'],
      ['iat too old', sign(hdr, { ...good(), iat: nowSec() - 600 }), 'proof_iat_expired'],
      ['iat in the future beyond skew', sign(hdr, { ...good(), iat: nowSec() + 120 }), 'proof_iat_future'],
      ['ath for another token', sign(hdr, { ...good(), ath: accessTokenHash('other') }), 'proof_ath_mismatch'],
      ['jwk of another key (stolen jti, re-signed)', signEs256({ ...hdr, jwk: other.jwk }, good(), other.privateKey), 'proof_key_mismatch'],
      ['signature by another key', signEs256(hdr, good(), other.privateKey), 'proof_bad_signature'],
      ['two DPoP headers', `${valid},${valid}`, 'proof_multiple'],
    ];
    assert.ok(jkt);
    for (const [name, dpop, reason] of cases) {
      const r = await svc.check(apiCheck({ token, dpop, ip: '192.0.2.77' }));
      assert.equal(statusOf(r), 401, name);
      assert.equal(reasonOf(r), reason, name);
      assert.match(deniedHeader(r, 'www-authenticate') ?? '', /^DPoP /, name);
      const line = auditFor(reason);
      assert.ok(line, `${name}: audit line`);
      assert.equal((line!['proof'] as Record<string, string> | undefined)?.reason ?? line!['reason'], reason);
    }
    const redis = new Redis(REDIS_URL);
    const counted = await redis.zcard(`${prefix}{fds}:c:badproofs:ip:192.0.2.77`);
    redis.disconnect();
    assert.equal(counted, cases.length, 'one bad_proof FDS event per bad proof');
    // Bad tokens too.
    const parts = token.split('.');
    for (const [name, t, reason] of [
      ['token with alg none', `${Buffer.from('{"alg":"none"}').toString('base64url')}.${parts[1]}.`, 'malformed_token'],
      ['token signed by someone else', `${parts[0]}.${parts[1]}.${signEs256({ a: 1 }, {}, other.privateKey).split('.')[2]}`, 'bad_signature'],
      ['token with a forged kid', `${Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'at+jwt', kid: 'nope' })).toString('base64url')}.${parts[1]}.${parts[2]}`, 'unknown_key'],
    ] as const) {
      const r = await svc.check(apiCheck({ token: t, dpop: valid }));
      assert.equal(reasonOf(r), reason, name);
    }
  });

  it('accepts tokens across a key rotation at the provider during a load of Checks (no false denies)', async () => {
    await new Promise((r) => setTimeout(r, 1100)); // past jwks.minRefresh since the last fetch
    const key = await browserKey();
    const oldToken = await op.token(key);
    const results: Array<Promise<number>> = [];
    for (let i = 0; i < 60; i++) {
      if (i === 20) {
        op.rotate();
      }
      const token = i < 20 ? oldToken : await op.token(key);
      results.push(proof(key, 'GET', URL_, token).then((p) => svc.check(apiCheck({ token, dpop: p }))).then(statusOf));
    }
    const statuses = await Promise.all(results);
    assert.deepEqual(statuses.filter((s) => s !== 200), []);
    assert.notEqual(op.kids[0], JSON.parse(Buffer.from(oldToken.split('.')[0]!, 'base64url').toString())['kid']);
  });
});
