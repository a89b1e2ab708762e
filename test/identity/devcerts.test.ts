/**
 * The dev certificate kit: certificates that a real TLS stack accepts (node:tls
 * with client authentication, like curl against the gateway), chains Node's own
 * X509 code verifies, XFCC elements in Envoy's exact shape, and the CLI.
 */
import assert from 'node:assert/strict';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createCa, issueCertificate, loadCa, toXfcc, urlEncodePem } from '../../ext-authz/src/devcerts/generate.js';
import { parseXfcc } from '../../ext-authz/src/identity/xfcc.js';

describe('devcerts', function () {
  this.timeout(30_000);

  it('server and client certificates complete a mutual TLS handshake through an intermediate', async () => {
    const root = await createCa();
    const inter = await createCa({ parent: root });
    const server = await issueCertificate({ ca: root, sans: { dns: ['localhost'], ip: ['127.0.0.1'] }, usage: 'server' });
    const client = await issueCertificate({ ca: inter, sans: { uri: ['spiffe://partners.example.com/org/acme/user/alice'], email: ['alice@acme.example'] } });
    const srv = tls.createServer({ cert: server.pem, key: server.keyPem, ca: root.pem, requestCert: true, rejectUnauthorized: true }, (socket) => {
      const peer = socket.getPeerCertificate();
      socket.end(`${peer.subjectaltname}`);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const port = (srv.address() as AddressInfo).port;
      const reply = await new Promise<string>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: root.pem, cert: client.chainPem, key: client.keyPem }, () => {
          let data = '';
          s.on('data', (d) => (data += d));
          s.on('end', () => resolve(data));
        });
        s.on('error', reject);
      });
      assert.match(reply, /URI:spiffe:\/\/partners\.example\.com\/org\/acme\/user\/alice/);
      assert.match(reply, /email:alice@acme\.example/);
    } finally {
      srv.close();
    }
  });

  it("Node's X509 agrees: issuers, signatures, CA flags, SANs, fingerprint; expired dates are honoured", async () => {
    const root = await createCa();
    const inter = await createCa({ parent: root, subject: 'CN=Inter' });
    const leaf = await issueCertificate({ ca: inter, sans: { dns: ['x.example'] }, notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2020-02-01T00:00:00Z') });
    const [r, i, l] = [root, inter, leaf].map((c) => new NodeX509(c.pem)) as [NodeX509, NodeX509, NodeX509];
    assert.ok(r.ca && i.ca && !l.ca);
    assert.ok(l.checkIssued(i) && l.verify(i.publicKey));
    assert.ok(i.checkIssued(r) && i.verify(r.publicKey));
    assert.equal(l.fingerprint256.replace(/:/g, '').toLowerCase(), leaf.fingerprint);
    assert.equal(l.subjectAltName, 'DNS:x.example');
    assert.equal(new Date(l.validTo).toISOString(), '2020-02-01T00:00:00.000Z');
    assert.equal(leaf.chainPem, leaf.pem + inter.pem, 'a client presents leaf + intermediate, not the root');
    assert.equal(inter.chainPem, inter.pem);
  });

  it('toXfcc writes the element exactly as Envoy SANITIZE_SET does', async () => {
    const root = await createCa();
    const c = await issueCertificate({ ca: root, subject: 'CN=alice,O=Acme\\, Inc.', sans: { uri: ['spiffe://a/b', 'spiffe://c/d'], dns: ['a.example'] } });
    const x = toXfcc(c, { by: ['spiffe://cluster.local/ns/istio-system/sa/gw'] });
    const keys = x.match(/(?:^|;)([A-Za-z]+)=/g)!.map((k) => k.replace(/[;=]/g, ''));
    assert.deepEqual(keys, ['By', 'Hash', 'Cert', 'Subject', 'URI', 'URI', 'DNS']);
    assert.ok(x.includes(`Hash=${c.fingerprint};`));
    // Envoy's encoding: only newline, space, +, / and = are escaped.
    const encoded = urlEncodePem(c.pem);
    assert.ok(x.includes(`Cert="${encoded}"`));
    assert.doesNotMatch(encoded, /[\n +/=]/);
    assert.equal(decodeURIComponent(encoded), c.pem);
    assert.ok(x.includes('Subject="O=Acme\\, Inc.,CN=alice"'));
    const parsed = parseXfcc(x);
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.elements[0]!.uri, ['spiffe://a/b', 'spiffe://c/d']);
    // A certificate without URI SANs gets the empty URI= Envoy writes.
    const dnsOnly = await issueCertificate({ ca: root, sans: { dns: ['b.example'] } });
    assert.match(toXfcc(dnsOnly), /;URI=;DNS=b\.example$/);
  });

  it('loadCa re-reads a written CA and keeps issuing certificates that chain to it', async () => {
    const root = await createCa();
    const again = await loadCa(root.pem, root.keyPem);
    assert.equal(again.fingerprint, root.fingerprint);
    const leaf = await issueCertificate({ ca: again, sans: { dns: ['y.example'] } });
    assert.ok(new NodeX509(leaf.pem).verify(new NodeX509(root.pem).publicKey));
  });

  it('npm run certs writes PEM files (keys 0600) and reuses the CA on a second run', () => {
    const out = mkdtempSync(join(tmpdir(), 'passgate-certs-'));
    try {
      const run = () => execFileSync(process.execPath, ['--import', 'tsx', 'ext-authz/src/devcerts/cli.ts', '--out', out], { encoding: 'utf8' });
      run();
      const ca1 = readFileSync(join(out, 'ca.pem'), 'utf8');
      for (const f of ['ca.pem', 'server.pem', 'server-key.pem', 'client.pem', 'client-key.pem', 'client-dns.pem', 'client-email.pem', 'client.xfcc']) {
        assert.ok(statSync(join(out, f)).size > 0, f);
      }
      assert.equal(statSync(join(out, 'client-key.pem')).mode & 0o777, 0o600);
      const client = new NodeX509(readFileSync(join(out, 'client.pem'), 'utf8'));
      assert.match(client.subjectAltName ?? '', /URI:spiffe:\/\/partners\.example\.com\/org\/acme\/user\/alice/);
      assert.match(client.subjectAltName ?? '', /DNS:alice\.acme\.example\.com/);
      assert.match(client.subjectAltName ?? '', /email:alice@acme\.example\.com/);
      const server = new NodeX509(readFileSync(join(out, 'server.pem'), 'utf8'));
      assert.ok(server.checkHost('localhost') && server.checkIP('127.0.0.1'));
      run();
      assert.equal(readFileSync(join(out, 'ca.pem'), 'utf8'), ca1, 'the CA is kept so clients that trust it keep working');
      assert.ok(new NodeX509(readFileSync(join(out, 'client.pem'), 'utf8')).verify(new NodeX509(ca1).publicKey));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
