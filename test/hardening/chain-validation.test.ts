/**
 * Issue 12 item 6: with identity.mtls.ca, RFC 5280 path validation:
 * pathLenConstraint, keyCertSign on issuers, a CA is never a client leaf,
 * clientAuth when the leaf has an EKU, validity of every certificate.
 * Real certificates (@peculiar/x509 via the devcerts module, plus custom CAs).
 */
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { x509 } from '../../ext-authz/src/identity/x509.js';
import { createCa, issueCertificate, toXfcc, type CertificateAuthority } from '../../ext-authz/src/devcerts/generate.js';
import { httpCheck, startService, type Running } from '../support/service.js';

const KEY: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

/** A CA with chosen constraints, signed by `parent` (or self-signed). */
async function customCa(subject: string, parent: CertificateAuthority | undefined, opts: { pathLength?: number; keyUsage?: number }): Promise<CertificateAuthority> {
  const keys = (await webcrypto.subtle.generateKey(KEY, true, ['sign', 'verify'])) as CryptoKeyPair;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, opts.pathLength, true),
    new x509.KeyUsagesExtension(opts.keyUsage ?? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + 86_400_000);
  const cert = parent
    ? await x509.X509CertificateGenerator.create({ serialNumber: '0a1b', subject, issuer: parent.cert.subjectName, notBefore, notAfter, publicKey: keys.publicKey, signingKey: parent.keys.privateKey, signingAlgorithm: SIGN, extensions })
    : await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: '0a1c', name: subject, notBefore, notAfter, keys, signingAlgorithm: SIGN, extensions });
  const pem = `${cert.toString('pem').replace(/\r\n/g, '\n')}\n`;
  const above = parent ? parent.intermediates : [];
  const self = { cert, keys, pem, keyPem: '', der: Buffer.from(cert.rawData), fingerprint: '', serial: '', chainPem: pem + above.map((c) => c.pem).join('') };
  return { ...self, intermediates: parent ? [self, ...above] : [] } as unknown as CertificateAuthority;
}

describe('certificate path validation (issue 12 item 6)', function () {
  this.timeout(30_000);
  let run: Running;
  let root: CertificateAuthority;
  let strictRoot: CertificateAuthority;

  before(async () => {
    root = await createCa();
    strictRoot = await customCa('CN=Strict Root', undefined, { pathLength: 0 });
    run = await startService(`
identity:
  mtls:
    ca: { pem: ${JSON.stringify(root.pem + strictRoot.pem)} }
    rules: [{ uri: { prefix: "spiffe://acme/" }, identity: { subject: "{rest}", kind: user } }]
gateways: { secure: { kind: secure, routes: [{ name: r, stages: [mtls] }] } }
defaultGateway: secure
`);
  });
  after(async () => run?.stop());

  async function ask(xfcc: string): Promise<string> {
    const res = await run.check(httpCheck({ headers: { 'x-forwarded-client-cert': xfcc } }));
    if ((res.status?.code ?? 0) === 0) return 'allow';
    return String(JSON.parse(res.denied_response?.body ?? '{}').reason);
  }

  it('a client certificate through a valid intermediate is allowed', async () => {
    const inter = await createCa({ parent: root });
    const leaf = await issueCertificate({ ca: inter, sans: { uri: ['spiffe://acme/alice'] } });
    assert.equal(await ask(toXfcc(leaf, { chain: true })), 'allow');
  });

  it('pathLenConstraint: a root allowing 0 intermediates does not validate a path through one', async () => {
    const inter = await customCa('CN=Too Deep', strictRoot, {});
    const leaf = await issueCertificate({ ca: inter, sans: { uri: ['spiffe://acme/bob'] } });
    assert.equal(await ask(toXfcc(leaf, { chain: true })), 'untrusted_issuer');
    // Directly under the strict root it is fine.
    const direct = await issueCertificate({ ca: strictRoot, sans: { uri: ['spiffe://acme/bob'] } });
    assert.equal(await ask(toXfcc(direct)), 'allow');
  });

  it('an issuer without keyCertSign cannot sign a client certificate', async () => {
    const noSign = await customCa('CN=No KeyCertSign', root, { keyUsage: x509.KeyUsageFlags.digitalSignature });
    const leaf = await issueCertificate({ ca: noSign, sans: { uri: ['spiffe://acme/carol'] } });
    assert.equal(await ask(toXfcc(leaf, { chain: true })), 'untrusted_issuer');
  });

  it('a CA certificate is never a client leaf', async () => {
    const inter = await createCa({ parent: root, subject: 'CN=Acme Issuing CA' });
    assert.equal(await ask(toXfcc(inter)), 'untrusted_issuer');
  });

  it('a leaf whose extendedKeyUsage lacks clientAuth is refused', async () => {
    const server = await issueCertificate({ ca: root, sans: { uri: ['spiffe://acme/dave'] }, usage: 'server' });
    assert.equal(await ask(toXfcc(server)), 'untrusted_issuer');
    const both = await issueCertificate({ ca: root, sans: { uri: ['spiffe://acme/dave'] }, usage: 'both' });
    assert.equal(await ask(toXfcc(both)), 'allow');
  });

  it('an expired intermediate fails the path though the leaf is valid', async () => {
    const day = 86_400_000;
    const old = await createCa({ parent: root, subject: 'CN=Old Intermediate', notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) });
    const leaf = await issueCertificate({ ca: old, sans: { uri: ['spiffe://acme/erin'] } });
    assert.equal(await ask(toXfcc(leaf, { chain: true })), 'certificate_expired');
  });
});
