/**
 * Unit tests of the local gateway's Envoy-emulation modules: XFCC byte-exact
 * against the contract (the subject printer itself is checked against
 * OpenSSL in test/identity/rfc2253.test.ts), CheckRequest shape (through the
 * real protos), Envoy <= 1.36 mutation semantics, proxy header handling.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createCa, issueCertificate } from '../../ext-authz/src/devcerts/generate.js';
import { loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import { rfc2253 } from '../../ext-authz/src/identity/rfc2253.js';
import { applyXfcc, derToPem, peerCertificate, xfccElement, XFCC } from '../../local-gateway/src/xfcc-writer.js';
import { buildCheckRequest, headerMapOf } from '../../local-gateway/src/check-request.js';
import { applyCheckResponse, rewriteQuery, type HeaderList } from '../../local-gateway/src/apply-check-response.js';
import { downstreamHeaders, forward, upstreamHeaders } from '../../local-gateway/src/proxy.js';

const OPENSSL = '/usr/bin/openssl';

/** Envoy's XFCC encoding of a PEM, written out here rather than taken from the code under test. */
function envoyEncode(pem: string): string {
  return pem.replace(/\n/g, '%0A').replace(/ /g, '%20').replace(/\+/g, '%2B').replace(/\//g, '%2F').replace(/=/g, '%3D');
}

function opensslCert(dir: string, name: string, subj: string, san?: string, utf8 = false): { der: Buffer; pem: string; subject: string } {
  const key = join(dir, `${name}-key.pem`);
  const crt = join(dir, `${name}.pem`);
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', crt, '-days', '1', '-subj', subj, '-multivalue-rdn'];
  if (utf8) args.push('-utf8');
  if (san) args.push('-addext', `subjectAltName=${san}`);
  execFileSync(OPENSSL, args, { stdio: 'ignore' });
  const pem = readFileSync(crt, 'utf8');
  // Only the newline is cut: a trailing escaped space (`\ `) belongs to the subject.
  const subject = execFileSync(OPENSSL, ['x509', '-in', crt, '-noout', '-subject', '-nameopt', 'RFC2253'], { encoding: 'utf8' }).replace(/\r?\n$/, '').replace(/^subject=/, '');
  return { der: new X509Certificate(pem).raw, pem, subject };
}

describe('local gateway: xfcc-writer (Envoy SANITIZE_SET)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'lg-xfcc-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes Hash;Cert;Subject;URI;DNS byte-exact as the contract describes', async () => {
    const ca = await createCa();
    const leaf = await issueCertificate({
      ca,
      subject: 'CN=alice,O=Acme',
      sans: { uri: ['spiffe://partners.example.com/org/acme/user/alice'], dns: ['alice.acme.example.com', 'a2.acme.example.com'], email: ['alice@acme.example.com'] },
    });
    const peer = peerCertificate(leaf.der);
    const hash = createHash('sha256').update(leaf.der).digest('hex');
    const encodedPem = envoyEncode(leaf.pem);
    const expected =
      `Hash=${hash};Cert="${encodedPem}";Subject="O=Acme,CN=alice";` +
      'URI=spiffe://partners.example.com/org/acme/user/alice;DNS=alice.acme.example.com;DNS=a2.acme.example.com';
    assert.equal(xfccElement(peer), expected);
    assert.equal(decodeURIComponent(encodedPem), leaf.pem);
    assert.equal(peer.fingerprint, hash);
    assert.equal(peer.principal, 'spiffe://partners.example.com/org/acme/user/alice');
  });

  it('writes an empty URI= when there is no URI SAN, By= first, and no DNS= without DNS SANs', async () => {
    const ca = await createCa();
    const leaf = await issueCertificate({ ca, subject: 'CN=dev', sans: { email: ['dev@passgate.dev'] } });
    const peer = peerCertificate(leaf.der);
    const el = xfccElement(peer, ['spiffe://cluster.local/ns/istio-system/sa/gw']);
    assert.equal(el, `By=spiffe://cluster.local/ns/istio-system/sa/gw;Hash=${leaf.fingerprint};Cert="${envoyEncode(leaf.pem)}";Subject="CN=dev";URI=`);
    assert.equal(peer.principal, 'CN=dev');
  });

  it('takes the subject from the service printer (byte-for-byte OpenSSL checks live in test/identity/rfc2253.test.ts)', () => {
    const cert = opensslCert(dir, 's0', '/O=Acme\\, Inc.; "Ltd" <x>/CN=#hash+UID=u1/OU=trail ');
    const peer = peerCertificate(cert.der);
    assert.equal(peer.subject, cert.subject);
    assert.equal(peer.subject, rfc2253(new X509Certificate(cert.pem)));
    assert.equal(peer.principal, cert.subject, 'no SAN: the principal is the subject');
    assert.ok(xfccElement(peer).includes(`;Subject="${cert.subject}";`), 'Subject is quoted without further escaping');
  });

  it('reads URI and DNS SANs in certificate order; PEM matches OpenSSL PEM_write', () => {
    const cert = opensslCert(dir, 'san', '/CN=x', 'DNS:b.example,URI:spiffe://td/ns/a,email:e@x.example,DNS:c.example,URI:https://other/,IP:10.0.0.1');
    const peer = peerCertificate(cert.der);
    assert.deepEqual(peer.uriSans, ['spiffe://td/ns/a', 'https://other/']);
    assert.deepEqual(peer.dnsSans, ['b.example', 'c.example']);
    assert.equal(derToPem(cert.der), cert.pem);
    const el = xfccElement(peer);
    assert.ok(el.includes(`;Cert="${envoyEncode(cert.pem)}";`), el);
    assert.ok(el.endsWith(';URI=spiffe://td/ns/a;URI=https://other/;DNS=b.example;DNS=c.example'), el);
  });

  it('SANITIZE_SET replaces every client copy; no certificate (or plain HTTP) removes it', async () => {
    const ca = await createCa();
    const leaf = await issueCertificate({ ca, sans: { uri: ['spiffe://t/u'] } });
    const el = xfccElement(peerCertificate(leaf.der));
    const h: Array<[string, string]> = [[':path', '/'], [XFCC, 'Hash=forged'], ['a', '1'], [XFCC, 'By=x;URI=spiffe://evil']];
    applyXfcc(h, 'SANITIZE_SET', el);
    assert.deepEqual(h.filter(([k]) => k === XFCC).map(([, v]) => v), [el]);
    const plain: Array<[string, string]> = [[XFCC, 'Hash=forged;URI=spiffe://evil']];
    applyXfcc(plain, 'SANITIZE_SET', null);
    assert.equal(plain.length, 0);
    const fwd: Array<[string, string]> = [[XFCC, 'Hash=aa']];
    applyXfcc(fwd, 'APPEND_FORWARD', el);
    assert.deepEqual(fwd, [[XFCC, `Hash=aa,${el}`]]);
  });

  it('the other modes: SANITIZE removes, FORWARD_ONLY and ALWAYS_FORWARD_ONLY pass the client copy through', () => {
    const client = (): Array<[string, string]> => [[XFCC, 'Hash=aa']];
    const sanitize = client();
    applyXfcc(sanitize, 'SANITIZE', 'Hash=bb');
    assert.deepEqual(sanitize, []);
    const fwd = client();
    applyXfcc(fwd, 'FORWARD_ONLY', 'Hash=bb');
    assert.deepEqual(fwd, [[XFCC, 'Hash=aa']]);
    const fwdPlain = client();
    applyXfcc(fwdPlain, 'FORWARD_ONLY', null);
    assert.deepEqual(fwdPlain, [], 'FORWARD_ONLY still removes it on a connection without a client certificate');
    const always = client();
    applyXfcc(always, 'ALWAYS_FORWARD_ONLY', null);
    assert.deepEqual(always, [[XFCC, 'Hash=aa']]);
  });
});

describe('local gateway: check-request (CheckRequest as Envoy fills it)', () => {
  const headers: Array<[string, string]> = [
    [':authority', 'localhost:8443'], [':path', '/orders?x=1'], [':method', 'POST'], [':scheme', 'https'],
    ['accept', 'a/b'], ['x-dup', 'one'], ['x-dup', 'two'], ['x-forwarded-proto', 'https'], ['content-length', '5'],
  ];
  const req = buildCheckRequest({
    streamId: '12345678901234567890',
    headers,
    protocol: 'HTTP/1.1',
    size: 5,
    source: { address: '127.0.0.1', port: 50123, principal: 'spiffe://t/u' },
    destination: { address: '127.0.0.1', port: 8443, principal: 'localhost' },
    sni: 'localhost',
    contextExtensions: { gateway: 'secure' },
  });

  it('fills peers, request.http, tls_session and context_extensions', () => {
    const a = req.attributes!;
    assert.deepEqual(a.source, { address: { socket_address: { address: '127.0.0.1', port_value: 50123 } }, principal: 'spiffe://t/u' });
    assert.equal(a.destination?.principal, 'localhost');
    const http = a.request!.http!;
    assert.equal(http.id, '12345678901234567890');
    assert.equal(http.method, 'POST');
    assert.equal(http.path, '/orders?x=1');
    assert.equal(http.host, 'localhost:8443');
    assert.equal(http.scheme, 'https');
    assert.equal(http.protocol, 'HTTP/1.1');
    assert.equal(http.size, '5');
    assert.equal(http.headers?.['x-dup'], 'one,two');
    assert.equal(http.headers?.[':authority'], 'localhost:8443');
    assert.equal(http.headers?.[':scheme'], 'https');
    assert.deepEqual(a.tls_session, { sni: 'localhost' });
    assert.deepEqual(a.context_extensions, { gateway: 'secure' });
  });

  it('survives the wire through our protos', () => {
    const { service } = loadAuthorizationService();
    const def = (service as unknown as Record<string, { requestSerialize(v: unknown): Buffer; requestDeserialize(b: Buffer): unknown }>)['Check']!;
    const back = def.requestDeserialize(def.requestSerialize(req)) as typeof req;
    assert.equal(back.attributes?.request?.http?.headers?.['x-dup'], 'one,two');
    assert.equal(back.attributes?.source?.principal, 'spiffe://t/u');
    assert.equal(back.attributes?.tls_session?.sni, 'localhost');
    assert.equal(String(back.attributes?.request?.http?.size), '5');
  });

  it('leaves principal out without a certificate and tls_session out on plain HTTP', () => {
    const r = buildCheckRequest({ streamId: '1', headers: [[':path', '/']], protocol: 'HTTP/1.1', size: 0, source: { address: '1.2.3.4', port: 1, principal: '' }, destination: { address: '5.6.7.8', port: 80, principal: '' } });
    assert.equal(r.attributes?.source?.principal, undefined);
    assert.equal(r.attributes?.tls_session, undefined);
    assert.equal(r.attributes?.context_extensions, undefined);
    assert.deepEqual({ ...headerMapOf([['a', '1'], ['a', '2'], ['a', '3']]) }, { a: '1,2,3' });
  });
});

describe('local gateway: apply-check-response (Envoy <= 1.36 semantics)', () => {
  const settings = { failureModeAllow: false, statusOnError: 503 };
  const base = (): HeaderList => [[':authority', 'h'], [':path', '/p?a=1&b=2'], [':method', 'GET'], ['x-a', '1'], ['x-b', 'old'], ['x-b', 'old2']];

  it('append false overwrites every copy; append unset overwrites; append true joins an existing header', () => {
    const h = base();
    const out = applyCheckResponse(
      { status: { code: 0 }, ok_response: { headers: [
        { header: { key: 'x-b', value: 'new' }, append: { value: false } },
        { header: { key: 'x-c', value: 'c' } },
        { header: { key: 'x-a', value: '2' }, append: { value: true } },
      ] } },
      h, settings);
    assert.equal(out.kind, 'ok');
    assert.deepEqual(h.filter(([k]) => k === 'x-b'), [['x-b', 'new']]);
    assert.deepEqual(h.filter(([k]) => k === 'x-c'), [['x-c', 'c']]);
    assert.deepEqual(h.filter(([k]) => k === 'x-a'), [['x-a', '1,2']]);
  });

  it('append true on a missing header adds nothing', () => {
    const h = base();
    applyCheckResponse({ status: { code: 0 }, ok_response: { headers: [{ header: { key: 'x-missing', value: 'v' }, append: { value: true }, append_action: 0 }] } }, h, settings);
    assert.equal(h.some(([k]) => k === 'x-missing'), false);
  });

  it('headers_to_remove runs after the sets; pseudo-headers and host are never removed', () => {
    const h = base();
    h.push(['host', 'h']);
    applyCheckResponse({ status: { code: 0 }, ok_response: {
      headers: [{ header: { key: 'x-set-then-removed', value: 'v' }, append: { value: false } }],
      headers_to_remove: ['x-set-then-removed', 'x-a', ':path', ':authority', 'host', 'X-B'],
    } }, h, settings);
    assert.deepEqual(h, [[':authority', 'h'], [':path', '/p?a=1&b=2'], [':method', 'GET'], ['host', 'h']]);
  });

  it('ignores mutations of pseudo-headers and host', () => {
    const h = base();
    applyCheckResponse({ status: { code: 0 }, ok_response: { headers: [{ header: { key: ':path', value: '/evil' } }, { header: { key: 'host', value: 'evil' } }] } }, h, settings);
    assert.equal(h.find(([k]) => k === ':path')![1], '/p?a=1&b=2');
    assert.equal(h.some(([k]) => k === 'host'), false);
  });

  it('response_headers_to_add: append false = set, true = add', () => {
    const out = applyCheckResponse({ status: { code: 0 }, ok_response: { response_headers_to_add: [
      { header: { key: 'x-r', value: '1' }, append: { value: false } }, { header: { key: 'set-cookie', value: 'a=1' }, append: { value: true } },
    ] } }, base(), settings);
    assert.ok(out.kind === 'ok');
    assert.deepEqual(out.responseHeadersToSet, [['x-r', '1']]);
    assert.deepEqual(out.responseHeadersToAdd, [['set-cookie', 'a=1']]);
  });

  it('query_parameters_to_set / _remove rewrite :path', () => {
    const h = base();
    applyCheckResponse({ status: { code: 0 }, ok_response: { query_parameters_to_set: [{ key: 'a', value: 'x y' }, { key: 'c', value: '3' }], query_parameters_to_remove: ['b'] } }, h, settings);
    assert.equal(h.find(([k]) => k === ':path')![1], '/p?a=x%20y&c=3');
    assert.equal(rewriteQuery('/p?b=1', [], ['b']), '/p');
  });

  it('denied: status from denied_response (403 when unset), body, headers replacing same-name ones, several set-cookie kept', () => {
    const d = applyCheckResponse({ status: { code: 16 }, denied_response: { status: { code: 401 }, body: '{"e":1}', headers: [
      { header: { key: 'content-type', value: 'application/json' }, append: { value: false } },
      { header: { key: 'set-cookie', value: 'a=1' } }, { header: { key: 'set-cookie', value: 'b=2' } },
    ] } }, base(), settings);
    assert.deepEqual(d, { kind: 'denied', status: 401, body: '{"e":1}', headers: [['content-type', 'application/json'], ['set-cookie', 'a=1'], ['set-cookie', 'b=2']] });
    const bare = applyCheckResponse({ status: { code: 7 } }, base(), settings);
    assert.equal(bare.kind, 'denied');
    assert.equal((bare as { status: number }).status, 403);
    // A CheckResponse carrying UNAVAILABLE is a denial even with failure_mode_allow.
    assert.equal(applyCheckResponse({ status: { code: 14 } }, base(), { failureModeAllow: true, statusOnError: 503 }).kind, 'denied');
  });

  it('a failed call: status_on_error, or through with failure_mode_allow', () => {
    assert.deepEqual(applyCheckResponse(null, base(), settings), { kind: 'error', status: 503, headers: [], body: '' });
    assert.equal(applyCheckResponse(null, base(), { failureModeAllow: false, statusOnError: 403 }).kind, 'error');
    const h = base();
    assert.equal(applyCheckResponse(null, h, { failureModeAllow: true, statusOnError: 403, failureModeAllowHeaderAdd: true }).kind, 'ok');
    assert.deepEqual(h.find(([k]) => k === 'x-envoy-auth-failure-mode-allowed'), ['x-envoy-auth-failure-mode-allowed', 'true']);
  });
});

describe('local gateway: proxy (router)', () => {
  it('maps :authority to host and drops pseudo and hop-by-hop headers (incl. those named in Connection)', () => {
    const out = upstreamHeaders([[':authority', 'a.example'], [':path', '/'], ['connection', 'close, x-hop'], ['x-hop', '1'], ['keep-alive', '5'], ['te', 'trailers'], ['x-k', '1'], ['x-k', '2'], ['host', 'spoof']]);
    assert.deepEqual(out, { 'x-k': ['1', '2'], host: 'a.example' });
    assert.deepEqual(downstreamHeaders(['Content-Type', 'a', 'Transfer-Encoding', 'chunked', 'Set-Cookie', 'x', 'Set-Cookie', 'y']), [['content-type', 'a'], ['set-cookie', 'x'], ['set-cookie', 'y']]);
  });

  it('streams a request body to the upstream and the response back; 503 when the upstream is down', async () => {
    const server = http.createServer((req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(`${req.method} ${req.url} ${req.headers.host} ${n}`));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const agent = new http.Agent({ keepAlive: true });
    try {
      const body = Readable.from([Buffer.alloc(70_000, 1), Buffer.alloc(30_000, 2)]);
      const r = await forward({ host: '127.0.0.1', port }, agent, [[':authority', 'up.example'], [':path', '/x?y=1'], [':method', 'POST'], ['transfer-encoding', 'chunked']], body);
      assert.equal(r.kind, 'response');
      if (r.kind !== 'response') return;
      let text = '';
      for await (const c of r.body) text += String(c);
      assert.equal(text, 'POST /x?y=1 up.example 100000');
      assert.ok(r.headers.some(([k]) => k === 'x-envoy-upstream-service-time'));
    } finally {
      agent.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
    const down = await forward({ host: '127.0.0.1', port }, new http.Agent(), [[':path', '/'], [':method', 'GET']], null);
    assert.equal(down.kind, 'local');
    assert.equal(down.status, 503);
  });
});
