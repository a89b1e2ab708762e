/**
 * Issue 18: certificates are decoded with Node's X509Certificate. The facts
 * must be the ones the previous @peculiar/x509 decoder gave, field by field:
 * here over every shape of certificate the tests use and a few harder ones
 * (IPv6, quoted SANs, CA leaves, EKU variants); test/support/certificate-parity.ts
 * repeats the comparison after the run over every certificate the tests made.
 */
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { x509 } from '../../ext-authz/src/identity/x509.js';
import { createCa, issueCertificate, type CertificateAuthority } from '../../ext-authz/src/devcerts/generate.js';
import { decodeCertificate, leafProblem, nodeCertificate, verifyChain } from '../../ext-authz/src/identity/certificate.js';
import { certificatesMade, decoderDifferences } from '../support/certificate-parity.js';

const KEY: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

/** A leaf with hand-picked extensions (devcerts always adds the usual ones). */
async function custom(ca: CertificateAuthority, extensions: x509.Extension[], serialNumber = '0a1b'): Promise<Buffer> {
  const keys = (await webcrypto.subtle.generateKey(KEY, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: 'CN=custom,O=Parity',
    issuer: ca.cert.subjectName,
    notBefore: new Date('2026-01-01T00:00:00.000Z'),
    notAfter: new Date('2027-06-30T12:34:56.000Z'),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGN,
    extensions,
  });
  return Buffer.from(cert.rawData);
}

describe('certificate decoding: Node X509Certificate vs @peculiar/x509 (issue 18)', function () {
  this.timeout(60_000);
  let root: CertificateAuthority;
  let inter: CertificateAuthority;
  const made: Buffer[] = [];

  before(async () => {
    root = await createCa();
    inter = await createCa({ parent: root, subject: 'CN=Parity Issuing CA,O=Acme,C=DE' });
    made.push(root.der, inter.der);
    const leaves = [
      { sans: { uri: ['spiffe://partners.example.com/org/acme/user/alice'] } },
      { sans: { uri: ['spiffe://a/1', 'spiffe://a/2', 'https://example.com/x?y=1'], dns: ['a.example', '*.b.example'], email: ['alice@acme.example'], ip: ['127.0.0.1', '10.0.0.255'] } },
      { sans: { ip: ['::1', '2001:db8::8a2e:370:7334', '2001:db8:0:1:1:1:1:1', 'fe80::', '0:0:0:1::'] } },
      { sans: { uri: ['spiffe://acme/mallory,By=spiffe://x;Hash=00'] }, subject: 'CN=mallory' },
      { sans: { email: ['eve,x@acme.example'], uri: ['spiffe://acme/eve;DNS=x', 'spiffe://acme/q"uote', 'spiffe://acme/back\\slash'] }, subject: 'CN=eve' },
      { sans: { dns: ['svc.example'] } },
      { subject: 'CN=no-sans,O=Acme' },
      { subject: 'CN=a"b,O=Quote\\, Inc.' },
      { sans: { uri: ['spiffe://acme/dave'] }, usage: 'server' as const },
      { sans: { uri: ['spiffe://acme/dave'] }, usage: 'both' as const },
      { sans: { uri: ['spiffe://acme/erin'] }, notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) },
      { sans: { uri: ['spiffe://acme/serial'] }, serial: '00ff00' },
      { sans: { uri: ['spiffe://acme/serial2'] }, serial: '7f' },
    ];
    for (const [i, l] of leaves.entries()) made.push((await issueCertificate({ ca: i % 2 === 0 ? root : inter, ...l })).der);
    // Shapes only hand-made certificates have: a CA as leaf without keyCertSign (Node's `ca` says false), no EKU, anyEKU, empty SAN-less v3.
    made.push(await custom(root, [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)]));
    made.push(await custom(root, [new x509.BasicConstraintsExtension(false, undefined, true)]));
    made.push(await custom(root, [new x509.ExtendedKeyUsageExtension(['2.5.29.37.0'])]));
    made.push(await custom(root, [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.codeSigning]), new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://acme/code' }])], '01'));
    made.push(await custom(root, []));
  });

  it('gives the same facts and leaf verdict for every certificate made here', () => {
    for (const der of made) assert.deepEqual(decoderDifferences(der), [], `certificate ${der.toString('base64').slice(0, 60)}…`);
  });

  it('gives the same facts for every certificate made so far in this run', () => {
    const all = certificatesMade();
    assert.ok(all.length >= made.length - 5, `${all.length} certificates recorded`);
    for (const der of all) assert.deepEqual(decoderDifferences(der), []);
  });

  it('reads basicConstraints cA from the DER: a CA leaf without keyCertSign is still refused', async () => {
    const der = await custom(root, [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)]);
    const r = decodeCertificate(`-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`);
    assert.ok(r.ok);
    assert.equal(nodeCertificate(r.value).ca, false, 'Node folds keyUsage into `ca`');
    assert.equal(leafProblem(r.value), 'a CA certificate cannot authenticate a client');
  });

  it('verifies chains synchronously with OpenSSL, with the same verdicts', async () => {
    const decode = (pem: string) => {
      const r = decodeCertificate(pem);
      if (!r.ok) throw new Error(r.error);
      return r.value;
    };
    const leaf = decode((await issueCertificate({ ca: inter, sans: { uri: ['spiffe://acme/x'] } })).pem);
    const anchors = { roots: [decode(root.pem)] };
    const ok = verifyChain(leaf, [decode(inter.pem)], anchors);
    assert.equal(ok.ok, true);
    const missing = verifyChain(leaf, [], anchors);
    assert.equal(missing.ok, false);
    const other = await createCa({ subject: 'CN=Parity Issuing CA,O=Acme,C=DE' });
    // Same issuer name, other key: the signature decides.
    const forged = verifyChain(leaf, [decode(other.pem)], anchors);
    assert.equal(forged.ok, false);
  });
});
