/**
 * The local gateway as an ext_authz client, against a scripted ext_authz
 * server on real gRPC (our protos): what the CheckRequest carries, and how
 * each kind of answer reaches the upstream and the client.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { LocalGateway } from '../../local-gateway/src/gateway.js';
import { EchoUpstream, type EchoBody } from '../../local-gateway/src/echo-upstream.js';
import { defaultFilters, ensureWasmBuilt } from '../../local-gateway/src/stack.js';
import { toXfcc } from '../../ext-authz/src/devcerts/generate.js';
import { curl, curlTls, makeCerts, nodeRequest, type TestCerts } from './support/harness.js';

describe('local gateway e2e: the Check call and the answer, as Envoy makes and applies them', function () {
  this.timeout(30_000);
  let certs: TestCerts;
  let server: grpc.Server;
  let echo: EchoUpstream;
  let gw: LocalGateway;
  const seen: CheckRequest[] = [];
  /** Milliseconds left on each call's gRPC deadline when the server received it. */
  const deadlineLeft: number[] = [];
  let answer: CheckResponse = { status: { code: 0 } };
  /** true: the server never answers, like a service too slow for the deadline. */
  let hang = false;
  /** Resolves when a hanging call was cancelled by the client's deadline. */
  let cancelled: Promise<void> = Promise.resolve();

  before(async () => {
    ensureWasmBuilt();
    certs = await makeCerts();
    server = new grpc.Server();
    server.addService(loadAuthorizationService().service, {
      Check(call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, cb: grpc.sendUnaryData<CheckResponse>) {
        seen.push(call.request);
        const deadline = call.getDeadline();
        deadlineLeft.push(deadline instanceof Date ? deadline.getTime() - Date.now() : Number(deadline) - Date.now());
        if (!hang) return cb(null, answer);
        cancelled = new Promise((resolve) => call.on('cancelled', () => resolve()));
      },
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    echo = await EchoUpstream.start();
    gw = await LocalGateway.start({
      listeners: [
        { name: 'secure', port: 0, tls: { key: certs.serverKey, cert: certs.serverCert, ca: certs.ca }, contextExtensions: { gateway: 'secure', team: 'a' } },
        { name: 'public', port: 0, contextExtensions: { gateway: 'public' } },
      ],
      upstream: { host: '127.0.0.1', port: echo.port },
      extAuthz: { target: `127.0.0.1:${port}`, statusOnError: 503 },
      filters: defaultFilters(),
      logger: pino({ level: 'silent' }),
    });
  });
  after(async () => {
    await gw?.stop();
    await echo?.stop();
    server?.forceShutdown();
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    seen.length = 0;
    deadlineLeft.length = 0;
    answer = { status: { code: 0 } };
    hang = false;
  });

  it('CheckRequest over mTLS: peers and principals, pseudo-headers, joined repeats, XFCC, sni, context_extensions', async () => {
    const r = await curl(['-H', 'x-rep: a', '-H', 'x-rep: b', '-H', 'X-Mixed-Case: v', ...curlTls(certs, gw.ports['secure']!, '/orders?id=1', 'alice')]);
    assert.equal(r.status, 200);
    const a = seen[0]!.attributes!;
    const http = a.request!.http!;
    assert.equal(a.source?.principal, 'spiffe://partners.example.com/org/acme/user/alice');
    assert.equal(a.source?.address?.socket_address?.address, '127.0.0.1');
    assert.equal(a.destination?.principal, 'localhost');
    assert.equal(a.destination?.address?.socket_address?.port_value, gw.ports['secure']);
    assert.deepEqual(a.tls_session, { sni: 'localhost' });
    assert.deepEqual(a.context_extensions, { gateway: 'secure', team: 'a' });
    assert.equal(http.method, 'GET');
    assert.equal(http.path, '/orders?id=1');
    assert.equal(http.host, `localhost:${gw.ports['secure']}`);
    assert.equal(http.scheme, 'https');
    assert.equal(http.protocol, 'HTTP/1.1');
    assert.match(http.id ?? '', /^\d+$/);
    const h = http.headers!;
    assert.equal(h[':method'], 'GET');
    assert.equal(h[':path'], '/orders?id=1');
    assert.equal(h[':authority'], `localhost:${gw.ports['secure']}`);
    assert.equal(h[':scheme'], 'https');
    assert.equal(h['x-rep'], 'a,b');
    assert.equal(h['x-mixed-case'], 'v');
    assert.equal(h['host'], undefined);
    assert.match(h['traceparent'] ?? '', /^00-[0-9a-f]{32}-/, 'the trace filter ran before ext_authz');
    assert.equal(h['x-forwarded-client-cert'], toXfcc(certs.clients.alice.issued));
  });

  it("sends Envoy's ext_authz timeout (200 ms by default) as the gRPC deadline", async () => {
    await nodeRequest({ port: gw.ports['public']!, path: '/p' });
    assert.equal(deadlineLeft.length, 1);
    // The deadline is the behaviour under test: what the server sees left of it is at most the 200 ms the gateway set.
    assert.ok(deadlineLeft[0]! > 0 && deadlineLeft[0]! <= 200, `deadline ${deadlineLeft[0]} ms ahead`);
  });

  it('a service slower than the deadline: the call is cancelled and the client gets status_on_error, the upstream nothing', async () => {
    hang = true;
    const r = await nodeRequest({ port: gw.ports['public']!, path: '/p' });
    assert.equal(r.status, 503, r.body);
    assert.equal(r.headers['x-echo-upstream'], undefined);
    assert.equal(seen.length, 1);
    await cancelled; // the server saw the client give up (else this hangs until the mocha timeout)
  });

  it('CheckRequest over plain HTTP: no principal, no tls_session, no XFCC', async () => {
    await nodeRequest({ port: gw.ports['public']!, path: '/p', headers: { 'x-forwarded-client-cert': 'Hash=aa' } });
    const a = seen[0]!.attributes!;
    assert.equal(a.source?.principal, undefined);
    assert.equal(a.tls_session, undefined);
    assert.equal(a.request?.http?.scheme, 'http');
    assert.equal(a.request?.http?.headers?.['x-forwarded-client-cert'], undefined);
  });

  it('OK answer: set/append/remove on the upstream request, response headers, query rewrite', async () => {
    answer = {
      status: { code: 0 },
      ok_response: {
        headers: [
          { header: { key: 'x-user', value: 'alice' }, append: { value: false } },
          { header: { key: 'x-tags', value: 'two' }, append: { value: true } },
          { header: { key: 'x-absent', value: 'v' }, append: { value: true } },
          { header: { key: 'x-temp', value: 't' }, append: { value: false } },
        ],
        headers_to_remove: ['x-temp', 'x-secret', ':authority'],
        response_headers_to_add: [{ header: { key: 'x-authz', value: 'ok' }, append: { value: false } }],
        query_parameters_to_set: [{ key: 'tenant', value: 'acme' }],
        query_parameters_to_remove: ['debug'],
      },
    };
    const r = await nodeRequest({ port: gw.ports['public']!, path: '/p?debug=1&x=2', headers: { 'x-user': 'mallory', 'x-tags': 'one', 'x-secret': 's' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-authz'], 'ok');
    const e = JSON.parse(r.body) as EchoBody;
    assert.equal(e.path, '/p?x=2&tenant=acme');
    assert.equal(e.headers['x-user'], 'alice');
    assert.equal(e.headers['x-tags'], 'one,two');
    assert.equal(e.headers['x-absent'], undefined);
    assert.equal(e.headers['x-temp'], undefined);
    assert.equal(e.headers['x-secret'], undefined);
    assert.equal(e.headers['host'], `127.0.0.1:${gw.ports['public']}`);
  });

  it('denied answer: its status, body and headers reach the client; the upstream is not called', async () => {
    answer = {
      status: { code: 7 },
      denied_response: {
        status: { code: 429 },
        body: '{"error":"slow down"}',
        headers: [
          { header: { key: 'content-type', value: 'application/json' }, append: { value: false } },
          { header: { key: 'retry-after', value: '3' }, append: { value: false } },
          { header: { key: 'set-cookie', value: 'a=1' }, append: { value: false } },
          { header: { key: 'set-cookie', value: 'b=2' }, append: { value: false } },
        ],
      },
    };
    const r = await nodeRequest({ port: gw.ports['public']!, path: '/p' });
    assert.equal(r.status, 429);
    assert.equal(r.body, '{"error":"slow down"}');
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers['retry-after'], '3');
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(r.headers['x-echo-upstream'], undefined);
    assert.match(String(r.headers['x-trace-id']), /^[0-9a-f]{32}$/, 'the response went back through the trace filter');
  });
});
