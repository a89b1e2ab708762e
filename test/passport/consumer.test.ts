/**
 * The consumer library (`passgate/passport`): every way a token can be
 * wrong maps to one precise code; algorithms are pinned per key; the JWKS
 * is cached and refetched on an unknown kid at a bounded rate.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHmac, sign as cryptoSign, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { CompactSign } from 'jose';
import { createPassportVerifier, PassportError, passportFromHeaders, type PassportErrorCode } from '../../ext-authz/src/passport/consumer/index.js';
import { buildClaims } from '../../ext-authz/src/passport/claims.js';

const ISS = 'https://passgate.test';
const ed = generateKeyPairSync('ed25519');
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const other = generateKeyPairSync('ed25519');
const jwk = (k: KeyObject, kid: string, alg: string) => ({ ...(k.export({ format: 'jwk' }) as object), kid, alg, use: 'sig' });
const JWKS = { keys: [jwk(ed.publicKey, 'ed1', 'EdDSA'), jwk(ec.publicKey, 'ec1', 'ES256')] };

const now = () => Math.floor(Date.now() / 1000);
function claims(over: Record<string, unknown> = {}) {
  const t = now();
  return {
    ...buildClaims({
      issuer: ISS,
      audience: ['orders', 'billing'],
      now: t,
      exp: t + 300,
      jti: 'j-1',
      user: { id: 'u1', source: 'mtls', authMethod: 'mtls', authLevel: 'HIGH', roles: ['r'], scopes: ['s'], created: t, expires: t + 300 },
      device: { id: 'd1', type: 'tv', created: t, expires: t + 300 },
    }),
    ...over,
  };
}

async function sign(payload: unknown, header: Record<string, unknown> = {}, key: KeyObject = ed.privateKey): Promise<string> {
  const h = { alg: 'EdDSA', typ: 'passport+jwt', kid: 'ed1', ...header };
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(h as never).sign(key);
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

describe('passport consumer library', () => {
  const verifier = createPassportVerifier({ keys: JWKS, issuer: ISS, audience: 'orders', cacheSize: 0 });

  async function expectCode(token: unknown, code: PassportErrorCode, v = verifier): Promise<string> {
    const r = await v.verify(token as string);
    assert.ok(!r.ok, `expected ${code}, got a valid Passport`);
    assert.equal(r.error.code, code, r.error.message);
    assert.ok(r.error instanceof PassportError);
    return r.error.message;
  }

  it('verifies EdDSA and ES256 Passports and returns the typed claims', async () => {
    const a = await verifier.verifyOrThrow(await sign(claims()));
    assert.equal(a.user.id, 'u1');
    assert.equal(a.kid, 'ed1');
    assert.equal(a.alg, 'EdDSA');
    const b = await verifier.verifyOrThrow(await sign(claims(), { alg: 'ES256', kid: 'ec1' }, ec.privateKey));
    assert.equal(b.alg, 'ES256');
    assert.equal(b.device?.type, 'tv');
  });

  it('expired (beyond clockTolerance) vs just expired (within it)', async () => {
    await expectCode(await sign(claims({ exp: now() - 10 })), 'expired');
    assert.ok((await verifier.verify(await sign(claims({ exp: now() - 2 })))).ok, 'within the default 5 s tolerance');
    await expectCode(await sign(claims({ iat: now() + 60 })), 'not_yet_valid');
  });

  it('wrong audience, wrong issuer', async () => {
    assert.match(await expectCode(await sign(claims({ aud: 'payments' })), 'wrong_audience'), /does not include orders/);
    await expectCode(await sign(claims({ iss: 'https://evil.test' })), 'wrong_issuer');
  });

  it('bad signature: tampered payload, or signed by another key under a known kid', async () => {
    const good = await sign(claims());
    const [h, , s] = good.split('.');
    await expectCode(`${h}.${b64(claims({ user: { ...claims().user, roles: ['admin'] } }))}.${s}`, 'bad_signature');
    await expectCode(await sign(claims(), {}, other.privateKey), 'bad_signature');
  });

  it('an ES256 signature in DER form (not JWS raw r||s) is a bad signature', async () => {
    const input = `${b64({ alg: 'ES256', typ: 'passport+jwt', kid: 'ec1' })}.${b64(claims())}`;
    const der = cryptoSign('sha256', Buffer.from(input), ec.privateKey);
    await expectCode(`${input}.${der.toString('base64url')}`, 'bad_signature');
    const raw = cryptoSign('sha256', Buffer.from(input), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
    assert.ok((await verifier.verify(`${input}.${raw.toString('base64url')}`)).ok, 'the same signature in raw form verifies');
  });

  it('unknown kid', async () => {
    await expectCode(await sign(claims(), { kid: 'nope' }), 'unknown_kid');
  });

  it('algorithm pinning: none, HS256 with the public key as secret, RS256, and a key used with another alg', async () => {
    await expectCode(`${b64({ alg: 'none', typ: 'passport+jwt', kid: 'ed1' })}.${b64(claims())}.`, 'malformed'); // empty signature part
    await expectCode(`${b64({ alg: 'none', typ: 'passport+jwt', kid: 'ed1' })}.${b64(claims())}.AA`, 'algorithm_not_allowed');
    const hsInput = `${b64({ alg: 'HS256', typ: 'passport+jwt', kid: 'ed1' })}.${b64(claims())}`;
    const secret = ed.publicKey.export({ format: 'pem', type: 'spki' });
    await expectCode(`${hsInput}.${createHmac('sha256', secret).update(hsInput).digest('base64url')}`, 'algorithm_not_allowed');
    await expectCode(`${b64({ alg: 'RS256', typ: 'passport+jwt', kid: 'ed1' })}.${b64(claims())}.AAAA`, 'algorithm_not_allowed');
    // ES256 header naming the Ed25519 key: refused before any signature check.
    const m = await expectCode(await sign(claims(), { alg: 'ES256', kid: 'ed1' }, ec.privateKey), 'algorithm_not_allowed');
    assert.match(m, /key "ed1" is for EdDSA/);
  });

  it('malformed: not a JWS, bad header, wrong typ, crit, claims of the wrong shape', async () => {
    await expectCode('abc', 'malformed');
    await expectCode('a.b', 'malformed');
    await expectCode(`${b64('not json')}.${b64(claims())}.AA`, 'malformed');
    await expectCode(await sign(claims(), { typ: 'JWT' }), 'malformed');
    const critInput = `${b64({ alg: 'EdDSA', typ: 'passport+jwt', kid: 'ed1', crit: ['x'], x: 1 })}.${b64(claims())}`;
    await expectCode(`${critInput}.${cryptoSign(null, Buffer.from(critInput), ed.privateKey).toString('base64url')}`, 'malformed');
    await expectCode(await sign(claims(), { kid: undefined }), 'malformed');
    assert.match(await expectCode(await sign(claims({ user: { id: 'u1' } })), 'malformed'), /user\.authLevel|user\.id/);
    assert.match(await expectCode(await sign(claims({ sub: 'someone-else' })), 'malformed'), /user\.id \(= sub\)/);
    await expectCode(await sign(claims({ ver: 2 })), 'malformed');
    await expectCode(await sign('just a string'), 'malformed');
  });

  it('missing: no header, or the header repeated', async () => {
    await expectCode(undefined, 'missing');
    await expectCode(['a', 'b'], 'missing');
    assert.equal(passportFromHeaders({ 'x-passport': ['a', 'b'] }), undefined);
    assert.equal(passportFromHeaders({ 'x-passport': 'tok' }), 'tok');
  });

  it('rejects keys that are private, lack kid/alg, or whose alg does not match the curve', async () => {
    const v = createPassportVerifier({
      keys: [
        { ...(ed.privateKey.export({ format: 'jwk' }) as object), kid: 'priv', alg: 'EdDSA' },
        { ...jwk(ed.publicKey, 'noalg', 'EdDSA'), alg: undefined },
        jwk(ec.publicKey, 'mismatch', 'EdDSA'),
      ],
      issuer: ISS,
      audience: 'orders',
    });
    for (const kid of ['priv', 'noalg', 'mismatch']) await expectCode(await sign(claims(), { kid }), 'unknown_kid', v);
  });

  it('option errors are thrown at construction', () => {
    assert.throws(() => createPassportVerifier({ issuer: ISS, audience: 'x' }), /exactly one of jwksUrl or keys/);
    assert.throws(() => createPassportVerifier({ keys: [], issuer: '', audience: 'x' }), /issuer and audience/);
  });
});

describe('passport consumer library with a JWKS URL', () => {
  let server: Server;
  let url = '';
  let served: unknown = JWKS;
  let fetches = 0;
  let status = 200;
  before(async () => {
    server = createServer((_req, res) => {
      fetches++;
      if (status !== 200) return void res.writeHead(status).end();
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' }).end(JSON.stringify(served));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));
  beforeEach(() => {
    served = JWKS;
    fetches = 0;
    status = 200;
  });

  it('fetches once, then refetches on an unknown kid at most once per minRefetchIntervalMs', async () => {
    let clock = Date.now();
    const v = createPassportVerifier({ jwksUrl: url, issuer: ISS, audience: 'orders', now: () => clock });
    assert.ok((await v.verify(await sign(claims()))).ok);
    assert.equal(fetches, 1);
    const forged = await sign(claims(), { kid: 'forged-1' });
    assert.equal((await v.verify(forged)).ok, false);
    assert.equal(fetches, 2, 'first unknown kid refetches');
    for (let i = 0; i < 20; i++) {
      const r = await v.verify(await sign(claims(), { kid: `forged-${i + 2}` }));
      assert.ok(!r.ok && r.error.code === 'unknown_kid');
    }
    assert.equal(fetches, 2, 'a flood of unknown kids does not refetch within the interval');
    // A new key appears; after the interval, its first token triggers one refetch and verifies.
    const k2 = generateKeyPairSync('ed25519');
    served = { keys: [...JWKS.keys, jwk(k2.publicKey, 'ed2', 'EdDSA')] };
    clock += 30_001;
    assert.ok((await v.verify(await sign(claims(), { kid: 'ed2' }, k2.privateKey))).ok);
    assert.equal(fetches, 3);
    assert.equal(v.jwksFetches, 3);
  });

  it('concurrent first verifications share one JWKS download', async () => {
    const v = createPassportVerifier({ jwksUrl: url, issuer: ISS, audience: 'orders' });
    const token = await sign(claims());
    const rs = await Promise.all(Array.from({ length: 10 }, () => v.verify(token)));
    assert.ok(rs.every((r) => r.ok));
    assert.equal(fetches, 1);
  });

  it('JWKS unreachable or broken: jwks_unavailable, not a crash', async () => {
    status = 500;
    const v = createPassportVerifier({ jwksUrl: url, issuer: ISS, audience: 'orders' });
    const r = await v.verify(await sign(claims()));
    assert.ok(!r.ok && r.error.code === 'jwks_unavailable' && /HTTP 500/.test(r.error.message), JSON.stringify(r));
    status = 200;
    served = { nope: true };
    const w = createPassportVerifier({ jwksUrl: url, issuer: ISS, audience: 'orders' });
    const r2 = await w.verify(await sign(claims()));
    assert.ok(!r2.ok && r2.error.code === 'jwks_unavailable', JSON.stringify(r2));
  });

  it('a key removed from the JWKS stops verifying (the verified-token cache is dropped)', async () => {
    let clock = Date.now();
    const v = createPassportVerifier({ jwksUrl: url, issuer: ISS, audience: 'orders', now: () => clock });
    const ecToken = await sign(claims(), { alg: 'ES256', kid: 'ec1' }, ec.privateKey);
    assert.ok((await v.verify(ecToken)).ok);
    served = { keys: [JWKS.keys[0]] };
    clock += 300_001; // max-age passed: the next verify starts a background refresh...
    // ...and a token with an unknown kid waits for that refresh, so it is done when this resolves.
    await v.verify(await sign(claims(), { kid: 'unknown' }));
    assert.equal(fetches, 2);
    const r = await v.verify(ecToken);
    assert.ok(!r.ok && r.error.code === 'unknown_kid', JSON.stringify(r));
  });
});
