/**
 * The echo upstream: verifies Passports with the consumer library when a JWKS
 * is configured, otherwise decodes them and says they are unverified.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { generateKeyPairSync, sign } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { EchoUpstream, type EchoBody } from '../../local-gateway/src/echo-upstream.js';
import { nodeRequest } from './support/harness.js';

function token(claims: object, privateKey: ReturnType<typeof generateKeyPairSync>['privateKey'], kid: string): string {
  const h = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'passport+jwt', kid })).toString('base64url');
  const p = Buffer.from(JSON.stringify(claims)).toString('base64url');
  return `${h}.${p}.${sign(null, Buffer.from(`${h}.${p}`), privateKey).toString('base64url')}`;
}

describe('local gateway: echo upstream', () => {
  it('echoes method, path, headers (repeated ones as arrays) and body size', async () => {
    const echo = await EchoUpstream.start();
    try {
      const r = await nodeRequest({ port: echo.port, path: '/a?b=1', method: 'POST', body: 'hello', headers: { 'x-r': ['1', '2'] } });
      const body = JSON.parse(r.body) as EchoBody;
      assert.equal(body.method, 'POST');
      assert.equal(body.path, '/a?b=1');
      assert.deepEqual(body.headers['x-r'], ['1', '2']);
      assert.equal(body.bodyBytes, 5);
      assert.equal(body.passport, undefined);
    } finally {
      await echo.stop();
    }
  });

  it('without a JWKS: decodes the Passport and marks it unverified', async () => {
    const echo = await EchoUpstream.start();
    try {
      const { privateKey } = generateKeyPairSync('ed25519');
      const r = await nodeRequest({ port: echo.port, path: '/', headers: { 'x-passport': token({ sub: 'alice' }, privateKey, 'k') } });
      const p = (JSON.parse(r.body) as EchoBody).passport;
      assert.deepEqual(p, { verified: false, unverified: true, error: 'no JWKS configured: decoded without verification', claims: { sub: 'alice' } });
    } finally {
      await echo.stop();
    }
  });

  it('with a JWKS: a token signed by another key is reported not verified', async () => {
    const good = generateKeyPairSync('ed25519');
    const evil = generateKeyPairSync('ed25519');
    const jwk = { ...good.publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'EdDSA', use: 'sig' };
    const jwks = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const echo = await EchoUpstream.start({ passport: { jwksUrl: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks`, issuer: 'https://iss', audience: 'echo' } });
    try {
      const now = Math.floor(Date.now() / 1000);
      const claims = { ver: 1, iss: 'https://iss', aud: ['echo'], sub: 'alice', iat: now, exp: now + 60, jti: 'j', user: { id: 'alice' } };
      const forged = await nodeRequest({ port: echo.port, path: '/', headers: { 'x-passport': token(claims, evil.privateKey, 'k1') } });
      const p = (JSON.parse(forged.body) as EchoBody).passport as { verified: boolean; code?: string };
      assert.equal(p.verified, false);
      assert.equal(p.code, 'bad_signature');
    } finally {
      await echo.stop();
      await new Promise<void>((r) => jwks.close(() => r()));
    }
  });
});
