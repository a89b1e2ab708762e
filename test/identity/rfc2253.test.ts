/**
 * The RFC 2253 printer against the real thing: every expected string here is
 * printed by /usr/bin/openssl (`x509 -noout -subject -nameopt RFC2253`, the
 * XN_FLAG_RFC2253 output Envoy uses for source.principal and XFCC Subject)
 * from the very certificate bytes our printer reads. Then the same string
 * end to end: a certificate without SANs maps through a `subject` rule and
 * its principal is what Envoy would send.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { rfc2253Subject, toXfcc } from '../../ext-authz/src/devcerts/generate.js';
import { certificateNames, children, readTlv, rfc2253, rfc2253Issuer, tbsFields } from '../../ext-authz/src/identity/rfc2253.js';
import { decodeCertificate, type CertificateFacts } from '../../ext-authz/src/identity/certificate.js';
import { parseXfcc } from '../../ext-authz/src/identity/xfcc.js';
import { x509 } from '../../ext-authz/src/identity/x509.js';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { assemble } from '../../ext-authz/src/server/assemble.js';
import { Metrics } from '../../ext-authz/src/observability/metrics.js';
import { CheckContext } from '../../ext-authz/src/pipeline/context.js';
import { toRequestView } from '../../ext-authz/src/pipeline/request-view.js';
import { derToPem, peerCertificate, xfccElement } from '../../local-gateway/src/xfcc-writer.js';
import { httpCheck } from '../support/service.js';

const OPENSSL = '/usr/bin/openssl';

/** OpenSSL's own RFC 2253 line; only the newline is cut (a trailing `\ ` must survive). */
function opensslName(der: Buffer, which: 'subject' | 'issuer' = 'subject'): string {
  const out = execFileSync(OPENSSL, ['x509', '-inform', 'DER', '-noout', `-${which}`, '-nameopt', 'RFC2253'], { input: der, encoding: 'latin1', stdio: ['pipe', 'pipe', 'pipe'] });
  return out.replace(/\r?\n$/, '').replace(new RegExp(`^${which}=`), '');
}

interface OpensslCert {
  readonly der: Buffer;
  readonly pem: string;
  readonly subject: string;
}

function opensslCert(dir: string, name: string, subj: string, utf8 = false): OpensslCert {
  const key = join(dir, `${name}-key.pem`);
  const crt = join(dir, `${name}.pem`);
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', crt, '-days', '1', '-subj', subj, '-multivalue-rdn'];
  if (utf8) args.push('-utf8');
  execFileSync(OPENSSL, args, { stdio: 'ignore' });
  const pem = readFileSync(crt, 'utf8');
  const der = new X509Certificate(pem).raw;
  return { der, pem, subject: opensslName(der) };
}

// ---- a minimal DER writer, to put hand-made names into a real certificate ----

function tlv(tag: number, body: Uint8Array): Buffer {
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const values = [arcs[0]! * 40n + arcs[1]!, ...arcs.slice(2)];
  const bytes: number[] = [];
  for (const v of values) {
    const group: number[] = [Number(v & 0x7fn)];
    for (let r = v >> 7n; r > 0n; r >>= 7n) group.unshift(Number(r & 0x7fn) | 0x80);
    bytes.push(...group);
  }
  return tlv(0x06, Buffer.from(bytes));
}

type Value = Buffer | { tag: number; bytes: Buffer | string };
type Rdn = Array<[string, Value]>;

const utf8 = (s: string) => ({ tag: 0x0c, bytes: s });
const bmp = (s: string) => ({ tag: 0x1e, bytes: Buffer.from(s, 'utf16le').swap16() });
const universal = (s: string) => {
  const cps = [...s].map((c) => c.codePointAt(0)!);
  const b = Buffer.alloc(cps.length * 4);
  cps.forEach((c, i) => b.writeUInt32BE(c, i * 4));
  return { tag: 0x1c, bytes: b };
};

function nameDer(rdns: Rdn[]): Buffer {
  return tlv(
    0x30,
    Buffer.concat(
      rdns.map((rdn) =>
        tlv(
          0x31,
          Buffer.concat(
            rdn.map(([type, v]) => tlv(0x30, Buffer.concat([oid(type), Buffer.isBuffer(v) ? v : tlv(v.tag, typeof v.bytes === 'string' ? Buffer.from(v.bytes, 'utf8') : v.bytes)]))),
          ),
        ),
      ),
    ),
  );
}

/** The certificate with its subject (tbs field 5) and issuer (field 3) replaced; the signature no longer verifies, which printing ignores. */
function withNames(certDer: Buffer, subject: Buffer, issuer?: Buffer): Buffer {
  const cert = readTlv(certDer, 0);
  const [tbs, ...rest] = children(certDer, cert);
  const fields = children(certDer, tbs!).map((f) => certDer.subarray(f.start, f.end));
  const base = fields[0]![0] === 0xa0 ? 1 : 0;
  fields[base + 4] = subject;
  if (issuer) fields[base + 2] = issuer;
  return tlv(0x30, Buffer.concat([tlv(0x30, Buffer.concat(fields)), ...rest.map((t) => certDer.subarray(t.start, t.end))]));
}

const CN = '2.5.4.3';
const O = '2.5.4.10';
const OU = '2.5.4.11';

describe('identity: RFC 2253 printer (byte-for-byte against OpenSSL)', () => {
  let dir: string;
  let base: OpensslCert;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pg-rfc2253-'));
    base = opensslCert(dir, 'base', '/CN=base');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('subjects made by openssl req: multi-valued RDNs, every special character, spaces, #, UTF-8, emailAddress', () => {
    const cases: Array<{ subj: string; utf8?: boolean }> = [
      { subj: '/C=DE/O=Acme GmbH/OU=Payments/CN=svc.acme.example' },
      { subj: '/O=Acme\\, Inc.; "Ltd" <x>/CN=#hash+UID=u1/OU=trail ' },
      { subj: '/DC=example/DC=com/CN=Zoë Jürgens/emailAddress=z@example.com', utf8: true },
      { subj: '/CN=a\\\\b=c' },
      { subj: '/CN=x+CN=y+OU=z/O=Multi+L=Berlin/C=DE' },
      { subj: '/O=a,b+c"d\\\\e<f>g;h=i/OU=  two leading/CN=two trailing  ' },
      { subj: '/CN=# not a hex dump/OU=a#b/O=#' },
      { subj: '/serialNumber=1234/title=Dr/GN=Zoë/SN=Ü/initials=ZJ/CN=日本語 テスト/street=Hauptstraße 1', utf8: true },
      { subj: '/emailAddress=first@example.com/CN=svc/emailAddress=second@example.com' },
    ];
    cases.forEach((c, i) => {
      const cert = opensslCert(dir, `s${i}`, c.subj, c.utf8);
      const node = new X509Certificate(cert.pem);
      assert.equal(rfc2253(node), cert.subject, `node X509Certificate, case ${c.subj}`);
      assert.equal(rfc2253(new x509.X509Certificate(cert.pem)), cert.subject, `@peculiar/x509, case ${c.subj}`);
      assert.equal(certificateNames(cert.der).subject, cert.subject);
      assert.equal(rfc2253Issuer(node), opensslName(cert.der, 'issuer'));
      // The bare Name DER prints the same.
      const { subject } = tbsFields(cert.der);
      assert.equal(rfc2253(cert.der.subarray(subject.start, subject.end)), cert.subject);
    });
  });

  it('hand-made names: string types, control bytes, unknown OIDs, non-string values, one-character quirks', () => {
    const cases: Array<{ what: string; rdns: Rdn[] }> = [
      { what: 'lone #', rdns: [[[CN, utf8('#')]]] },
      { what: 'lone space', rdns: [[[CN, utf8(' ')]]] },
      { what: 'leading # and space, trailing space', rdns: [[[CN, utf8('# x ')]], [[O, utf8(' #')]]] },
      { what: 'only spaces', rdns: [[[CN, utf8('   ')]]] },
      { what: 'control bytes and DEL', rdns: [[[CN, utf8('a\u0001b\u007fc\u001f\td\ne')]]] },
      { what: 'BMPString', rdns: [[[CN, bmp(' Zoë ☃,x ')]]] },
      { what: 'UniversalString incl. an astral character', rdns: [[[CN, universal(' 😀é+')]]] },
      { what: 'T61String high bytes (latin1 → UTF-8)', rdns: [[[CN, { tag: 0x14, bytes: Buffer.from([0xe9, 0x3b, 0x20]) }]]] },
      { what: 'PrintableString / IA5 / Numeric', rdns: [[[CN, { tag: 0x13, bytes: 'a b' }]], [['1.2.840.113549.1.9.1', { tag: 0x16, bytes: 'x+y@example.com' }]], [['2.5.4.5', { tag: 0x12, bytes: '0123 45' }]]] },
      { what: 'DC and UID', rdns: [[['0.9.2342.19200300.100.1.25', { tag: 0x16, bytes: 'com' }]], [['0.9.2342.19200300.100.1.25', { tag: 0x16, bytes: 'example' }]], [['0.9.2342.19200300.100.1.1', utf8('u=1')]]] },
      { what: 'unknown OID: dotted, value dumped', rdns: [[['1.2.3.4', utf8('x')]], [[CN, utf8('y')]]] },
      { what: 'unknown OID with big arcs', rdns: [[['2.999.18446744073709551617.1', { tag: 0x13, bytes: 'z' }]]] },
      { what: 'OID longer than 79 characters', rdns: [[[`1.3.6.1.4.1.${'123456789.'.repeat(8)}1`, utf8('long')]]] },
      { what: 'known OID, BIT STRING and SEQUENCE values', rdns: [[[CN, tlv(0x03, Buffer.from([0x00, 0xab]))]], [[OU, tlv(0x30, tlv(0x0c, Buffer.from('in')))]]] },
      { what: 'three-valued RDN between plain ones', rdns: [[[O, utf8('Org')]], [[CN, utf8('a')], [OU, utf8('b')], ['2.5.4.7', utf8('c')]], [[CN, utf8('z')]]] },
      { what: 'empty name', rdns: [] },
    ];
    const unreadable: string[] = [];
    for (const c of cases) {
      const name = nameDer(c.rdns);
      const cert = withNames(base.der, name, nameDer([[[CN, utf8('Issuer, "quoted"')]], ...c.rdns]));
      let expected: string;
      try {
        expected = opensslName(cert);
      } catch {
        unreadable.push(c.what);
        continue;
      }
      assert.equal(rfc2253(name), expected, c.what);
      assert.equal(certificateNames(cert).subject, expected, `${c.what} (in a certificate)`);
      assert.equal(certificateNames(cert).issuer, opensslName(cert, 'issuer'), `${c.what} (issuer)`);
    }
    assert.deepEqual(unreadable, [], 'openssl could not read these cases');
  });

  it('a few expectations spelled out (so a wrong openssl on PATH cannot hide a regression)', () => {
    assert.equal(rfc2253(nameDer([[[O, utf8('Acme')]], [[CN, utf8('a"b\\c')], [OU, utf8('x')]]])), 'OU=x+CN=a\\"b\\\\c,O=Acme');
    assert.equal(rfc2253(nameDer([[[CN, utf8('Zoë')]]])), 'CN=Zo\\C3\\AB');
    assert.equal(rfc2253(nameDer([[[CN, utf8('#1 ')]]])), 'CN=\\#1\\ ');
    assert.equal(rfc2253(nameDer([[['1.2.3.4', utf8('x')]]])), '1.2.3.4=#0C0178');
  });

  it('strings OpenSSL refuses to decode are refused here too (the certificate is rejected, not printed differently)', () => {
    const refused: Array<{ what: string; value: Value }> = [
      { what: 'UTF8String that is not UTF-8', value: { tag: 0x0c, bytes: Buffer.from([0xff, 0x41, 0xc3, 0x20]) } },
      { what: 'BMPString with a surrogate pair', value: bmp('a😀') },
      { what: 'UniversalString with a surrogate', value: { tag: 0x1c, bytes: Buffer.from([0, 0, 0xd8, 0x00]) } },
      { what: 'UniversalString past U+10FFFF', value: { tag: 0x1c, bytes: Buffer.from([0, 0x11, 0, 0]) } },
    ];
    for (const r of refused) {
      const name = nameDer([[[CN, r.value]]]);
      assert.throws(() => opensslName(withNames(base.der, name)), Error, `openssl accepts ${r.what}`);
      assert.throws(() => rfc2253(name), /not valid UTF-8|not a character/, r.what);
      const d = decodeCertificate(derToPem(withNames(base.der, name)));
      assert.ok(!d.ok, `${r.what} must not decode`);
    }
  });

  it('rejects malformed DER instead of printing something', () => {
    assert.throws(() => rfc2253(Buffer.from([0x30, 0x05, 0x31, 0x03])), /runs past|truncated/);
    assert.throws(() => rfc2253(nameDer([[[CN, { tag: 0x1e, bytes: Buffer.from([0x00]) }]]])), /BMPString of 1 bytes/);
    assert.throws(() => rfc2253(Buffer.from([0x04, 0x00])), /expected a Name/);
  });
});

describe('identity: a certificate without SANs is known by its subject, as Envoy prints it', () => {
  let dir: string;
  let cert: OpensslCert;
  let issued: { cert: x509.X509Certificate; pem: string; fingerprint: string; chainPem: string };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pg-rfc2253-map-'));
    // Several RDNs, one multi-valued, with characters RFC 2253 escapes and UTF-8: no URI/DNS SAN.
    cert = opensslCert(dir, 'batch', '/C=DE/O=Acme\\, Inc./OU=Batch "Jobs"+OU=Ops/CN=nightly-export/emailAddress=ops@acme.example', false);
    const parsed = new x509.X509Certificate(cert.pem);
    issued = { cert: parsed, pem: cert.pem, fingerprint: sha256(cert.der), chainPem: cert.pem };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function sha256(der: Buffer): string {
    return new X509Certificate(der).fingerprint256.replace(/:/g, '').toLowerCase();
  }

  it('facts.subject / principal, the devcerts XFCC and the local gateway all carry OpenSSL’s string verbatim', () => {
    const envoyPrincipal = cert.subject;
    assert.equal(envoyPrincipal, 'emailAddress=ops@acme.example,CN=nightly-export,OU=Batch \\"Jobs\\"+OU=Ops,O=Acme\\, Inc.,C=DE');
    const r = decodeCertificate(cert.pem);
    assert.ok(r.ok, r.ok ? '' : r.error);
    assert.equal(r.value.facts.subject, envoyPrincipal);
    assert.equal(r.value.facts.principal, envoyPrincipal);
    assert.equal(r.value.facts.issuer, opensslName(cert.der, 'issuer'));
    assert.equal(rfc2253Subject(issued.cert), envoyPrincipal);
    // XFCC: Envoy puts the subject between quotes without escaping anything more.
    const xfcc = toXfcc(issued);
    assert.ok(xfcc.includes(`;Subject="${envoyPrincipal}";URI=`), xfcc);
    assert.equal(xfcc, xfccElement(peerCertificate(cert.der)));
    assert.equal(peerCertificate(cert.der).principal, envoyPrincipal);
    const parsed = parseXfcc(xfcc);
    assert.ok(parsed.ok);
    assert.equal(parsed.elements[0]!.subject, envoyPrincipal);
  });

  it('maps through a subject rule whether the certificate comes as XFCC, as source.principal, or both', async () => {
    const config = parseConfigText(
      `
identity:
  mtls:
    xfcc: { requireCert: false }
    rules:
      - subject: { exact: ${JSON.stringify(cert.subject)} }
        identity: { subject: nightly-export, kind: service }
gateways:
  secure: { kind: secure, trustXfcc: true, routes: [{ name: r, stages: [mtls] }] }
`,
      't.yaml',
    );
    const { table } = await assemble(config, { logger: pino({ level: 'silent' }), metrics: new Metrics(false) });
    const run = (opts: { xfcc?: string; principal?: string }) => {
      const req = httpCheck({ gateway: 'secure', headers: opts.xfcc ? { 'x-forwarded-client-cert': opts.xfcc } : {}, ...(opts.principal ? { principal: opts.principal } : {}) });
      const view = toRequestView(req);
      const gw = table.selectGateway(view)!;
      const route = table.selectRoute(gw, view);
      const ctx = new CheckContext(view, gw, route, Date.now() + 1000, 't', 0);
      const result = route.stages[0]!.run(ctx) as { kind: string; denial?: { reason: string; detail?: string } };
      return { ctx, result };
    };

    // This subject holds a quote (`Batch "Jobs"`): readers disagree on where a quoted XFCC value ends,
    // so such a certificate never authenticates through XFCC (issue 12), only as the peer.
    const viaXfcc = run({ xfcc: toXfcc(issued) });
    assert.equal(viaXfcc.result.kind, 'deny');
    assert.equal(viaXfcc.result.denial?.reason, 'xfcc_unsafe_certificate');

    const viaPrincipal = run({ principal: cert.subject });
    assert.equal(viaPrincipal.result.kind, 'continue', JSON.stringify(viaPrincipal.result.denial));
    assert.equal(viaPrincipal.ctx.identity?.subject, 'nightly-export');

    const both = run({ principal: cert.subject, xfcc: toXfcc(issued) });
    assert.equal(both.result.kind, 'deny');
    assert.equal(both.result.denial?.reason, 'xfcc_peer_mismatch');
    assert.match(both.result.denial?.detail ?? '', /xfcc_unsafe_certificate/);

    // The XFCC Subject alone (no Cert=) holding a quote is refused the same way.
    const subjectOnly = run({ xfcc: toXfcc(issued, { cert: false }) });
    assert.equal(subjectOnly.result.denial?.reason, 'xfcc_unsafe_certificate');

    // The @peculiar/x509 spelling (what the service used before) does not match.
    const other = run({ principal: new x509.X509Certificate(cert.pem).subject });
    assert.equal(other.result.denial?.reason, 'unknown_client_certificate');
  });
});
