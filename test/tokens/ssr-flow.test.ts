/**
 * The seed's SSR flow end to end, every hop real: the browser signs a fresh
 * request JWT → public gateway (gRPC Check: proof + replay cache + Passport)
 * → a tiny Node SSR server → SSR gateway (gRPC Check: the SSR server's own
 * workload identity from mTLS, plus the user's Passport, audience-checked)
 * → upstream, which verifies the Passport it gets with the consumer library.
 * The browser's proof is single-use: the SSR server cannot replay it, and a
 * replay of the first request is refused.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startService, headerMap, type Running } from '../support/service.js';
import { cleanup, REDIS_URL, testPrefix } from '../fds/helpers.js';
import { createPassportVerifier } from '../../ext-authz/src/passport/consumer/index.js';
import { apiCheck, ecKey, jti, nowSec, reasonOf, signEs256, statusOf } from './helpers.js';
import type { CheckRequest } from '../../ext-authz/src/proto/types.js';

const SSR_SPIFFE = 'spiffe://cluster.local/ns/web/sa/ssr';

function listen(server: Server): Promise<number> {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)));
}

describe('tokens: the SSR flow end to end (browser proof → public gateway → SSR server → SSR gateway → upstream)', function () {
  this.timeout(20_000);
  const device = ecKey();
  const prefix = testPrefix();
  let pub: Running;
  let ssrGw: Running;
  let ssr: Server;
  let upstream: Server;
  let ssrPort = 0;
  const seen: Array<{ user: string; audience: unknown }> = [];

  before(async () => {
    pub = await startService(
      JSON.stringify({
        server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, defaultDeadlineMs: 5000 },
        fds: { store: 'redis', redis: { url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 1000 } },
        tokens: { clients: { 'web-device': { keys: [{ ...device.jwk, kid: 'dev-1' }], algorithms: ['ES256'], issuer: 'web-device' } } },
        passport: { issuer: 'https://public.passgate.test', audience: 'ssr', keys: { active: 'p1', entries: [{ id: 'p1', generate: true }] }, source: { type: 'static', users: { 'u-alice': { id: 'u-alice', roles: ['customer'] } } } },
        gateways: { web: { kind: 'public', routes: [{ name: 'pages', stages: ['fds', { type: 'proof', mode: 'request-jwt', clients: ['web-device'] }, 'passport'] }] } },
        defaultGateway: 'web',
      }),
    );
    const publicJwks = `http://127.0.0.1:${pub.svc.adminPort}/.well-known/jwks.json`;
    ssrGw = await startService(
      JSON.stringify({
        server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, defaultDeadlineMs: 5000 },
        identity: { mtls: { rules: [{ name: 'ssr', uri: { exact: SSR_SPIFFE }, identity: { subject: 'ssr', kind: 'service' } }] } },
        tokens: {
          issuers: { 'public-gateway': { issuer: 'https://public.passgate.test', jwksUri: publicJwks, algorithms: ['EdDSA', 'ES256'], audience: ['ssr'], typ: ['passport+jwt'] } },
        },
        passport: { issuer: 'https://ssr.passgate.test', audience: 'orders', keys: { active: 's1', entries: [{ id: 's1', generate: true }] }, source: { type: 'static', users: { 'u-alice': { id: 'u-alice', roles: ['customer'] } } } },
        gateways: {
          ssr: {
            kind: 'ssr',
            trustXfcc: true,
            routes: [
              {
                name: 'upstream',
                // The SSR server's own identity first (only it may call), then the user from the Passport.
                stages: ['mtls', { type: 'authorize', subjects: ['ssr'], kinds: ['service'] }, { type: 'jwt', issuers: ['public-gateway'], from: [{ header: 'x-passport' }], strip: false }, 'passport'],
              },
            ],
          },
        },
        defaultGateway: 'ssr',
      }),
    );
    const verifier = createPassportVerifier({ jwksUrl: `http://127.0.0.1:${ssrGw.svc.adminPort}/.well-known/jwks.json`, issuer: 'https://ssr.passgate.test', audience: 'orders' });
    upstream = createServer((req, res) => void upstreamHandler(req, res).catch((e: Error) => res.writeHead(500).end(`upstream: ${e.message}`)));
    const upstreamHandler = async (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      const r = await verifier.verify(req.headers['x-passport'] as string | undefined);
      if (!r.ok) {
        res.writeHead(401).end(r.error.code);
        return;
      }
      seen.push({ user: r.passport.sub, audience: r.passport.aud });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ orders: [], user: r.passport.sub }));
    };
    const upstreamPort = await listen(upstream);
    // The SSR server: gets the page request (with the public gateway's Passport), calls upstream through the SSR gateway.
    ssr = createServer((req, res) => void ssrHandler(req, res).catch((e: Error) => res.writeHead(500).end(`ssr: ${e.message}`)));
    const ssrHandler = async (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      const passport = req.headers['x-passport'] as string;
      const check: CheckRequest = {
        attributes: {
          source: { address: { socket_address: { address: '10.1.2.3', port_value: 40000 } }, principal: SSR_SPIFFE },
          request: { http: { method: 'GET', host: 'orders.internal', path: '/orders', scheme: 'https', headers: { ':authority': 'orders.internal', 'x-passport': passport } } },
        },
      };
      const answer = await ssrGw.check(check);
      if (!answer.ok_response) {
        res.writeHead(502).end(`ssr gateway: ${reasonOf(answer)}`);
        return;
      }
      const headers = headerMap(answer.ok_response.headers as never);
      const up = await fetch(`http://127.0.0.1:${upstreamPort}/orders`, { headers: { 'x-passport': headers['x-passport'] ?? '' } });
      res.writeHead(up.status, { 'content-type': 'text/html' }).end(`<p>${await up.text()}</p>`);
    };
    ssrPort = await listen(ssr);
  });
  after(async () => {
    await pub?.stop();
    await ssrGw?.stop();
    ssr?.close();
    upstream?.close();
    await cleanup(prefix);
  });

  /** What Envoy in front of the SSR server does: Check, then forward with the headers the answer sets. */
  async function viaPublicGateway(requestJwt: string): Promise<{ status: number; body: string; reason: string }> {
    const answer = await pub.check(apiCheck({ host: 'www.example.com', path: '/account', headers: { 'request-jwt': requestJwt } }));
    if (!answer.ok_response) return { status: statusOf(answer), body: '', reason: reasonOf(answer) };
    const headers = headerMap(answer.ok_response.headers as never);
    const res = await fetch(`http://127.0.0.1:${ssrPort}/account`, { headers: { 'x-passport': headers['x-passport'] ?? '' } });
    return { status: res.status, body: await res.text(), reason: 'allowed' };
  }

  function requestJwt(): string {
    const iat = nowSec();
    return signEs256({ typ: 'request+jwt', alg: 'ES256', kid: 'dev-1' }, { iss: 'web-device', sub: 'u-alice', jti: jti(), iat, exp: iat + 30, htm: 'GET', htu: 'https://www.example.com/account' }, device.privateKey);
  }

  it('upstream sees a Passport for the right user, issued by the SSR gateway for its own audience', async () => {
    const r = await viaPublicGateway(requestJwt());
    assert.equal(r.status, 200, `${r.reason} ${r.body}`);
    assert.match(r.body, /"user":"u-alice"/);
    assert.deepEqual(seen.at(-1), { user: 'u-alice', audience: 'orders' });
  });

  it('refuses a replay of the first request at the public gateway', async () => {
    const t = requestJwt();
    assert.equal((await viaPublicGateway(t)).status, 200);
    const again = await viaPublicGateway(t);
    assert.equal(again.status, 401);
    assert.equal(again.reason, 'proof_replayed');
  });

  it('the SSR gateway refuses a caller without the SSR workload identity, and a Passport for another audience', async () => {
    const ok = await pub.check(apiCheck({ host: 'www.example.com', path: '/account', headers: { 'request-jwt': requestJwt() } }));
    const passport = headerMap(ok.ok_response!.headers as never)['x-passport']!;
    const noMtls = await ssrGw.check({ attributes: { source: { principal: 'spiffe://cluster.local/ns/web/sa/other' }, request: { http: { method: 'GET', host: 'orders.internal', path: '/orders', headers: { 'x-passport': passport } } } } });
    assert.equal(statusOf(noMtls), 403);
    // The SSR gateway's own Passport (audience orders) is not accepted as the user's (audience ssr).
    const own = await ssrGw.check({ attributes: { source: { principal: SSR_SPIFFE }, request: { http: { method: 'GET', host: 'orders.internal', path: '/orders', headers: { 'x-passport': 'a.b.c' } } } } });
    assert.equal(statusOf(own), 401);
  });
});
