/**
 * The local gateway's ext_proc filter against a processor that misbehaves on
 * purpose (a real grpc-js server on the official service definition shape we
 * load): Envoy's answers to each mistake, so the chain tests can trust the
 * emulation. Each request names the behaviour in `x-behaviour`.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { loadExtProcService, type ProcessingRequest, type ProcessingResponse } from '../../ext-authz/src/e2ee/ext-proc-proto.js';
import { EchoUpstream, type EchoBody } from '../../local-gateway/src/echo-upstream.js';
import { LocalGateway } from '../../local-gateway/src/gateway.js';

const raw = (key: string, value: string) => ({ header: { key, raw_value: Buffer.from(value) }, append_action: 2 });

function behaviourOf(msg: ProcessingRequest): string {
  const h = msg.request_headers?.headers?.headers?.find((x) => x.key === 'x-behaviour');
  return h?.raw_value ? Buffer.from(h.raw_value).toString() : '';
}

/** Answers per behaviour; `seen` records which phases reached it. */
function processor(seen: string[]): grpc.UntypedServiceImplementation {
  return {
    Process(call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) {
      let behaviour = '';
      call.on('data', (msg: ProcessingRequest) => {
        seen.push(msg.request ?? '?');
        if (msg.request === 'request_headers') {
          behaviour = behaviourOf(msg);
          if (behaviour === 'silent') return;
          if (behaviour === 'wrong-phase') return call.write({ request_body: { response: {} } });
          if (behaviour === 'pseudo') return call.write({ request_headers: { response: { header_mutation: { set_headers: [raw(':path', '/admin')] } } } });
          if (behaviour === 'both-values') return call.write({ request_headers: { response: { header_mutation: { set_headers: [{ header: { key: 'x-a', value: 'v', raw_value: Buffer.from('v') } }] } } } });
          if (behaviour === 'value-only') return call.write({ request_headers: { response: { header_mutation: { set_headers: [{ header: { key: 'x-a', value: 'v' }, append_action: 2 }] } } } });
          if (behaviour === 'immediate') return call.write({ immediate_response: { status: { code: 418 }, headers: { set_headers: [raw('x-why', 'teapot')] }, body: Buffer.from('short and stout') } });
          // Ask for the body (the e2ee processor's move for its content type).
          return call.write({ request_headers: { response: {} }, mode_override: { request_body_mode: 2 } });
        }
        if (msg.request === 'request_body') {
          const body = Buffer.from('replaced!');
          const set = behaviour === 'stale-length' ? [] : [raw('content-length', String(body.length))];
          return call.write({ request_body: { response: { header_mutation: { set_headers: set }, body_mutation: { body } } } });
        }
      });
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
  };
}

function post(port: number, behaviour: string, body = 'original body'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/x', method: 'POST', agent: false, headers: { 'x-behaviour': behaviour, 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('local gateway ext_proc filter: Envoy answers to processor mistakes', function () {
  this.timeout(20_000);
  const seen: string[] = [];
  let server: grpc.Server;
  let echo: EchoUpstream;
  let gw: LocalGateway;
  let hits = 0;

  before(async () => {
    server = new grpc.Server();
    server.addService(loadExtProcService().service, processor(seen));
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    echo = await EchoUpstream.start();
    echo.server.prependListener('request', () => hits++);
    gw = await LocalGateway.start({
      listeners: [{ name: 'app', port: 0, extProc: true }],
      upstream: { host: '127.0.0.1', port: echo.port },
      extAuthz: null,
      extProc: { target: `127.0.0.1:${port}`, messageTimeoutMs: 1500 },
      logger: pino({ level: 'silent' }),
    });
  });
  after(async () => {
    await gw?.stop();
    await echo?.stop();
    server?.forceShutdown();
  });

  it('a body mutation with a correct content-length reaches the upstream', async () => {
    const r = await post(gw.ports['app']!, 'ok');
    assert.equal(r.status, 200);
    const e = JSON.parse(r.body) as EchoBody;
    assert.equal(e.bodyText, 'replaced!');
    assert.equal(e.headers['content-length'], '9');
  });

  const fails: Array<[string, RegExp]> = [
    ['stale-length', /content-length 13 does not match the mutated body \(9 bytes\)/],
    ['pseudo', /may not set :path/],
    ['both-values', /only one of value or raw_value/],
    ['wrong-phase', /not a request_headers response/],
    ['silent', /message_timeout/],
  ];
  for (const [b, why] of fails) {
    it(`${b}: a 500 local reply, nothing reaches the upstream`, async () => {
      const before = hits;
      const r = await post(gw.ports['app']!, b);
      assert.equal(r.status, 500);
      assert.match(r.body, why);
      assert.equal(hits, before);
    });
  }

  it('value-only mutation: the header is set empty, as Envoy >= 1.27 reads raw_value only', async () => {
    const r = await post(gw.ports['app']!, 'value-only');
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body) as EchoBody).headers['x-a'], '');
  });

  it('an ImmediateResponse is the local reply: its status, headers and body', async () => {
    const r = await post(gw.ports['app']!, 'immediate');
    assert.equal(r.status, 418);
    assert.equal(r.headers['x-why'], 'teapot');
    assert.equal(r.body, 'short and stout');
  });

  it('only a request whose headers answer asked for it (mode_override) sends its body', () => {
    // Only behaviours that asked (ok, stale-length) sent a request_body.
    assert.equal(seen.filter((s) => s === 'request_body').length, 2);
  });
});
