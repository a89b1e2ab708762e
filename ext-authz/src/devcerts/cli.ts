/**
 * `npm run certs [-- --out DIR] [-- --new-ca]`: writes development PEM files
 * (git-ignored `.dev-certs/` by default) for trying the secure gateway:
 *
 *   ca.pem / ca-key.pem           dev root CA (kept across runs unless --new-ca, so trust stays valid)
 *   server.pem / server-key.pem   localhost + 127.0.0.1 + ::1, serverAuth
 *   client.pem / client-key.pem   SPIFFE URI + DNS + email SANs, clientAuth
 *   client-dns.pem / -key.pem     DNS SAN only (a service)
 *   client-email.pem / -key.pem   email SAN only (a developer)
 *   *.xfcc                        the XFCC element an Istio SANITIZE_SET gateway would forward
 *
 *   curl --cert .dev-certs/client.pem --key .dev-certs/client-key.pem --cacert .dev-certs/ca.pem https://localhost:8443/partner/...
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createCa, issueCertificate, loadCa, toXfcc, type IssuedCertificate } from './generate.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
}

async function main(): Promise<void> {
  const out = resolve(arg('--out') ?? '.dev-certs');
  const newCa = process.argv.includes('--new-ca');
  mkdirSync(out, { recursive: true, mode: 0o700 });
  const caPath = join(out, 'ca.pem');
  const caKeyPath = join(out, 'ca-key.pem');
  const ca =
    !newCa && existsSync(caPath) && existsSync(caKeyPath)
      ? await loadCa(readFileSync(caPath, 'utf8'), readFileSync(caKeyPath, 'utf8'))
      : await createCa({ subject: 'CN=Passgate Dev Root CA,O=Passgate Dev' });
  const write = (name: string, c: IssuedCertificate, xfcc = false) => {
    writeFileSync(join(out, `${name}.pem`), c.chainPem);
    writeFileSync(join(out, `${name}-key.pem`), c.keyPem, { mode: 0o600 });
    chmodSync(join(out, `${name}-key.pem`), 0o600);
    if (xfcc) writeFileSync(join(out, `${name}.xfcc`), `${toXfcc(c)}\n`);
  };
  writeFileSync(caPath, ca.pem);
  writeFileSync(caKeyPath, ca.keyPem, { mode: 0o600 });
  const days = (n: number) => new Date(Date.now() + n * 86_400_000);
  write('server', await issueCertificate({ ca, subject: 'CN=localhost', sans: { dns: ['localhost'], ip: ['127.0.0.1', '::1'] }, usage: 'server', notAfter: days(90) }));
  write(
    'client',
    await issueCertificate({
      ca,
      subject: 'CN=alice,O=Acme',
      sans: { uri: ['spiffe://partners.example.com/org/acme/user/alice'], dns: ['alice.acme.example.com'], email: ['alice@acme.example.com'] },
      notAfter: days(90),
    }),
    true,
  );
  write('client-dns', await issueCertificate({ ca, subject: 'CN=billing.acme.example.com', sans: { dns: ['billing.acme.example.com'] }, notAfter: days(90) }), true);
  write('client-email', await issueCertificate({ ca, subject: 'CN=dev', sans: { email: ['dev@passgate.dev'] }, notAfter: days(90) }), true);
  process.stdout.write(
    `dev certificates written to ${out}\n` +
      `  CA fingerprint (sha256): ${ca.fingerprint}\n` +
      `  try: curl --cert ${join(out, 'client.pem')} --key ${join(out, 'client-key.pem')} --cacert ${caPath} https://localhost:8443/partner/hello\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`certs: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
