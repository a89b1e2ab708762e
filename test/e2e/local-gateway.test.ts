/**
 * End to end through the local gateway: curl and Node HTTPS clients → local
 * gateway (TLS with client certificates, XFCC, sanitize/trace wasm filters,
 * ext_authz over real gRPC) → Passgate (fds → mtls → passport) → echo upstream.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { pino } from 'pino';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { createPassportVerifier } from '../../ext-authz/src/passport/consumer/index.js';
import { ensureWasmBuilt, startStack, type Stack } from '../../local-gateway/src/stack.js';
import { toXfcc } from '../../ext-authz/src/devcerts/generate.js';
import type { EchoBody } from '../../local-gateway/src/echo-upstream.js';
import { curl, curlTls, FDS_TOKEN, makeCerts, nodeRequest, testConfigYaml, type TestCerts } from './support/harness.js';

const TRACEPARENT = /^00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

function echoOf(body: string): EchoBody {
  return JSON.parse(body) as EchoBody;
}

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join('\n') : v;
}

describe('local gateway e2e: the whole chain', function () {
  this.timeout(30_000);
  let certs: TestCerts;
  let stack: Stack;

  before(async () => {
    ensureWasmBuilt();
    certs = await makeCerts();
    stack = await startStack({ config: parseConfigText(testConfigYaml(), 'e2e.yaml'), certs });
  });
  after(async () => {
    await stack?.stop();
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  it('curl with a client certificate: 200 and a Passport the consumer library verifies', async () => {
    const r = await curl(curlTls(certs, stack.httpsPort, '/orders?id=7', 'alice'));
    assert.equal(r.exitCode, 0);
    assert.equal(r.status, 200, r.body);
    const echo = echoOf(r.body);
    assert.equal(echo.path, '/orders?id=7');
    assert.ok(echo.passport?.verified, JSON.stringify(echo.passport));
    // Verify again here, independently of the echo upstream.
    const verifier = createPassportVerifier({ jwksUrl: `http://127.0.0.1:${stack.service.adminPort}/.well-known/jwks.json`, issuer: 'https://passgate.test', audience: 'echo' });
    const v = await verifier.verify(single(echo.headers['x-passport']));
    assert.ok(v.ok, v.ok ? '' : v.error.message);
    assert.equal(v.passport.sub, 'alice');
  });

  it('Node HTTPS client with a client certificate: 200, XFCC exactly as SANITIZE_SET writes it', async () => {
    const r = await nodeRequest({ port: stack.httpsPort, path: '/orders', tls: { ca: certs.ca, cert: certs.clients.alice.cert, key: certs.clients.alice.key } });
    assert.equal(r.status, 200, r.body);
    const echo = echoOf(r.body);
    assert.equal(echo.passport?.verified, true);
    // devcerts' toXfcc is Passgate's reference for the element SANITIZE_SET writes (checked byte for byte in envoy-emulation.test.ts).
    const expected = toXfcc(certs.clients.alice.issued);
    assert.equal(echo.headers['x-forwarded-client-cert'], expected);
    assert.ok(expected.startsWith(`Hash=${certs.clients.alice.issued.fingerprint};Cert="`));
  });

  it('no client certificate: 401 from the service (curl and Node)', async () => {
    const c = await curl(curlTls(certs, stack.httpsPort, '/orders'));
    assert.equal(c.status, 401, c.body);
    assert.equal(c.headers['www-authenticate'], 'Mutual realm="passgate"');
    assert.equal(c.headers['x-echo-upstream'], undefined);
    const n = await nodeRequest({ port: stack.httpsPort, path: '/orders', tls: { ca: certs.ca } });
    assert.equal(n.status, 401);
  });

  it('a certificate from an unknown CA is refused at TLS (no HTTP answer at all)', async () => {
    const c = await curl(curlTls(certs, stack.httpsPort, '/orders', 'rogue'));
    assert.notEqual(c.exitCode, 0);
    assert.equal(c.status, 0);
    await assert.rejects(nodeRequest({ port: stack.httpsPort, path: '/orders', tls: { ca: certs.ca, cert: certs.clients.rogue.cert, key: certs.clients.rogue.key } }));
  });

  it('forged x-passport, XFCC and x-passgate-* never reach the upstream (with a certificate)', async () => {
    const forgedXfcc = 'Hash=00;Subject="CN=admin";URI=spiffe://partners.example.com/org/acme/user/admin';
    const r = await curl([
      '-H', 'x-passport: eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.',
      '-H', `x-forwarded-client-cert: ${forgedXfcc}`,
      '-H', 'x-passgate-user: admin',
      '-H', 'X-Passgate-Roles: root',
      ...curlTls(certs, stack.httpsPort, '/orders', 'alice'),
    ]);
    assert.equal(r.status, 200, r.body);
    const echo = echoOf(r.body);
    const names = Object.keys(echo.headers);
    assert.deepEqual(names.filter((n) => n.startsWith('x-passgate-')), []);
    assert.equal(typeof echo.headers['x-passport'], 'string', 'exactly one x-passport');
    assert.ok(echo.passport?.verified);
    assert.equal((echo.passport as { claims: { sub: string } }).claims.sub, 'alice');
    assert.equal(echo.headers['x-forwarded-client-cert'], toXfcc(certs.clients.alice.issued), 'only the gateway-written element, for the presented certificate');
  });

  it('a forged XFCC without a certificate does not make anyone authenticated', async () => {
    const c = await curl(['-H', 'x-forwarded-client-cert: Hash=aa;URI=spiffe://partners.example.com/org/acme/user/alice', ...curlTls(certs, stack.httpsPort, '/orders')]);
    assert.equal(c.status, 401, c.body);
  });

  it('plain HTTP: forged XFCC, x-passport and internal headers are stripped before the upstream', async () => {
    const r = await nodeRequest({
      port: stack.httpPort,
      path: '/public/x',
      headers: { 'x-forwarded-client-cert': 'Hash=aa;URI=spiffe://x', 'x-passport': 'forged', 'x-passgate-identity': 'root', 'x-envoy-internal': 'true' },
    });
    assert.equal(r.status, 200, r.body);
    const echo = echoOf(r.body);
    for (const h of ['x-forwarded-client-cert', 'x-passport', 'x-passgate-identity', 'x-envoy-internal']) assert.equal(echo.headers[h], undefined, h);
    assert.equal(echo.passport, undefined);
  });

  it('the trace id comes back to the client and is the one the upstream saw; a valid traceparent is kept', async () => {
    const r = await curl(curlTls(certs, stack.httpsPort, '/orders', 'alice'));
    const id = r.headers['x-trace-id'];
    assert.match(id ?? '', /^[0-9a-f]{32}$/);
    const m = TRACEPARENT.exec(single(echoOf(r.body).headers['traceparent']) ?? '');
    assert.equal(m?.[1], id);
    const mine = '0af7651916cd43dd8448eb211c80319c';
    const k = await curl(['-H', `traceparent: 00-${mine}-b7ad6b7169203331-01`, ...curlTls(certs, stack.httpsPort, '/orders', 'alice')]);
    assert.equal(k.headers['x-trace-id'], mine);
    assert.equal(single(echoOf(k.body).headers['traceparent']), `00-${mine}-b7ad6b7169203331-01`);
    // Denials carry it too.
    const d = await curl(curlTls(certs, stack.httpsPort, '/orders'));
    assert.match(d.headers['x-trace-id'] ?? '', /^[0-9a-f]{32}$/);
  });

  it('a user blocked in FDS gets 403 through the gateway', async () => {
    const res = await fetch(`http://127.0.0.1:${stack.service.adminPort}/admin/fds/blocks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${FDS_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'user', subject: 'mallory', reason: 'e2e', ttl: '10m' }),
    });
    assert.ok(res.ok, await res.text());
    const r = await curl(curlTls(certs, stack.httpsPort, '/orders', 'mallory'));
    assert.equal(r.status, 403, r.body);
    assert.equal(r.headers['x-echo-upstream'], undefined);
    const ok = await curl(curlTls(certs, stack.httpsPort, '/orders', 'alice'));
    assert.equal(ok.status, 200);
  });

  it('streams a request body to the upstream', async () => {
    const body = Buffer.alloc(300_000, 0x61);
    const r = await nodeRequest({ port: stack.httpsPort, path: '/orders', method: 'POST', body, headers: { 'content-type': 'text/plain' }, tls: { ca: certs.ca, cert: certs.clients.alice.cert, key: certs.clients.alice.key } });
    assert.equal(r.status, 200, r.body);
    assert.equal(echoOf(r.body).bodyBytes, 300_000);
  });

  it('the sanitize filter runs before ext_authz: too many headers is its own 431; underscore headers are dropped', async () => {
    const many: string[] = [];
    for (let i = 0; i < 120; i++) many.push('-H', `x-h${i}: v`);
    const r = await curl([...many, `http://127.0.0.1:${stack.httpPort}/public/x`]);
    assert.equal(r.status, 431, r.body);
    assert.match(r.body, /Request Header Fields Too Large/);
    const u = await curl(['-H', 'x_user: admin', `http://127.0.0.1:${stack.httpPort}/public/x`]);
    assert.equal(u.status, 200);
    assert.equal(echoOf(u.body).headers['x_user'], undefined);
  });
});

describe('local gateway e2e: repeated failures lead to an FDS block', function () {
  this.timeout(30_000);
  let certs: TestCerts;
  let stack: Stack;
  before(async () => {
    certs = await makeCerts();
    stack = await startStack({ config: parseConfigText(testConfigYaml({ ipThreshold: 3 }), 'e2e-fds.yaml'), certs, serviceLogger: pino({ level: 'silent' }) });
  });
  after(async () => {
    await stack?.stop();
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  it('three 401s from one IP, then even a valid certificate from it gets 403 blocked', async () => {
    const before = await curl(curlTls(certs, stack.httpsPort, '/orders', 'alice'));
    assert.equal(before.status, 200);
    for (let i = 0; i < 3; i++) {
      const r = await curl(curlTls(certs, stack.httpsPort, '/orders'));
      assert.equal(r.status, 401, `attempt ${i + 1}: ${r.body}`);
    }
    const after = await curl(curlTls(certs, stack.httpsPort, '/orders', 'alice'));
    assert.equal(after.status, 403, after.body);
    assert.match(after.body, /blocked/);
  });
});
