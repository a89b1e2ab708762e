/**
 * End to end: a real PassgateService over gRPC, real certificates made in
 * the test (several SAN shapes, an intermediate, expired and untrusted ones),
 * and every bad input the issue lists. Each case asserts the HTTP status and
 * the precise reason in the audit line the core writes for the decision.
 */
import assert from 'node:assert/strict';
import { createCa, issueCertificate, toXfcc, urlEncodePem, type CertificateAuthority, type IssuedCertificate } from '../../ext-authz/src/devcerts/generate.js';
import { startService, httpCheck, type Running } from '../support/service.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { parseConfigText, ConfigError } from '../../ext-authz/src/config/load.js';

const GW_PROXY = 'spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account';
const ALICE_URI = 'spiffe://partners.example.com/org/acme/user/alice';

function indent(text: string, spaces: number): string {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => ' '.repeat(spaces) + l)
    .join('\n');
}

function configYaml(root: CertificateAuthority, revokedSerial: string): string {
  return `
logging: { level: info, audit: true }
identity:
  mtls:
    trustedProxies: [${GW_PROXY}]
    ca:
      pem: |
${indent(root.pem, 8)}
    deny: { serials: ["${revokedSerial}"] }
    rules:
      - name: partners
        uri: { regex: "spiffe://partners\\\\.example\\\\.com/org/(?<org>[^/]+)/user/(?<user>[^/]+)" }
        identity: { subject: "{user}@{org}", kind: user, attributes: { org: "{org}" }, groups: [partners, "org:{org}"] }
      - name: services
        dns: { suffix: ".svc.acme.example" }
        identity: { subject: "{san}", kind: service }
      - name: developers
        email: { suffix: "@passgate.dev" }
        identity: { subject: "{rest}", kind: developer, groups: [developers] }
gateways:
  secure:
    kind: secure
    trustXfcc: true
    routes:
      - name: partner-api
        match: { path: { prefix: /partner } }
        stages:
          - type: mtls
          - type: authorize
            kinds: [user]
            attributes: { org: [acme] }
      - name: need-identity
        match: { path: { prefix: /needs-identity } }
        stages: [authorize-only-placeholder]
      - name: any-client
        match: { path: { prefix: / } }
        stages: [mtls]
      - name: tcp
        stages: [mtls]
  mesh:
    kind: internal
    trustXfcc: true
    routes:
      - name: behind-gateway
        match: { path: { prefix: / } }
        stages:
          - type: mtls
            xfcc: { mode: append_forward, trustedHops: 2 }
  public:
    kind: public
    routes:
      - name: open
        match: { path: { prefix: /open } }
        stages: [allow]
      - name: wants-cert
        match: { path: { prefix: / } }
        stages: [mtls]
`.replace('stages: [authorize-only-placeholder]', 'stages: [{ type: authorize, kinds: [user, service, developer] }]');
}

interface Certs {
  root: CertificateAuthority;
  inter: CertificateAuthority;
  other: CertificateAuthority;
  alice: IssuedCertificate;
  bob: IssuedCertificate; // org globex: authenticated, forbidden on partner-api
  svc: IssuedCertificate;
  dev: IssuedCertificate;
  viaInter: IssuedCertificate;
  expired: IssuedCertificate;
  notYet: IssuedCertificate;
  untrusted: IssuedCertificate;
  revoked: IssuedCertificate;
  unknown: IssuedCertificate;
  gateway: IssuedCertificate;
}

async function makeCerts(): Promise<Certs> {
  const root = await createCa();
  const inter = await createCa({ parent: root, subject: 'CN=Partner Intermediate CA' });
  const other = await createCa({ subject: 'CN=Somebody Else CA' });
  const day = 86_400_000;
  const now = Date.now();
  return {
    root,
    inter,
    other,
    alice: await issueCertificate({ ca: root, subject: 'CN=alice,O=Acme\\, Inc.', sans: { uri: [ALICE_URI], dns: ['alice.acme.example'] } }),
    bob: await issueCertificate({ ca: root, sans: { uri: ['spiffe://partners.example.com/org/globex/user/bob'] } }),
    svc: await issueCertificate({ ca: root, sans: { dns: ['billing.svc.acme.example'], ip: ['10.1.2.3'] } }),
    dev: await issueCertificate({ ca: root, sans: { email: ['carol@passgate.dev'] } }),
    viaInter: await issueCertificate({ ca: inter, sans: { uri: ['spiffe://partners.example.com/org/acme/user/dave'] } }),
    expired: await issueCertificate({ ca: root, sans: { uri: [ALICE_URI] }, notBefore: new Date(now - 10 * day), notAfter: new Date(now - 2 * day) }),
    notYet: await issueCertificate({ ca: root, sans: { uri: [ALICE_URI] }, notBefore: new Date(now + 2 * day), notAfter: new Date(now + 10 * day) }),
    untrusted: await issueCertificate({ ca: other, sans: { uri: [ALICE_URI] } }),
    revoked: await issueCertificate({ ca: root, sans: { uri: [ALICE_URI] } }),
    unknown: await issueCertificate({ ca: root, sans: { uri: ['spiffe://elsewhere.example.org/ns/x/sa/y'] } }),
    gateway: await issueCertificate({ ca: root, sans: { uri: [GW_PROXY] } }),
  };
}

interface Answer {
  status: number;
  reason: string;
  audit: Record<string, any>;
  res: CheckResponse;
}

describe('identity: mTLS end to end over gRPC', function () {
  this.timeout(30_000);
  let certs: Certs;
  let run: Running;
  let seq = 0;

  before(async () => {
    certs = await makeCerts();
    run = await startService(configYaml(certs.root, certs.revoked.serial));
  });
  after(async () => {
    await run?.stop();
  });

  /** Sends a Check and returns the status plus the audit line written for it. */
  async function send(opts: {
    gateway?: string;
    path?: string;
    xfcc?: string;
    principal?: string;
    peerCert?: IssuedCertificate;
    headers?: Record<string, string>;
  }): Promise<Answer> {
    const id = `req-${++seq}`;
    const req: CheckRequest = httpCheck({
      gateway: opts.gateway ?? 'secure',
      path: opts.path ?? '/partner/orders',
      headers: { ...(opts.xfcc !== undefined ? { 'x-forwarded-client-cert': opts.xfcc } : {}), 'x-request-id': id, ...opts.headers },
      ...(opts.principal ? { principal: opts.principal } : {}),
    });
    req.attributes!.request!.http!.id = id;
    if (opts.peerCert) (req.attributes!.source as Record<string, unknown>)['certificate'] = urlEncodePem(opts.peerCert.pem);
    const res = await run.check(req);
    const status = res.status?.code === 0 || res.status?.code === undefined ? 200 : (res.denied_response?.status?.code ?? 403);
    const audit = [...run.logs.lines].reverse().find((l) => l['log'] === 'audit' && l['msg'] === 'decision' && l['trace_id'] === id) ?? {};
    return { status: Number(status), reason: String(audit['reason'] ?? ''), audit, res };
  }

  function expectDeny(a: Answer, status: number, reason: string): void {
    assert.equal(a.status, status, `expected ${status} ${reason}, got ${a.status} ${a.reason} (${JSON.stringify(a.audit['detail'])})`);
    assert.equal(a.reason, reason);
    assert.equal(a.audit['decision'], 'deny');
  }

  describe('mapping and authorization', () => {
    it('maps a SPIFFE URI SAN from XFCC with named captures and allows the partner route', async () => {
      const a = await send({ xfcc: toXfcc(certs.alice) });
      assert.equal(a.status, 200, JSON.stringify(a.audit));
      assert.deepEqual(a.audit['identity'], { subject: 'alice@acme', kind: 'user', source: 'mtls' });
      assert.equal(a.audit['mtls'].fingerprint, certs.alice.fingerprint);
      assert.equal(a.audit['mtls'].serial, certs.alice.serial);
      assert.deepEqual(a.audit['mtls'].sans.uri, [ALICE_URI]);
      assert.equal(a.audit['mtls'].subject, 'O=Acme\\, Inc.,CN=alice');
      assert.equal(a.audit['mtls'].rule, 'partners');
      assert.deepEqual(a.audit['mtls'].identity.groups, ['partners', 'org:acme']);
      assert.equal(a.audit['route'], 'partner-api');
      assert.equal(a.audit['mtls_via'], 'xfcc');
    });

    it('an authenticated partner of another org gets 403 forbidden_identity from authorize', async () => {
      const a = await send({ xfcc: toXfcc(certs.bob) });
      expectDeny(a, 403, 'forbidden_identity');
      assert.equal(a.audit['identity'].subject, 'bob@globex');
    });

    it('maps a DNS SAN to a service and an email SAN to a developer', async () => {
      const s = await send({ path: '/svc', xfcc: toXfcc(certs.svc) });
      assert.equal(s.status, 200);
      assert.deepEqual(s.audit['identity'], { subject: 'billing.svc.acme.example', kind: 'service', source: 'mtls' });
      assert.deepEqual(s.audit['mtls'].sans.ip, ['10.1.2.3']);
      const d = await send({ path: '/dev', xfcc: toXfcc(certs.dev) });
      assert.equal(d.status, 200);
      assert.deepEqual(d.audit['identity'], { subject: 'carol', kind: 'developer', source: 'mtls' });
      // Only users of org acme may use the partner API.
      expectDeny(await send({ xfcc: toXfcc(certs.svc) }), 403, 'forbidden_identity');
    });

    it('a certificate no rule maps is 403 unknown_client_certificate', async () => {
      expectDeny(await send({ path: '/x', xfcc: toXfcc(certs.unknown) }), 403, 'unknown_client_certificate');
    });

    it('authorize without any identity is 401 identity_required', async () => {
      expectDeny(await send({ path: '/needs-identity', xfcc: toXfcc(certs.alice) }), 401, 'identity_required');
    });

    it('no certificate at all on an mTLS route is 401 client_certificate_required', async () => {
      expectDeny(await send({ path: '/x' }), 401, 'client_certificate_required');
    });

    it('a repeated certificate is served from the cache (admin /identity/mtls shows hits)', async () => {
      const stats = async () => (await (await fetch(`http://127.0.0.1:${run.svc.adminPort}/identity/mtls`)).json()) as any;
      assert.equal((await send({ xfcc: toXfcc(certs.alice) })).status, 200);
      const before = await stats();
      for (let i = 0; i < 3; i++) assert.equal((await send({ xfcc: toXfcc(certs.alice) })).status, 200);
      const after = await stats();
      assert.equal(after.configured, true);
      // Counted across these three Checks only: each a hit, none decoded again.
      assert.equal(after.cache.hits - before.cache.hits, 3, JSON.stringify({ before, after }));
      assert.equal(after.cache.misses, before.cache.misses, JSON.stringify({ before, after }));
      assert.ok(after.cache.size >= 1);
      assert.deepEqual(after.rules, ['partners', 'services', 'developers']);
    });
  });

  describe('chains and validity', () => {
    it('a leaf from an intermediate is trusted when XFCC Chain carries the intermediate', async () => {
      const a = await send({ xfcc: toXfcc(certs.viaInter, { chain: true }) });
      assert.equal(a.status, 200, JSON.stringify(a.audit));
      assert.equal(a.audit['identity'].subject, 'dave@acme');
    });
    it('the same leaf without the chain is 401 untrusted_issuer', async () => {
      expectDeny(await send({ xfcc: toXfcc(certs.viaInter) }), 401, 'untrusted_issuer');
    });
    it('a certificate from another CA is 401 untrusted_issuer', async () => {
      expectDeny(await send({ xfcc: toXfcc(certs.untrusted) }), 401, 'untrusted_issuer');
      // Presenting the foreign CA as "chain" does not make it trusted.
      expectDeny(await send({ xfcc: toXfcc(certs.untrusted, { chain: certs.untrusted.pem + certs.other.pem }) }), 401, 'untrusted_issuer');
    });
    it('expired and not-yet-valid certificates are 401', async () => {
      expectDeny(await send({ xfcc: toXfcc(certs.expired) }), 401, 'certificate_expired');
      expectDeny(await send({ xfcc: toXfcc(certs.notYet) }), 401, 'certificate_not_yet_valid');
    });
    it('a certificate on the deny list is 401 certificate_revoked', async () => {
      const a = await send({ xfcc: toXfcc(certs.revoked) });
      expectDeny(a, 401, 'certificate_revoked');
      assert.equal(a.audit['mtls'].serial, certs.revoked.serial);
    });
  });

  describe('bad XFCC input', () => {
    const cases: Array<[string, () => string, string]> = [
      ['a pair without "="', () => 'Hash', 'malformed_xfcc'],
      ['unbalanced quotes', () => toXfcc(certs.alice).replace(/"$/, '').replace(/";Subject=.*$/, ''), 'malformed_xfcc'],
      ['a 64 KB header', () => `Hash=${'a'.repeat(64)};Subject="${'x'.repeat(64 * 1024)}"`, 'malformed_xfcc'],
      ['control characters', () => toXfcc(certs.alice).replace('Subject=', 'Sub\u0001ject='), 'malformed_xfcc'],
      ['two elements under SANITIZE_SET', () => `${toXfcc(certs.alice)},${toXfcc(certs.bob)}`, 'xfcc_element_count'],
      ['a repeated Hash', () => `Hash=${certs.alice.fingerprint};${toXfcc(certs.alice)}`, 'malformed_xfcc'],
      ['a wrong Hash', () => toXfcc(certs.alice, { hash: certs.bob.fingerprint }), 'xfcc_hash_mismatch'],
      ['a missing Hash', () => toXfcc(certs.alice, { hash: false }), 'xfcc_missing_hash'],
      ['no Cert', () => toXfcc(certs.alice, { cert: false }), 'xfcc_missing_cert'],
      ['URI= not matching the certificate', () => toXfcc(certs.bob).replace(/URI=[^;]*/, `URI=${ALICE_URI}`), 'xfcc_san_mismatch'],
      ['a truncated PEM', () => `Hash=${certs.alice.fingerprint};Cert="${urlEncodePem(certs.alice.pem).slice(0, 300)}"`, 'bad_certificate'],
      ['a garbage PEM', () => `Hash=${certs.alice.fingerprint};Cert="-----BEGIN%20CERTIFICATE-----%0AAAAAbm90IGEgY2VydA%3D%3D%0A-----END%20CERTIFICATE-----%0A"`, 'bad_certificate'],
      ['not a PEM at all', () => `Hash=${certs.alice.fingerprint};Cert="hello%20world"`, 'bad_certificate'],
      ['broken URL encoding', () => `Hash=${certs.alice.fingerprint};Cert="%E0%A4%A"`, 'bad_certificate'],
    ];
    for (const [name, make, reason] of cases) {
      it(`${name} → 401 ${reason}`, async () => {
        const a = await send({ xfcc: make() });
        expectDeny(a, 401, reason);
        assert.equal(a.audit['mtls'].error, reason);
      });
    }
  });

  describe('trust rules', () => {
    it('XFCC on a non-mTLS gateway is ignored (401 on an mtls route) and removed on allow', async () => {
      const a = await send({ gateway: 'public', path: '/anything', xfcc: toXfcc(certs.alice) });
      expectDeny(a, 401, 'client_certificate_required');
      assert.equal(a.audit['mtls_xfcc'], 'ignored_not_mtls_gateway');
      const b = await send({ gateway: 'public', path: '/open', xfcc: toXfcc(certs.alice) });
      assert.equal(b.status, 200);
      assert.ok(b.res.ok_response?.headers_to_remove?.includes('x-forwarded-client-cert'), 'XFCC must be stripped on a non-mTLS gateway');
    });

    it('the peer certificate wins when Envoy forwards it (source.certificate)', async () => {
      const a = await send({ peerCert: certs.alice, principal: ALICE_URI });
      assert.equal(a.status, 200, JSON.stringify(a.audit));
      assert.equal(a.audit['mtls_via'], 'peer_certificate');
      assert.equal(a.audit['mtls'].fingerprint, certs.alice.fingerprint);
    });

    it('a client-forged XFCC beside a real peer certificate is 401 xfcc_peer_mismatch', async () => {
      const a = await send({ peerCert: certs.bob, xfcc: toXfcc(certs.alice) });
      expectDeny(a, 401, 'xfcc_peer_mismatch');
      assert.equal(a.audit['mtls'].fingerprint, certs.bob.fingerprint);
    });

    it('a client-forged XFCC beside a real peer principal is 401 xfcc_peer_mismatch', async () => {
      const a = await send({ principal: 'spiffe://partners.example.com/org/globex/user/bob', xfcc: toXfcc(certs.alice) });
      expectDeny(a, 401, 'xfcc_peer_mismatch');
      assert.equal(a.audit['mtls'].peer_principal, 'spiffe://partners.example.com/org/globex/user/bob');
    });

    it('at an ingress gateway the sanitized XFCC describing the peer principal is used for full facts', async () => {
      const a = await send({ principal: ALICE_URI, xfcc: toXfcc(certs.alice) });
      assert.equal(a.status, 200, JSON.stringify(a.audit));
      assert.equal(a.audit['mtls_via'], 'xfcc_matching_peer');
      assert.equal(a.audit['mtls'].fingerprint, certs.alice.fingerprint);
    });

    it('a peer principal alone is mapped like its SAN', async () => {
      const a = await send({ principal: ALICE_URI });
      assert.equal(a.status, 200, JSON.stringify(a.audit));
      assert.equal(a.audit['mtls_via'], 'peer_principal');
      assert.equal(a.audit['identity'].subject, 'alice@acme');
    });

    it('behind a trusted proxy (sidecar, APPEND_FORWARD) the first of exactly trustedHops elements is the client; an extra leading element is refused', async () => {
      const header = [toXfcc(certs.alice), toXfcc(certs.gateway, { by: ['spiffe://cluster.local/ns/shop/sa/api'] })].join(',');
      const a = await send({ gateway: 'mesh', path: '/api', principal: GW_PROXY, xfcc: header });
      assert.equal(a.status, 200, JSON.stringify(a.audit));
      assert.equal(a.audit['identity'].subject, 'alice@acme');
      // A leading element the hops did not write (client-sent, or split off by certificate content).
      expectDeny(await send({ gateway: 'mesh', path: '/api', principal: GW_PROXY, xfcc: `${toXfcc(certs.bob)},${header}` }), 401, 'xfcc_element_count');
      // Too few elements for the configured hops.
      expectDeny(await send({ gateway: 'mesh', path: '/api', principal: GW_PROXY, xfcc: toXfcc(certs.alice) }), 401, 'xfcc_element_count');
      // A trusted proxy that forwards no XFCC gives no client.
      expectDeny(await send({ gateway: 'mesh', path: '/api', principal: GW_PROXY }), 401, 'client_certificate_required');
    });

    it('a peer that is not a trusted proxy cannot speak for others through XFCC', async () => {
      const a = await send({ gateway: 'mesh', path: '/api', principal: 'spiffe://cluster.local/ns/shop/sa/rogue', xfcc: `${toXfcc(certs.alice)},${toXfcc(certs.gateway)}` });
      expectDeny(a, 401, 'xfcc_peer_mismatch');
    });
  });

  describe('reload and non-HTTP checks', () => {
    it('a network-level (TCP) Check without request.http is decided from the peer principal', async () => {
      const res = await run.check({
        attributes: {
          source: { address: { socket_address: { address: '203.0.113.9', port_value: 4000 } }, principal: ALICE_URI },
          destination: { address: { socket_address: { address: '10.0.0.5', port_value: 8443 } } },
          context_extensions: { gateway: 'secure' },
        },
      });
      assert.equal(res.status?.code ?? 0, 0, JSON.stringify(res));
      const tcpDenied = await run.check({
        attributes: { source: { address: { socket_address: { address: '203.0.113.9', port_value: 4000 } } }, context_extensions: { gateway: 'secure' } },
      });
      assert.equal(tcpDenied.denied_response?.status?.code, 401);
    });

    it('a reload with new rules and a new deny list applies to certificates already cached', async () => {
      assert.equal((await send({ path: '/x', xfcc: toXfcc(certs.dev) })).status, 200);
      const before = configYaml(certs.root, certs.revoked.serial);
      const changed = before
        .replace('deny: { serials: ["' + certs.revoked.serial + '"] }', `deny: { fingerprints: ["${certs.dev.fingerprint}"] }`)
        .replace('subject: "{user}@{org}"', 'subject: "{org}/{user}"');
      assert.notEqual(changed, before);
      await run.svc.applyConfig(parseConfigText(changed, 'reload.yaml'));
      try {
        expectDeny(await send({ path: '/x', xfcc: toXfcc(certs.dev) }), 401, 'certificate_revoked');
        const a = await send({ xfcc: toXfcc(certs.alice) });
        assert.equal(a.status, 200);
        assert.equal(a.audit['identity'].subject, 'acme/alice');
        assert.equal((await send({ path: '/x', xfcc: toXfcc(certs.revoked) })).status, 200, 'the old deny list no longer applies');
      } finally {
        await run.svc.applyConfig(parseConfigText(before, 'restore.yaml'));
      }
      assert.equal((await send({ xfcc: toXfcc(certs.alice) })).audit['identity'].subject, 'alice@acme');
    });
  });

  describe('config errors name the key', () => {
    const base = (identity: string, stages = '[mtls]') => `
identity:
${identity}
gateways:
  secure: { kind: secure, trustXfcc: true, routes: [{ name: r, stages: ${stages} }] }
`;
    function problems(yaml: string): string[] {
      try {
        parseConfigText(yaml, 't.yaml');
      } catch (e) {
        if (e instanceof ConfigError) return [...e.problems];
        throw e;
      }
      return [];
    }
    it('an unknown template placeholder', () => {
      const p = problems(base('  mtls: { rules: [{ uri: { regex: "spiffe://x/(?<a>.*)" }, identity: { subject: "{b}", kind: user } }] }'));
      assert.ok(p.some((l) => l.includes('identity.mtls.rules[0].identity.subject: unknown placeholder {b}')), p.join('\n'));
    });
    it('a rule with two fields, a bad regex, a bad fingerprint', () => {
      const p = problems(
        base(`  mtls:
    deny: { fingerprints: [abc] }
    rules:
      - { uri: { exact: a }, dns: { exact: b }, identity: { kind: user } }
      - { uri: { regex: "(" }, identity: { kind: user } }`),
      );
      const text = p.join('\n');
      assert.match(text, /identity\.mtls\.deny\.fingerprints\[0\]: must be a SHA-256 fingerprint/);
      assert.match(text, /identity\.mtls\.rules\[0\]: set exactly one of uri, dns, email, ip, subject/);
      assert.match(text, /identity\.mtls\.rules\[1\]\.uri\.regex: is not a valid regular expression/);
    });
    it('an unreadable CA file and an mtls stage without identity.mtls', () => {
      const p = problems(base('  mtls: { ca: { files: [/nonexistent/ca.pem] } }'));
      assert.ok(p.some((l) => l.includes('identity.mtls.ca.files[0]: cannot read /nonexistent/ca.pem')), p.join('\n'));
      const q = problems(base('  {}'));
      assert.ok(q.some((l) => l.includes('the mtls stage needs an identity.mtls section')), q.join('\n'));
    });
    it('sanitize_set with more than one trusted hop, and a typo', () => {
      const p = problems(base('  mtls: { xfcc: { trustedHops: 2 }, rulez: [] }'));
      const text = p.join('\n');
      assert.match(text, /identity\.mtls\.xfcc\.trustedHops: sanitize_set writes a single element/);
      assert.match(text, /identity\.mtls: unknown key "rulez"/);
    });
  });
});
