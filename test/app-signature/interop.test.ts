/**
 * Interoperability with an independent RFC 9421 implementation
 * (`http-message-signatures`, itself checked against Appendix B in
 * vectors.test.ts): requests it signs with a registered device key pass the
 * real service; signatures the reference SDK makes verify with it.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, sign as cryptoSign, verify as cryptoVerify, createPublicKey } from 'node:crypto';
import { httpbis } from 'http-message-signatures';
import { startService, type Running } from '../support/service.js';
import { cleanup, freePort, testPrefix } from '../fds/helpers.js';
import { appConfig, registeredDevice, statusOf, reasonOf, HOST, authorityKeys } from './helpers.js';
import { AppDevice, offlineAttestation } from '../../ext-authz/src/app-signature/client.js';
import { contentDigest } from '../../ext-authz/src/app-signature/content-digest.js';
import { buildCheckRequest } from '../../ext-authz/src/proto/check-request.js';

describe('app-signature: interop with http-message-signatures', function () {
  this.timeout(60_000);
  let svc: Running;
  let regPort: number;
  const prefix = testPrefix();

  before(async () => {
    regPort = await freePort();
    svc = await startService(appConfig(prefix, regPort));
  });
  after(async () => {
    await svc?.stop();
    await cleanup(prefix);
  });

  for (const alg of ['ecdsa-p256-sha256', 'ed25519'] as const) {
    it(`a request signed by http-message-signatures (${alg}) passes; the same request replayed does not`, async () => {
      const pair = alg === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const device = new AppDevice(pair.privateKey, alg);
      await device.register(`http://127.0.0.1:${regPort}/app/v1/devices`, 'android', offlineAttestation(authorityKeys.privateKey, { authority: 'backend', jkt: device.jkt, platform: 'android', user: 'erin' }));
      const body = '{"transfer":42}';
      const path = '/v1/transfers?dry=0';
      const message = {
        method: 'POST',
        url: `https://${HOST}${path}`,
        headers: { 'device-credential': device.registration!.credential, 'content-digest': contentDigest(Buffer.from(body)), 'content-length': String(body.length), 'content-type': 'application/json' } as Record<string, string>,
      };
      const signed = await httpbis.signMessage(
        {
          key: {
            id: device.jkt,
            alg,
            sign: async (data: Buffer) => (alg === 'ed25519' ? cryptoSign(null, data, pair.privateKey) : cryptoSign('sha256', data, { key: pair.privateKey, dsaEncoding: 'ieee-p1363' })),
          },
          name: 'app',
          params: ['created', 'expires', 'nonce', 'keyid', 'alg'],
          fields: ['@method', '@target-uri', 'device-credential', 'content-digest'],
          paramValues: { nonce: randomBytes(16).toString('base64url'), expires: new Date(Date.now() + 30_000) },
        },
        message,
      );
      const headers = signed.headers as Record<string, string>;
      const req = buildCheckRequest({ method: 'POST', host: HOST, path, headers, gateway: 'app', sourceAddress: '198.51.100.40', body: Buffer.from(body) });
      const r = await svc.check(req);
      assert.equal(statusOf(r), 200, reasonOf(r));
      const again = await svc.check(req);
      assert.equal(reasonOf(again), 'signature_replayed');
    });
  }

  it('a signature made by the reference SDK verifies with http-message-signatures', async () => {
    const d = await registeredDevice(regPort);
    const body = '{"a":1}';
    const url = `https://${HOST}/v1/things?q=2`;
    const h = d.sign({ method: 'PUT', url, headers: { 'content-type': 'application/json' }, body });
    const pub = createPublicKey({ key: d.publicJwk, format: 'jwk' });
    const ok = await httpbis.verifyMessage(
      { keyLookup: async (p) => (p.keyid === d.jkt ? { id: d.jkt, algs: ['ecdsa-p256-sha256'], verify: async (data: Buffer, s: Buffer) => cryptoVerify('sha256', data, { key: pub, dsaEncoding: 'ieee-p1363' }, s) } : null) },
      { method: 'PUT', url, headers: { ...h, 'content-type': 'application/json' } },
    );
    assert.equal(ok, true);
  });
});
