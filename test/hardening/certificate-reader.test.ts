/**
 * From an independent review (issue 18, session 23) of the hot-path CheckRequest decoder and the first-sight
 * DER certificate reader: the cases it found (a SAN OpenSSL drops, a CPU-heavy OID, a padded length that
 * changes the fingerprint) and one it checked sound. Each `it` names the behaviour that must hold.
 */
import assert from 'node:assert/strict';
import { X509Certificate, webcrypto } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { x509 } from '../../ext-authz/src/identity/x509.js';
import { decodeCertificate } from '../../ext-authz/src/identity/certificate.js';
import { children, readTlv } from '../../ext-authz/src/identity/rfc2253.js';
import { createCheckRequestDecoder } from '../../ext-authz/src/proto/check-decoder.js';
import { loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import { toRequestView } from '../../ext-authz/src/pipeline/request-view.js';
import type { CheckRequest } from '../../ext-authz/src/proto/types.js';

const pem = (der: Uint8Array) => `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString('base64')}\n-----END CERTIFICATE-----\n`;

function lenBytes(l: number): Buffer {
  if (l < 128) return Buffer.from([l]);
  if (l < 256) return Buffer.from([0x81, l]);
  if (l < 65536) return Buffer.from([0x82, l >> 8, l & 255]);
  return Buffer.from([0x83, l >> 16, (l >> 8) & 255, l & 255]);
}
const wrap = (tag: number, body: Buffer) => Buffer.concat([Buffer.from([tag]), lenBytes(body.length), body]);

let keys: CryptoKeyPair;
async function selfSigned(exts: Array<[string, boolean, Buffer]>): Promise<Buffer> {
  keys ??= (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
  const c = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=review,O=Acme', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000),
    keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: exts.map(([oid, critical, value]) => new x509.Extension(oid, critical, new Uint8Array(value))),
  });
  return Buffer.from(c.rawData);
}

/** The certificate with its extensions replaced by `extensions` (DER of each Extension); the signature is left as is. */
function withExtensions(der: Buffer, extensions: Buffer[]): Buffer {
  const cert = readTlv(der, 0);
  const parts = children(der, cert);
  const f = children(der, parts[0]!);
  const tbs = wrap(0x30, Buffer.concat([...f.slice(0, -1).map((t) => der.subarray(t.start, t.end)), wrap(0xa3, wrap(0x30, Buffer.concat(extensions)))]));
  return wrap(0x30, Buffer.concat([tbs, der.subarray(parts[1]!.start, parts[1]!.end), der.subarray(parts[2]!.start, parts[2]!.end)]));
}

describe('hardening: the certificate reader and the Check decoder (review)', function () {
  this.timeout(60_000);

  describe('proto/check-decoder', () => {
    it('gives the same request view as proto-loader for a header named __proto__ and explicit defaults', () => {
      const method = loadAuthorizationService().service['Check'] as grpc.MethodDefinition<CheckRequest, unknown>;
      const fast = createCheckRequestDecoder();
      const req: CheckRequest = {
        attributes: {
          source: { address: { socket_address: { address: '', port_value: 0 } }, principal: '' },
          request: { http: { method: 'GET', path: '/a', host: 'h', headers: { ['__proto__']: 'x', constructor: 'y', 'X-Passport': 'p' }, size: '0' } },
          context_extensions: { ['__proto__']: 'z' },
        },
      };
      const bytes = method.requestSerialize(req);
      const a = toRequestView(method.requestDeserialize(bytes));
      const b = toRequestView(fast(bytes));
      assert.deepEqual(b, a);
      assert.equal(Object.getPrototypeOf(b.headers) === Object.prototype || Object.getPrototypeOf(b.headers) === null, true);
    });
  });

  describe('identity/der-certificate', () => {
    it('reads no SANs from a subjectAltName OpenSSL cannot decode (a URI followed by a malformed otherName)', async () => {
      const uri = Buffer.from('spiffe://acme/admin');
      // GeneralNames { uniformResourceIdentifier, otherName [0] { NULL } } : the otherName is not type-id + [0] value.
      const san = wrap(0x30, Buffer.concat([Buffer.from([0x86, uri.length]), uri, Buffer.from('a0020500', 'hex')]));
      const der = await selfSigned([['2.5.29.17', false, san]]);
      const node = new X509Certificate(der); // OpenSSL takes the certificate but not its SAN extension
      assert.equal(node.subjectAltName ?? '', '', 'OpenSSL (and Envoy) see no SAN at all here');
      const r = decodeCertificate(pem(der));
      // A URI SAN OpenSSL never reads must not become the principal: the certificate is refused, by name.
      assert.equal(r.ok, false);
      assert.match(r.ok ? '' : r.error, /otherName is malformed/);
    });

    it('reads no SANs from a subjectAltName with a malformed registeredID after a URI', async () => {
      const uri = Buffer.from('spiffe://acme/admin');
      const san = wrap(0x30, Buffer.concat([Buffer.from([0x86, uri.length]), uri, Buffer.from('880180', 'hex')]));
      const der = await selfSigned([['2.5.29.17', false, san]]);
      assert.equal(new X509Certificate(der).subjectAltName ?? '', '');
      const r = decodeCertificate(pem(der));
      assert.equal(r.ok, false);
      assert.match(r.ok ? '' : r.error, /OBJECT IDENTIFIER/);
    });

    it('refuses a certificate with a huge extension OID before reading its arcs (no BigInt work on 44,000 bytes)', async () => {
      const base = await selfSigned([['1.2.3.4', false, Buffer.from('0500', 'hex')]]);
      const n = 44_000; // one arc of 44 000 bytes: the PEM stays under the 64 KiB bound
      const arc = Buffer.alloc(n, 0xff);
      arc[n - 1] = 0x01;
      const ext = wrap(0x30, Buffer.concat([wrap(0x06, Buffer.concat([Buffer.from([0x2a]), arc])), Buffer.from('04020500', 'hex')]));
      const der = withExtensions(base, [ext]);
      const text = pem(der);
      assert.ok(text.length < 64 * 1024, `PEM is ${text.length} characters`);
      const r = decodeCertificate(text);
      assert.equal(r.ok, false);
      assert.match(r.ok ? '' : r.error, /OBJECT IDENTIFIER at byte \d+ is 44001 bytes long, over 128/);
      // An arc of 21 bytes in a short OID is refused the same way.
      const longArc = Buffer.concat([Buffer.from([0x2a]), Buffer.alloc(21, 0x81), Buffer.from([0x01])]);
      const r2 = decodeCertificate(pem(withExtensions(base, [wrap(0x30, Buffer.concat([wrap(0x06, longArc), Buffer.from('04020500', 'hex')]))])));
      assert.match(r2.ok ? '' : r2.error, /has an arc over 20 bytes/);
    });

    it('fingerprints a certificate as OpenSSL does when its unsigned outer SEQUENCE uses a non-minimal length (or refuses it)', async () => {
      const der = await selfSigned([['2.5.29.17', false, wrap(0x30, Buffer.concat([Buffer.from([0x86, 5]), Buffer.from('urn:a')]))]]);
      assert.equal(der[1], 0x82);
      // 30 82 LL LL -> 30 83 00 LL LL: same signed bytes, same certificate for OpenSSL.
      const bent = Buffer.concat([Buffer.from([0x30, 0x83, 0x00]), der.subarray(2)]);
      const openssl = new X509Certificate(bent).fingerprint256.replace(/:/g, '').toLowerCase();
      assert.equal(openssl, new X509Certificate(der).fingerprint256.replace(/:/g, '').toLowerCase());
      const r = decodeCertificate(pem(bent));
      // identity.mtls.deny fingerprints (and FDS `cert` blocks) name the certificate, not one of its encodings:
      // a padded length would give a re-encoded copy of a denied certificate a fresh fingerprint, so it is refused.
      assert.equal(r.ok, false);
      assert.match(r.ok ? '' : r.error, /leading zero byte \(not DER\)/);
    });
  });
});
