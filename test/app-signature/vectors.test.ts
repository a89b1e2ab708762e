/**
 * RFC 9421 Appendix B test vectors against this verifier (parser, signature
 * base, algorithms) and against `http-message-signatures`, the independent
 * implementation the interop tests use: both must accept the published
 * signatures and refuse a changed byte.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createPublicKey, createPrivateKey, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { httpbis } from 'http-message-signatures';
import { parseSignature, signatureBase, verifyBase, algorithmOfKey } from '../../ext-authz/src/app-signature/message-signature.js';
import { checkContentDigest } from '../../ext-authz/src/app-signature/content-digest.js';

const V = JSON.parse(readFileSync(new URL('./data/rfc9421-vectors.json', import.meta.url), 'utf8'));
const req = V.testRequest;
const ed = createPublicKey(V.keys['test-key-ed25519'].publicKeyPem);
const p256 = createPublicKey(V.keys['test-key-ecc-p256'].publicKeyPem);

describe('app-signature: RFC 9421 Appendix B vectors', () => {
  it('B.2.6 (ed25519): parses, rebuilds the published signature base and verifies', () => {
    const v = V['B.2.6'];
    const p = parseSignature(v.signatureInput, v.signature, v.label, 8192);
    assert.ok(p.ok, JSON.stringify(p));
    const base = signatureBase(p.sig, req);
    assert.equal(base, v.base);
    assert.equal(algorithmOfKey(ed), 'ed25519');
    assert.equal(verifyBase('ed25519', ed, base as string, p.sig.signature), true);
    assert.equal(verifyBase('ed25519', ed, (base as string).replace('POST', 'PUT'), p.sig.signature), false);
    // Ed25519 is deterministic: the published key signs the same bytes.
    const mine = cryptoSign(null, Buffer.from(v.base), createPrivateKey(V.keys['test-key-ed25519'].privateKeyPem));
    assert.equal(mine.toString('base64'), p.sig.signature.toString('base64'));
  });

  it('B.2.4 (ecdsa-p256-sha256): the published signature verifies over the published base; the response digest matches', () => {
    const v = V['B.2.4'];
    assert.equal(algorithmOfKey(p256), 'ecdsa-p256-sha256');
    const sig = Buffer.from(v.signature, 'base64');
    assert.equal(verifyBase('ecdsa-p256-sha256', p256, v.base, sig), true);
    assert.equal(verifyBase('ecdsa-p256-sha256', p256, v.base.replace('200', '201'), sig), false);
    assert.equal(checkContentDigest(v.contentDigest, Buffer.from(v.responseBody)), undefined);
    assert.equal(checkContentDigest(v.contentDigest, Buffer.from(v.responseBody + ' '))?.reason, 'digest_mismatch');
  });

  it('the test request digest (sha-512) matches its body', () => {
    assert.equal(checkContentDigest(req.headers['content-digest'], Buffer.from(req.body)), undefined);
  });

  it('http-message-signatures verifies B.2.6 too (the independent implementation the interop tests rely on)', async () => {
    const v = V['B.2.6'];
    const message = { method: req.method, url: `https://${req.authority}${req.target}`, headers: { ...req.headers, 'signature-input': v.signatureInput, signature: v.signature } };
    const ok = await httpbis.verifyMessage(
      {
        keyLookup: async (params) =>
          params.keyid === 'test-key-ed25519' ? { id: 'test-key-ed25519', algs: ['ed25519'], verify: async (data: Buffer, s: Buffer) => cryptoVerify(null, data, ed, s) } : null,
      },
      message,
    );
    assert.equal(ok, true);
    const tampered = { ...message, method: 'PUT' };
    const bad = await httpbis
      .verifyMessage({ keyLookup: async () => ({ id: 'test-key-ed25519', algs: ['ed25519'], verify: async (data: Buffer, s: Buffer) => cryptoVerify(null, data, ed, s) }) }, tampered)
      .catch(() => false);
    assert.equal(bad, false);
  });
});
