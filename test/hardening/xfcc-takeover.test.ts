/**
 * Issue 12 item 1: certificate content cannot move XFCC element boundaries
 * to make another client's (public) certificate "the client". Every element
 * is validated, names holding XFCC delimiters never authenticate through
 * XFCC, and the element count is what the topology writes.
 */
import assert from 'node:assert/strict';
import { createCa, issueCertificate, toXfcc, urlEncodePem, type CertificateAuthority, type IssuedCertificate } from '../../ext-authz/src/devcerts/generate.js';
import { formatXfccElement } from '../../ext-authz/src/identity/xfcc.js';
import { httpCheck, startService, type Running } from '../support/service.js';

const GW = 'spiffe://cluster.local/ns/istio-gateways/sa/gw-secure';

function yaml(root: CertificateAuthority): string {
  return `
identity:
  mtls:
    trustedProxies: [${GW}]
    ca: { pem: ${JSON.stringify(root.pem)} }
    rules:
      - uri: { prefix: "spiffe://acme/" }
        identity: { subject: "{rest}", kind: user }
      - email: { suffix: "@acme.example" }
        identity: { subject: "{san}", kind: user }
gateways:
  secure:
    kind: secure
    select: { ports: [8443] }
    routes: [{ name: edge, stages: [mtls] }]
  mesh:
    kind: internal
    trustXfcc: true
    select: { ports: [15006] }
    routes: [{ name: sidecar, stages: [{ type: mtls, xfcc: { mode: append_forward, trustedHops: 2 } }] }]
  mesh3:
    kind: internal
    trustXfcc: true
    select: { ports: [15007] }
    routes: [{ name: sidecar3, stages: [{ type: mtls, xfcc: { mode: append_forward, trustedHops: 3 } }] }]
`;
}

describe('XFCC identity takeover (issue 12 item 1)', () => {
  let run: Running;
  let root: CertificateAuthority;
  let victim: IssuedCertificate;
  let attacker: IssuedCertificate;
  let gateway: IssuedCertificate;
  let commaEmail: IssuedCertificate;
  let semicolonUri: IssuedCertificate;
  let quoteSubject: IssuedCertificate;

  before(async () => {
    root = await createCa();
    victim = await issueCertificate({ ca: root, sans: { uri: ['spiffe://acme/admin'] } });
    gateway = await issueCertificate({ ca: root, sans: { uri: [GW] } });
    const victimElement = formatXfccElement({ hash: victim.fingerprint, cert: urlEncodePem(victim.pem), uri: ['spiffe://acme/admin'] });
    // The attacker's own URI SAN carries the rest of a forged element after a ",".
    attacker = await issueCertificate({ ca: root, sans: { uri: [`spiffe://acme/mallory,${victimElement}`] }, subject: 'CN=mallory' });
    commaEmail = await issueCertificate({ ca: root, sans: { email: ['eve,x@acme.example'] }, subject: 'CN=eve' });
    semicolonUri = await issueCertificate({ ca: root, sans: { uri: ['spiffe://acme/eve;DNS=x'] }, subject: 'CN=eve' });
    quoteSubject = await issueCertificate({ ca: root, sans: { email: ['q@acme.example'] }, subject: 'CN=a"b' });
    run = await startService(yaml(root));
  });
  after(async () => run?.stop());

  async function ask(port: number, xfcc: string, extra: { principal?: string; peer?: IssuedCertificate } = {}): Promise<string> {
    const req = httpCheck({ destinationPort: port, headers: { 'x-forwarded-client-cert': xfcc }, ...(extra.principal ? { principal: extra.principal } : {}) });
    if (extra.peer) (req.attributes!.source as Record<string, unknown>)['certificate'] = urlEncodePem(extra.peer.pem);
    const res = await run.check(req);
    if ((res.status?.code ?? 0) === 0) return 'allow';
    return `${res.denied_response?.status?.code}:${JSON.parse(res.denied_response?.body ?? '{}').reason}`;
  }

  it('a SAN that splits the element cannot select the victim under APPEND_FORWARD', async () => {
    // What the gateway (SANITIZE_SET) writes for the attacker, then what the sidecar appends for the gateway.
    const header = `${toXfcc(attacker)},${toXfcc(gateway)}`;
    assert.equal(await ask(15006, header, { principal: GW }), '401:xfcc_element_count');
    // With one more hop configured the count happens to match: the attacker's names are then refused.
    assert.equal(await ask(15007, header, { principal: GW }), '401:xfcc_unsafe_certificate');
    // Under SANITIZE_SET the split is one element too many.
    assert.equal(await ask(8443, toXfcc(attacker)), '401:xfcc_element_count');
  });

  it('validates every element, not only the selected one', async () => {
    const good = `${toXfcc(victim)},${toXfcc(gateway)}`;
    assert.equal(await ask(15006, good, { principal: GW }), 'allow');
    // The hop element's Hash does not belong to its Cert.
    assert.equal(await ask(15006, `${toXfcc(victim)},${toXfcc(gateway, { hash: victim.fingerprint })}`, { principal: GW }), '401:xfcc_hash_mismatch');
    // The hop element's URI= is not its certificate's.
    assert.equal(await ask(15006, `${toXfcc(victim)},${toXfcc(gateway).replace(`URI=${GW}`, 'URI=spiffe://acme/admin')}`, { principal: GW }), '401:xfcc_san_mismatch');
    // The hop element's Subject= is not its certificate's.
    assert.equal(await ask(15006, `${toXfcc(victim)},${toXfcc(gateway).replace(/Subject="[^"]*"/, 'Subject="CN=root"')}`, { principal: GW }), '401:xfcc_subject_mismatch');
    // The client element's Subject= too.
    assert.equal(await ask(8443, toXfcc(victim).replace(/Subject="[^"]*"/, 'Subject="CN=admin"')), '401:xfcc_subject_mismatch');
    // A non-hex Hash on any element.
    assert.equal(await ask(15006, `${toXfcc(victim)},By=${GW};Hash=zz`, { principal: GW }), '401:xfcc_hash_mismatch');
  });

  it('a certificate whose names hold XFCC delimiters never authenticates through XFCC, but does as the peer', async () => {
    assert.equal(await ask(8443, toXfcc(commaEmail)), '401:xfcc_unsafe_certificate');
    assert.equal(await ask(8443, toXfcc(quoteSubject)), '401:xfcc_unsafe_certificate');
    assert.match(await ask(8443, toXfcc(semicolonUri)), /^401:(xfcc_unsafe_certificate|malformed_xfcc)$/);
    // As the TLS peer itself (no XFCC), there is nothing to mis-parse.
    const req = httpCheck({ destinationPort: 8443 });
    (req.attributes!.source as Record<string, unknown>)['certificate'] = urlEncodePem(commaEmail.pem);
    const res = await run.check(req);
    assert.equal(res.status?.code ?? 0, 0, JSON.stringify(res.denied_response?.body));
  });
});
