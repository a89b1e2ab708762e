/**
 * Unit level: certificate decoding and its cache, SAN → identity mapping,
 * and the mtls stage run directly on a CheckContext to observe what the
 * gRPC answer does not show (FDS reports, certificate facts, the warm path
 * staying synchronous).
 */
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { createCa, issueCertificate, toXfcc, urlEncodePem, type CertificateAuthority, type IssuedCertificate } from '../../ext-authz/src/devcerts/generate.js';
import { CertificateCache, decodeCertificate, type CertificateFacts } from '../../ext-authz/src/identity/certificate.js';
import { compileRules, mapIdentity, sanSourceOf } from '../../ext-authz/src/identity/mapping.js';
import { mappingRuleSchema } from '../../ext-authz/src/identity/config.js';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import type { RouteTable } from '../../ext-authz/src/routing/route-table.js';
import { assemble, type Assembled } from '../../ext-authz/src/server/assemble.js';
import { identityCapability } from '../../ext-authz/src/identity/capability.js';
import { CERTIFICATE } from '../../ext-authz/src/identity/facts.js';
import { CERT_FINGERPRINT } from '../../ext-authz/src/pipeline/facts.js';
import { Metrics } from '../../ext-authz/src/observability/metrics.js';
import { CheckContext } from '../../ext-authz/src/pipeline/context.js';
import { toRequestView } from '../../ext-authz/src/pipeline/request-view.js';
import { httpCheck } from '../support/service.js';

describe('identity: certificates, mapping and the mtls stage', function () {
  this.timeout(20_000);
  let root: CertificateAuthority;
  let alice: IssuedCertificate;
  let multi: IssuedCertificate;
  let bare: IssuedCertificate;

  before(async () => {
    root = await createCa();
    alice = await issueCertificate({ ca: root, sans: { uri: ['spiffe://partners.example.com/org/acme/user/alice'] } });
    multi = await issueCertificate({
      ca: root,
      subject: 'CN=multi,OU=Ops,O=Acme',
      sans: { uri: ['https://not-spiffe.example', 'spiffe://td/ns/a/sa/b'], dns: ['a.example', 'b.example'], email: ['m@acme.example'], ip: ['192.0.2.1', '2001:db8::1'] },
    });
    bare = await issueCertificate({ ca: root, subject: 'CN=no-sans,O=Acme' });
  });

  describe('decoding', () => {
    it('reads every SAN shape, subject and issuer in RFC 2253, serial, validity and the SHA-256 fingerprint', () => {
      const r = decodeCertificate(urlEncodePem(multi.pem));
      assert.ok(r.ok, r.ok ? '' : r.error);
      const f = r.value.facts;
      assert.deepEqual(f.sans, {
        uri: ['https://not-spiffe.example', 'spiffe://td/ns/a/sa/b'],
        dns: ['a.example', 'b.example'],
        email: ['m@acme.example'],
        ip: ['192.0.2.1', '2001:db8::1'],
      });
      assert.deepEqual(f.spiffe, ['spiffe://td/ns/a/sa/b']);
      assert.equal(f.subject, 'O=Acme,OU=Ops,CN=multi');
      assert.equal(f.issuer, 'CN=Passgate Dev Root CA');
      assert.equal(f.fingerprint, multi.fingerprint);
      assert.equal(f.serial, multi.serial);
      assert.equal(f.notAfter, multi.cert.notAfter.getTime());
      assert.equal(f.principal, 'https://not-spiffe.example');
      // Plain (not URL-encoded) PEM decodes to the same facts.
      const plain = decodeCertificate(multi.pem);
      assert.ok(plain.ok && plain.value.facts.fingerprint === f.fingerprint);
    });
    it("Envoy's principal falls back to the first DNS SAN, then the subject", async () => {
      const dnsOnly = await issueCertificate({ ca: root, sans: { dns: ['svc.example'] } });
      const d = decodeCertificate(dnsOnly.pem);
      assert.ok(d.ok && d.value.facts.principal === 'svc.example');
      const b = decodeCertificate(bare.pem);
      assert.ok(b.ok && b.value.facts.principal === 'O=Acme,CN=no-sans');
    });
    it('rejects empty, non-PEM, two certificates, bad base64 and non-certificate DER with a reason', () => {
      const bad = (s: string) => {
        const r = decodeCertificate(s);
        assert.ok(!r.ok);
        return r.error;
      };
      assert.match(bad(''), /empty/);
      assert.match(bad('hello'), /not a PEM CERTIFICATE block/);
      assert.match(bad(alice.pem + multi.pem), /more than one certificate/);
      assert.match(bad('-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n'), /not a PEM/);
      assert.match(bad('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), /not a valid X.509 certificate/);
      assert.match(bad('%E0%A4%A'), /URL encoding/);
    });
    it('the cache decodes a certificate once and then answers from memory (failures too), bounded by max', () => {
      const cache = new CertificateCache(16);
      const key = urlEncodePem(alice.pem);
      const first = cache.get(key);
      const second = cache.get(key);
      assert.equal(first, second);
      assert.equal(cache.misses, 1);
      assert.equal(cache.hits, 1);
      cache.get('garbage');
      cache.get('garbage');
      assert.equal(cache.misses, 2);
      for (let i = 0; i < 40; i++) cache.get(`junk-${i}`);
      assert.equal(cache.size, 16);
    });
    it('the cache is bounded by bytes (each key counted), and an oversized input is refused without being kept', () => {
      const cache = new CertificateCache(10_000, 256 * 1024);
      const pem = urlEncodePem(alice.pem);
      // Distinct inputs of a real certificate's size: well over the byte budget in all.
      for (let i = 0; i < 200; i++) cache.get(`${pem}${'%20'.repeat(i)}`);
      assert.ok(cache.bytes <= 256 * 1024, `${cache.bytes} bytes held`);
      assert.ok(cache.size < 200, `${cache.size} entries held`);
      const before = cache.size;
      const huge = cache.get('A'.repeat(65 * 1024));
      assert.equal(huge.result.ok, false);
      assert.match(huge.result.ok ? '' : huge.result.error, /over 65536/);
      assert.equal(cache.size, before, 'an oversized input is not cached');
    });
    it('resize keeps the most recently used entries that fit', () => {
      const cache = new CertificateCache(16);
      for (let i = 0; i < 16; i++) cache.get(`junk-${i}`);
      cache.get('junk-0'); // now the most recent
      cache.resize(4);
      assert.equal(cache.size, 4);
      assert.equal(cache.max, 4);
      const misses = cache.misses;
      for (const k of ['junk-0', 'junk-15', 'junk-14', 'junk-13']) cache.get(k);
      assert.equal(cache.misses, misses, 'the four most recent survive');
      cache.get('junk-1');
      assert.equal(cache.misses, misses + 1, 'older ones were dropped');
    });
    it('the fingerprint index never lets a claimed Hash select another certificate', () => {
      const cache = new CertificateCache(16);
      const a = urlEncodePem(alice.pem);
      const m = urlEncodePem(multi.pem);
      const first = cache.get(a, alice.fingerprint);
      assert.equal(cache.get(a, alice.fingerprint), first, 'indexed by its real fingerprint');
      const forged = cache.get(m, alice.fingerprint);
      assert.ok(forged.result.ok && forged.result.value.facts.fingerprint === multi.fingerprint);
      // And a claimed fingerprint that is not the real one is never indexed.
      cache.get(urlEncodePem(bare.pem), multi.fingerprint);
      const again = cache.get(m, multi.fingerprint);
      assert.ok(again.result.ok && again.result.value.facts.fingerprint === multi.fingerprint);
    });
  });

  describe('mapping rules', () => {
    const facts = (c: IssuedCertificate): CertificateFacts => {
      const r = decodeCertificate(c.pem);
      assert.ok(r.ok);
      return r.value.facts;
    };
    const compile = (rules: unknown[]) => compileRules(rules.map((r) => mappingRuleSchema.parse(r)), 'identity.mtls.rules');

    it('exact, prefix, suffix and regex; first matching rule wins; builtins render', () => {
      const rules = compile([
        { name: 'exact', uri: { exact: 'spiffe://td/ns/a/sa/b' }, identity: { subject: 'svc-b', kind: 'service', attributes: { fp: '{fingerprint}', serial: '{serial}' } } },
        { name: 'prefix', uri: { prefix: 'spiffe://td/ns/' }, identity: { subject: 'ns:{rest}', kind: 'service' } },
        { name: 'email', email: { suffix: '@acme.example' }, identity: { subject: '{rest}', kind: 'user', groups: ['acme', 'mail:{san}'] } },
        { name: 'subject', subject: { regex: 'O=(?<o>[^,]+),CN=(?<cn>.+)' }, identity: { subject: '{cn}', kind: 'user', attributes: { org: '{o}' } } },
      ]);
      const m = mapIdentity(rules, sanSourceOf(facts(multi)), facts(multi));
      assert.equal(m?.rule, 'exact');
      assert.equal(m?.identity.attributes['fp'], multi.fingerprint);
      assert.equal(m?.identity.attributes['serial'], multi.serial);
      const withoutExact = rules.slice(1);
      assert.equal(mapIdentity(withoutExact, sanSourceOf(facts(multi)), facts(multi))?.identity.subject, 'ns:a/sa/b');
      const mail = mapIdentity(rules.slice(2), sanSourceOf(facts(multi)), facts(multi));
      assert.deepEqual([mail?.identity.subject, mail?.identity.groups], ['m', ['acme', 'mail:m@acme.example']]);
      const subj = mapIdentity(rules.slice(3), sanSourceOf(facts(bare)), facts(bare));
      assert.deepEqual([subj?.identity.subject, subj?.identity.attributes], ['no-sans', { org: 'Acme' }]);
      assert.equal(subj?.identity.source, 'mtls');
    });

    it('regexes match the whole SAN, never a substring', () => {
      const rules = compile([{ uri: { regex: 'spiffe://partners\\.example\\.com/org/(?<org>[^/]+)/user/(?<user>[^/]+)' }, identity: { subject: '{user}@{org}', kind: 'user' } }]);
      const src = (uri: string) => ({ uri: [uri], dns: [], email: [], ip: [], subject: '' });
      assert.equal(mapIdentity(rules, src('spiffe://partners.example.com/org/acme/user/alice'), undefined)?.identity.subject, 'alice@acme');
      assert.equal(mapIdentity(rules, src('spiffe://partners.example.com/org/acme/user/alice/extra'), undefined), undefined);
      assert.equal(mapIdentity(rules, src('x-spiffe://partners.example.com/org/acme/user/alice'), undefined), undefined);
    });

    it('an unknown placeholder is a compile error naming the key', () => {
      assert.throws(
        () => compile([{ uri: { prefix: 'a' }, identity: { subject: '{user}', kind: 'user', groups: ['{nope}'] } }]),
        /identity\.mtls\.rules\[0\]\.identity\.subject: unknown placeholder \{user\}.*identity\.mtls\.rules\[0\]\.identity\.groups\[0\]: unknown placeholder \{nope\}/s,
      );
    });
  });

  describe('the mtls stage on a CheckContext', () => {
    let defaultTable: RouteTable;
    let assembled: Assembled;
    const configYaml = (cacheSize = 10_000) => `
identity:
  mtls:
    cacheSize: ${cacheSize}
    rules:
      - uri: { regex: "spiffe://partners\\\\.example\\\\.com/org/(?<org>[^/]+)/user/(?<user>[^/]+)" }
        identity: { subject: "{user}@{org}", kind: user, attributes: { org: "{org}" } }
gateways:
  secure: { kind: secure, trustXfcc: true, routes: [{ name: r, stages: [mtls] }] }
  optional: { kind: secure, trustXfcc: true, routes: [{ name: o, stages: [{ type: mtls, optional: true }] }] }
`;
    const compile = (yaml: string) => assembled.reload(parseConfigText(yaml, 't.yaml'));
    before(async () => {
      assembled = await assemble(parseConfigText(configYaml(), 't.yaml'), { logger: pino({ level: 'silent' }), metrics: new Metrics(false) });
      defaultTable = assembled.table;
    });
    after(() => assembled.close());

    function runStage(opts: { xfcc?: string; gateway?: string; address?: string; principal?: string; peerCertificate?: string; table?: RouteTable }) {
      const req = httpCheck({
        gateway: opts.gateway ?? 'secure',
        headers: opts.xfcc ? { 'x-forwarded-client-cert': opts.xfcc } : {},
        sourceAddress: opts.address ?? '198.51.100.9',
        ...(opts.principal ? { principal: opts.principal } : {}),
      });
      if (opts.peerCertificate !== undefined) (req.attributes!.source as Record<string, unknown>)['certificate'] = opts.peerCertificate;
      const view = toRequestView(req);
      const table = opts.table ?? defaultTable;
      const gw = table.selectGateway(view)!;
      const route = table.selectRoute(gw, view);
      const ctx = new CheckContext(view, gw, route, Date.now() + 1000, 't', 0);
      return { ctx, result: route.stages[0]!.run(ctx) };
    }

    it('sets ctx.identity, the certificate facts and the audit; the warm path is synchronous', () => {
      const { ctx, result } = runStage({ xfcc: toXfcc(alice) });
      assert.ok(!(result instanceof Promise), 'no CA configured: no await needed');
      assert.equal((result as { kind: string }).kind, 'continue');
      assert.equal(ctx.identity?.subject, 'alice@acme');
      assert.deepEqual(ctx.identity?.attributes, { org: 'acme' });
      assert.equal(ctx.get(CERTIFICATE)?.fingerprint, alice.fingerprint);
      assert.equal(ctx.get(CERT_FINGERPRINT), alice.fingerprint);
      assert.equal((ctx.audit['mtls'] as Record<string, unknown>)['fingerprint'], alice.fingerprint);
      assert.deepEqual(ctx.outcomes, []);
      const cache = assembled.stateOf(identityCapability).certificates;
      const misses = cache.misses;
      runStage({ xfcc: toXfcc(alice) });
      assert.equal(cache.misses, misses, 'second sight must be a cache hit');
    });

    it('a verified XFCC header is kept by its text, and the time checks still run on every Check', async function () {
      this.timeout(10_000);
      // Within the default 60 s clock skew for about 1.5 s more: accepted first, then the very same header (kept,
      // not parsed again) is expired.
      const skewMs = 60_000;
      const brief = await issueCertificate({ ca: root, sans: { uri: ['spiffe://partners.example.com/org/acme/user/brief'] }, notBefore: new Date(Date.now() - 120_000), notAfter: new Date(Date.now() - skewMs + 1500) });
      const header = toXfcc(brief);
      const cache = assembled.stateOf(identityCapability).certificates;
      assert.equal((runStage({ xfcc: header }).result as { kind: string }).kind, 'continue');
      const hits = cache.hits;
      assert.equal((runStage({ xfcc: header }).result as { kind: string }).kind, 'continue');
      assert.equal(cache.hits, hits + 1, 'the kept header still counts as a certificate cache hit');
      await new Promise((r) => setTimeout(r, Math.max(0, brief.cert.notAfter.getTime() + skewMs - Date.now()) + 1100));
      const later = runStage({ xfcc: header });
      assert.equal((later.result as { denial?: { reason: string } }).denial?.reason, 'certificate_expired');
      // One character changed is another header: checked afresh, and its Hash no longer matches.
      const tampered = header.replace(/Hash=([0-9a-f])/, (_m, c: string) => `Hash=${c === '0' ? '1' : '0'}`);
      assert.notEqual(tampered, header);
      assert.equal((runStage({ xfcc: tampered }).result as { denial?: { reason: string } }).denial?.reason, 'xfcc_hash_mismatch');
    });

    it('reports auth_failure for the user (authentic certificate, no CA here), the certificate fingerprint and the source IP on a bad certificate', async () => {
      const expired = await issueCertificate({ ca: root, sans: { uri: ['spiffe://partners.example.com/org/acme/user/old'] }, notBefore: new Date(Date.now() - 5e8), notAfter: new Date(Date.now() - 4e8) });
      const { ctx, result } = runStage({ xfcc: toXfcc(expired) });
      assert.equal((result as { kind: string; denial?: { reason: string } }).denial?.reason, 'certificate_expired');
      assert.deepEqual(ctx.outcomes, [
        { event: 'auth_failure', subjectKind: 'user', subject: 'old@acme' },
        { event: 'auth_failure', subjectKind: 'cert', subject: expired.fingerprint },
        { event: 'auth_failure', subjectKind: 'ip', subject: '198.51.100.9' },
      ]);
      assert.equal(ctx.identity, undefined);
    });

    it('reports an unknown certificate and a malformed header (IP only when no fingerprint is known)', () => {
      const unknown = runStage({ xfcc: toXfcc(multi) });
      assert.equal((unknown.result as { denial?: { reason: string; status: number } }).denial?.status, 403);
      assert.deepEqual(
        unknown.ctx.outcomes.map((o) => o.subjectKind),
        ['cert', 'ip'],
      );
      const malformed = runStage({ xfcc: 'Subject="unterminated' });
      assert.deepEqual(malformed.ctx.outcomes, [{ event: 'auth_failure', subjectKind: 'ip', subject: '198.51.100.9' }]);
    });

    it('no certificate is not an auth failure, and an optional stage continues without identity', () => {
      const required = runStage({});
      assert.equal((required.result as { denial?: { reason: string } }).denial?.reason, 'client_certificate_required');
      assert.deepEqual(required.ctx.outcomes, []);
      const optional = runStage({ gateway: 'optional' });
      assert.equal((optional.result as { kind: string }).kind, 'continue');
      assert.equal(optional.ctx.identity, undefined);
    });
    it('at an ingress the XFCC element must name the peer by its certificate\'s principal: reordering URI= cannot promote a second SAN', async () => {
      const first = 'spiffe://partners.example.com/org/acme/user/first';
      const second = 'spiffe://partners.example.com/org/acme/user/second';
      const two = await issueCertificate({ ca: root, sans: { uri: [first, second] } });
      const reordered = toXfcc(two).replace(`URI=${first};URI=${second}`, `URI=${second};URI=${first}`);
      assert.notEqual(reordered, toXfcc(two));
      // Envoy's principal for this certificate is its first URI SAN; a peer known as the second one is someone else.
      const forged = runStage({ principal: second, xfcc: reordered });
      assert.equal((forged.result as { denial?: { reason: string } }).denial?.reason, 'xfcc_peer_mismatch');
      assert.equal(forged.ctx.identity, undefined);
      const genuine = runStage({ principal: first, xfcc: reordered });
      assert.equal((genuine.result as { kind: string }).kind, 'continue');
      assert.equal(genuine.ctx.audit['mtls_via'], 'xfcc_matching_peer');
      assert.equal(genuine.ctx.identity?.subject, 'first@acme');
    });

    it('a peer certificate that does not decode is 401 bad_certificate, with or without an XFCC beside it', () => {
      for (const xfcc of [undefined, toXfcc(alice)]) {
        const { ctx, result } = runStage({ peerCertificate: 'hello%20world', ...(xfcc ? { xfcc } : {}) });
        assert.equal((result as { denial?: { reason: string } }).denial?.reason, 'bad_certificate', `xfcc: ${xfcc !== undefined}`);
        assert.match(String((ctx.audit['mtls'] as Record<string, unknown>)['error_detail']), /^peer certificate: /);
      }
    });

    it('a reload with another cacheSize resizes the one certificate cache and keeps what it holds', async () => {
      const shared = assembled.stateOf(identityCapability).certificates;
      runStage({ xfcc: toXfcc(alice) });
      const misses = shared.misses;
      const reloaded = await compile(configYaml(20));
      assert.equal(assembled.stateOf(identityCapability).certificates, shared, 'one cache per service, whatever the size');
      assert.equal(shared.max, 20);
      const again = runStage({ xfcc: toXfcc(alice), table: reloaded });
      assert.equal((again.result as { kind: string }).kind, 'continue');
      assert.equal(shared.misses, misses, 'the certificate decoded before the reload is still cached');
      await compile(configYaml());
      assert.equal(shared.max, 10_000);
    });
  });
});
