/**
 * The first-sight certificate reader (identity/der-certificate.ts) against OpenSSL (Node's X509Certificate):
 * it must never take what OpenSSL refuses, over certificates of every key type a client uses and thousands of
 * mutated and cut copies of them; where both take a certificate the facts must agree with the reference
 * decoders (test/support/certificate-parity.ts). Stricter than OpenSSL is allowed (RFC 5280 forms only):
 * those certificates are denied with the reason named here.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, issueCertificate } from '../../ext-authz/src/devcerts/generate.js';
import { decodeCertificate, verifyChain } from '../../ext-authz/src/identity/certificate.js';
import { decoderDifferences } from '../support/certificate-parity.js';

const pem = (der: Uint8Array) => `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString('base64')}\n-----END CERTIFICATE-----\n`;

function opensslTakes(der: Uint8Array): boolean {
  try {
    new X509Certificate(der);
    return true;
  } catch {
    return false;
  }
}

/** Self-signed certificates made by the openssl CLI (RSA, Ed25519, P-384 with SANs of every kind). */
function opensslCertificates(): Buffer[] {
  const dir = mkdtempSync(join(tmpdir(), 'pg-der-'));
  try {
    const ext = join(dir, 'ext.cnf');
    writeFileSync(ext, 'subjectAltName=URI:spiffe://acme/x,DNS:a.example,email:a@acme.example,IP:10.1.2.3,IP:2001:db8::1\nextendedKeyUsage=clientAuth\n');
    const out: Buffer[] = [];
    for (const [name, key] of [['rsa', ['rsa:2048']], ['ed', ['ed25519']], ['p384', ['ec', '-pkeyopt', 'ec_paramgen_curve:P-384']]] as const) {
      execFileSync('openssl', ['req', '-x509', '-newkey', ...key, '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`), '-subj', `/O=Acme/CN=${name} client`, '-days', '2', '-addext', `subjectAltName=URI:spiffe://acme/${name},DNS:${name}.example,email:${name}@acme.example,IP:10.1.2.3,IP:2001:db8::1`, '-outform', 'DER'], { stdio: 'ignore' });
      out.push(readFileSync(join(dir, `${name}.pem`)));
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('identity/der-certificate: first sight of a certificate without OpenSSL, never laxer than it', function () {
  this.timeout(120_000);
  const seeds: Buffer[] = [];

  before(async () => {
    const root = await createCa();
    const inter = await createCa({ parent: root, subject: 'CN=DER Issuing CA,O=Acme' });
    seeds.push(root.der, inter.der);
    seeds.push((await issueCertificate({ ca: inter, sans: { uri: ['spiffe://acme/a'], dns: ['a.example'], ip: ['10.0.0.1', '::1'], email: ['a@acme.example'] } })).der);
    seeds.push((await issueCertificate({ ca: root, subject: 'CN=no-sans,O=Acme' })).der);
    seeds.push(...opensslCertificates());
  });

  it('reads every seed certificate, and the facts agree with the reference decoders', () => {
    for (const der of seeds) {
      assert.ok(opensslTakes(der));
      const r = decodeCertificate(pem(der));
      assert.ok(r.ok, r.ok ? '' : r.error);
      assert.deepEqual(decoderDifferences(der), []);
    }
  });

  it('never takes a mutated or cut certificate OpenSSL refuses; where both take one, the facts agree', () => {
    let seed = Number(process.env['DER_FUZZ_SEED'] ?? 0x5eed);
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let taken = 0;
    let refusedByUs = 0;
    let compared = 0;
    for (let i = 0; i < 6000; i++) {
      const base = seeds[i % seeds.length]!;
      let b = Buffer.from(base);
      const flips = 1 + rnd(3);
      for (let k = 0; k < flips; k++) b[rnd(b.length)] = rnd(256);
      if (i % 10 === 0) b = b.subarray(0, rnd(b.length)); // cut short
      const ours = decodeCertificate(pem(b));
      if (!ours.ok) {
        refusedByUs++;
        assert.match(ours.error, /^not a valid X\.509 certificate \(.+\)$|^certificate /, 'a refusal names what was wrong');
        continue;
      }
      assert.equal(opensslTakes(b), true, `taken here, refused by OpenSSL: mutation ${i} of seed ${i % seeds.length} (${b.toString('base64')})`);
      taken++;
      // The reference decoders are slow (pure JS): compare a sample.
      // (OpenSSL decides what is taken; @peculiar/x509 refuses some bytes both of them take, and then has no facts.)
      if (i % 8 === 0) {
        const differences = decoderDifferences(b).filter((d) => !d.startsWith('only the Node decoder accepts it'));
        assert.deepEqual(differences, [], `facts of mutation ${i}`);
        compared++;
      }
    }
    assert.ok(taken > 500 && refusedByUs > 500, `taken ${taken}, refused ${refusedByUs}: the mutations must reach both outcomes`);
    assert.ok(compared > 50);
  });

  it('refuses what RFC 5280 forbids even where OpenSSL is lenient, naming it', () => {
    const der = seeds[2]!;
    const ours = (b: Buffer) => {
      const r = decodeCertificate(pem(b));
      return r.ok ? 'ok' : r.error;
    };
    // Trailing bytes after the certificate.
    assert.match(ours(Buffer.concat([der, Buffer.from([0])])), /bytes after the certificate/);
    // The serial's first byte with the sign bit set: a negative serial.
    const serialAt = der.indexOf(0x02, 4 + (der[1]! & 0x80 ? (der[1]! & 0x7f) + 2 : 2) + 5); // INTEGER after [0] version
    const neg = Buffer.from(der);
    neg[serialAt + 2] = 0x80 | neg[serialAt + 2]!;
    assert.match(ours(neg), /serialNumber is negative/);
  });

  it('checks chain signatures on the pinned algorithms with the issuer key, and refuses a key of another type', async () => {
    const root = await createCa();
    const leaf = await issueCertificate({ ca: root, sans: { uri: ['spiffe://acme/chain'] } });
    const decode = (d: Uint8Array) => {
      const r = decodeCertificate(pem(d));
      if (!r.ok) throw new Error(r.error);
      return r.value;
    };
    const anchors = { roots: [decode(root.der)] };
    assert.equal(verifyChain(decode(leaf.der), [], anchors).ok, true);
    // The signature's last byte changed: the same certificate fields, a signature that does not verify.
    const forged = Buffer.from(leaf.der);
    forged[forged.length - 1] = forged[forged.length - 1]! ^ 0x01;
    const f = decodeCertificate(pem(forged));
    assert.ok(f.ok, 'a bad signature is not a parse error');
    assert.equal(verifyChain(f.value, [], anchors).ok, false);
    // An RSA "root" with the same subject cannot verify an ECDSA signature: key type pinned by the algorithm.
    const rsaRoot = decode(seeds[4]!);
    assert.equal(verifyChain(decode(leaf.der), [], { roots: [{ ...rsaRoot, facts: { ...rsaRoot.facts, subject: decode(leaf.der).facts.issuer } }] }).ok, false);
  });
});
