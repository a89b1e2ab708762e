/**
 * The oauth2 stage against a real authorization server (oidc-provider), real
 * gRPC Checks, and a real Redis for revocation across two Passgate instances.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startService, httpCheck, headerMap, testConfig, type Running } from '../support/service.js';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import { TestAuthServer, GATEWAY, PARTNER_A, PARTNER_B, SHORT, OTHER_RESOURCE } from './provider.js';

const REDIS_URL = process.env['PASSGATE_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const ADMIN = 'oauth2-admin-token-0123456789abcdef';

function route(name: string, prefix: string, oauth2: Record<string, unknown>, failureMode?: 'open' | 'closed') {
  return { name, match: { path: { prefix } }, ...(failureMode ? { failureMode } : {}), stages: [{ type: 'oauth2', ...oauth2 }, { type: 'allow' }] };
}

export function oauth2Yaml(issuer: string, opts: { channel?: string; cache?: Record<string, unknown>; redis?: boolean } = {}): string {
  const server = (extra: Record<string, unknown> = {}) => ({
    issuer,
    discovery: 'oidc',
    allowInsecureHttp: true,
    timeoutMs: 1_000,
    audience: ['https://api.partner.example'],
    clientCredentialsScope: 'orders:read',
    client: { id: GATEWAY.id, secret: GATEWAY.secret },
    breaker: { failureThreshold: 1000, openMs: 100 },
    ...extra,
  });
  return JSON.stringify({
    server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, shutdownGraceMs: 200, defaultDeadlineMs: 1_500 },
    logging: { level: 'silent', audit: false },
    oauth2: {
      servers: {
        corp: server(),
        // Same server, but the gateway expects another issuer: every token is from the wrong one.
        wrongiss: server({ issuer: 'http://issuer.invalid', discovery: 'none', introspectionEndpoint: `${issuer}/token/introspection` }),
      },
      cache: { maxTtlMs: 60_000, negativeTtlMs: 5_000, staleIfErrorMs: 60_000, ...opts.cache },
      clients: { [PARTNER_A.id]: { kind: 'partner', org: 'acme', attributes: { tier: 'gold' } } },
      admin: { token: ADMIN },
      ...(opts.redis ? { revocation: { redisUrl: REDIS_URL, channel: opts.channel ?? `test:oauth2:${randomBytes(4).toString('hex')}` } } : {}),
    },
    gateways: {
      partners: {
        kind: 'public',
        routes: [
          route('read', '/read', { server: 'corp', requiredScopes: ['orders:read'] }),
          route('write', '/write', { server: 'corp', requiredScopes: ['orders:write'] }),
          route('either', '/either', { server: 'corp', requiredScopes: { anyOf: ['orders:write', 'reports:read'] } }),
          route('both', '/both', { server: 'corp', requiredScopes: { allOf: ['orders:read', 'orders:write'] } }),
          route('client', '/client', { server: 'corp', credentials: ['basic', 'headers'], clientHeaders: { id: 'x-client-id', secret: 'x-client-secret' }, requiredScopes: ['orders:read'] }),
          route('money', '/money', { server: 'corp', staleIfError: false, requiredScopes: ['orders:read'] }),
          route('open', '/open', { server: 'corp', staleIfError: false, requiredScopes: ['orders:read'] }, 'open'),
          route('wrongiss', '/wrongiss', { server: 'wrongiss' }),
          {
            name: 'acme-only',
            match: { path: { prefix: '/acme' } },
            stages: [{ type: 'oauth2', server: 'corp' }, { type: 'authorize', sources: ['oauth2'], kinds: ['service'], attributes: { org: ['acme'], client_kind: ['partner'] } }, { type: 'allow' }],
          },
        ],
      },
    },
    defaultGateway: 'partners',
  });
}

function bearer(path: string, token: string, headers: Record<string, string> = {}) {
  return httpCheck({ path, headers: { authorization: `Bearer ${token}`, ...headers } });
}

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

function status(res: CheckResponse): number {
  return res.ok_response ? 200 : (res.denied_response?.status?.code ?? -1);
}

function reason(res: CheckResponse): string {
  return res.ok_response ? 'ok' : (JSON.parse(res.denied_response?.body ?? '{}') as { reason: string }).reason;
}

function deniedHeaders(res: CheckResponse): Record<string, string> {
  return headerMap(res.denied_response?.headers as never);
}

async function until(what: string, cond: () => Promise<boolean>, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`${what} did not happen within ${ms} ms`);
}

async function revoke(svc: Running, body: Record<string, unknown>, token = ADMIN): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${svc.svc.adminPort}/admin/oauth2/revoke`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('oauth2 stage against a real authorization server (oidc-provider)', function () {
  this.timeout(30_000);
  let as: TestAuthServer;
  let svc: Running;

  before(async () => {
    as = await new TestAuthServer().start();
    svc = await startService(oauth2Yaml(as.issuer));
  });
  after(async () => {
    await svc?.stop();
    await as?.close();
  });
  afterEach(() => {
    as.mode = 'ok';
  });

  it('allows a valid token with the scope, sets the partner identity and strips the token before upstream', async () => {
    const token = await as.token(PARTNER_A, 'orders:read');
    const res = await svc.check(bearer('/read', token));
    assert.equal(status(res), 200, reason(res));
    assert.ok(res.ok_response!.headers_to_remove!.includes('authorization'));
  });

  it('gives authorize the partner identity (client id → org, kind) from oauth2.clients', async () => {
    const a = await as.token(PARTNER_A, 'orders:read');
    const b = await as.token(PARTNER_B, 'orders:read');
    assert.equal(status(await svc.check(bearer('/acme', a))), 200);
    assert.equal(reason(await svc.check(bearer('/acme', b))), 'forbidden_identity', 'partner-b has no org acme');
  });

  it('judges scopes per route from the cached answer, never a cached decision (CVE-2021-32701)', async () => {
    const token = await as.token(PARTNER_A, 'orders:read');
    const before = as.introspections;
    assert.equal(status(await svc.check(bearer('/read', token))), 200);
    const denied = await svc.check(bearer('/write', token));
    assert.equal(status(denied), 403);
    assert.equal(reason(denied), 'insufficient_scope');
    assert.equal(deniedHeaders(denied)['www-authenticate'], 'Bearer realm="passgate", error="insufficient_scope", scope="orders:write"');
    assert.equal(status(await svc.check(bearer('/read', token))), 200, 'the deny on /write did not stick to the token');
    assert.equal(reason(await svc.check(bearer('/write', token))), 'insufficient_scope', 'the allow on /read did not stick either');
    assert.equal(as.introspections - before, 1, 'one introspection served all four Checks');
  });

  it('checks all-of and any-of', async () => {
    const readOnly = await as.token(PARTNER_A, 'orders:read');
    const both = await as.token(PARTNER_A, 'orders:read orders:write');
    const reports = await as.token(PARTNER_B, 'reports:read');
    assert.equal(reason(await svc.check(bearer('/both', readOnly))), 'insufficient_scope');
    assert.equal(status(await svc.check(bearer('/both', both))), 200);
    assert.equal(reason(await svc.check(bearer('/either', readOnly))), 'insufficient_scope');
    assert.equal(status(await svc.check(bearer('/either', reports))), 200);
    assert.equal(status(await svc.check(bearer('/either', both))), 200);
  });

  it('denies an unknown, an expired and a revoked-at-the-server token with 401 invalid_token', async () => {
    const unknown = await svc.check(bearer('/read', 'not-a-token-the-server-issued'));
    assert.equal(status(unknown), 401);
    assert.equal(reason(unknown), 'invalid_token');
    assert.match(deniedHeaders(unknown)['www-authenticate']!, /^Bearer realm="passgate", error="invalid_token"$/);

    const short = await as.token(SHORT, 'orders:read');
    assert.equal(status(await svc.check(bearer('/read', short))), 200);
    await new Promise((r) => setTimeout(r, 3_200)); // the token lives three seconds: the cache entry ends with it
    assert.equal(reason(await svc.check(bearer('/read', short))), 'invalid_token');

    const revoked = await as.token(PARTNER_B, 'orders:read');
    await as.revoke(PARTNER_B, revoked);
    assert.equal(reason(await svc.check(bearer('/read', revoked))), 'invalid_token');
  });

  it('denies a token for another audience or from another issuer', async () => {
    const other = await as.token(PARTNER_A, 'orders:read', OTHER_RESOURCE);
    assert.equal(reason(await svc.check(bearer('/read', other))), 'invalid_token');
    const good = await as.token(PARTNER_A, 'orders:read');
    assert.equal(reason(await svc.check(bearer('/wrongiss', good))), 'invalid_token');
  });

  it('accepts client credentials by Basic (form-urlencoded) or headers, checked by the server; bad ones get 401 invalid_client', async () => {
    assert.equal(status(await svc.check(httpCheck({ path: '/client', headers: { authorization: basic(PARTNER_A.id, PARTNER_A.secret) } }))), 200);
    const viaHeaders = await svc.check(httpCheck({ path: '/client', headers: { 'x-client-id': PARTNER_B.id, 'x-client-secret': PARTNER_B.secret } }));
    assert.equal(status(viaHeaders), 200, reason(viaHeaders));
    assert.ok(viaHeaders.ok_response!.headers_to_remove!.includes('x-client-secret'));
    const calls = as.tokenRequests;
    const bad = await svc.check(httpCheck({ path: '/client', headers: { authorization: basic(PARTNER_A.id, 'wrong-secret') } }));
    assert.equal(status(bad), 401);
    assert.equal(reason(bad), 'invalid_client');
    assert.match(deniedHeaders(bad)['www-authenticate']!, /^Basic realm="passgate"/);
    assert.equal(reason(await svc.check(httpCheck({ path: '/client', headers: { authorization: basic(PARTNER_A.id, 'wrong-secret') } }))), 'invalid_client');
    assert.equal(as.tokenRequests - calls, 1, 'the negative answer was cached');
    // The good secret still works: a bad guess does not poison the client's entry (keys are per id+secret).
    assert.equal(status(await svc.check(httpCheck({ path: '/client', headers: { authorization: basic(PARTNER_A.id, PARTNER_A.secret) } }))), 200);
    assert.equal(reason(await svc.check(httpCheck({ path: '/client' }))), 'missing_credentials');
  });

  it('answers malformed Authorization headers with 400 invalid_request and calls no server', async () => {
    const before = as.introspections + as.tokenRequests;
    const cases: Record<string, string>[] = [
      { authorization: 'Basic !!!not-base64!!!' },
      { authorization: 'Basic cGFydG5lcg' }, // unpadded: not canonical
      { authorization: `Basic ${Buffer.from('no-colon-here').toString('base64')}` },
      { authorization: `Basic ${Buffer.from([0x70, 0xff, 0x3a, 0x78]).toString('base64')}` }, // not UTF-8
      { authorization: `Basic ${Buffer.from(':secret').toString('base64')}` }, // empty id
      { authorization: `Basic ${Buffer.from(`a:${'s'.repeat(5000)}`).toString('base64')}` }, // huge
      { authorization: `Basic ${Buffer.from('%zz:secret').toString('base64')}` }, // bad form-urlencoding
      { authorization: `Basic ${Buffer.from(`${PARTNER_A.id}:${PARTNER_A.secret}`).toString('base64')}, Basic eDp5` }, // two headers joined
      { 'x-client-id': PARTNER_A.id }, // secret header missing
    ];
    for (const headers of cases) {
      const res = await svc.check(httpCheck({ path: '/client', headers }));
      assert.equal(status(res), 400, JSON.stringify(headers).slice(0, 80));
      assert.equal(reason(res), 'invalid_request');
    }
    for (const authorization of ['Bearer', 'Bearer a b', `Bearer ${'t'.repeat(9000)}`, 'Digest abc', 'Bearer x, Bearer y']) {
      assert.equal(reason(await svc.check(httpCheck({ path: '/read', headers: { authorization } }))), 'invalid_request', authorization.slice(0, 30));
    }
    assert.equal(as.introspections + as.tokenRequests, before);
  });

  it('server down: closed routes answer 503, open routes allow marked degraded', async () => {
    const fresh = await as.token(PARTNER_B, 'orders:read');
    as.mode = 'down';
    const closed = await svc.check(bearer('/money', fresh));
    assert.equal(status(closed), 503);
    assert.equal(reason(closed), 'oauth2_unavailable');
    const open = await svc.check(bearer('/open', fresh));
    assert.equal(status(open), 200);
    assert.ok(headerMap(open.ok_response!.headers as never)['x-passgate-degraded'] === 'true');
  });

  it('server answering garbage to introspection is an outage, not a verdict', async () => {
    const token = await as.token(PARTNER_B, 'orders:read');
    as.mode = 'garbage';
    const res = await svc.check(bearer('/money', token));
    assert.equal(status(res), 503);
    assert.equal(reason(res), 'oauth2_unavailable');
    as.mode = 'ok';
    assert.equal(status(await svc.check(bearer('/money', token))), 200, 'nothing negative was cached');
  });

  it('server slower than the Check deadline: the Check answers in time with the failure mode', async () => {
    const token = await as.token(PARTNER_B, 'orders:read');
    as.mode = 'slow';
    as.slowMs = 1_500;
    const res = await svc.check(bearer('/money', token), 400);
    assert.equal(status(res), 503);
    assert.equal(reason(res), 'oauth2_unavailable');
  });

  it('admin revoke: by token, by hash, by client; refuses without the admin token', async () => {
    const token = await as.token(PARTNER_A, 'orders:read');
    assert.equal(status(await svc.check(bearer('/read', token))), 200);
    assert.equal((await revoke(svc, { token }, 'wrong-admin-token-0123456789')).status, 401);
    const r = await revoke(svc, { token });
    assert.equal(r.status, 200);
    assert.equal(r.body['dropped'], 1);
    assert.equal(reason(await svc.check(bearer('/read', token))), 'invalid_token');
    assert.equal((await revoke(svc, { tokenHash: 'ABC' })).status, 400);

    const b = await as.token(PARTNER_B, 'orders:read');
    assert.equal(status(await svc.check(bearer('/read', b))), 200);
    await revoke(svc, { client: PARTNER_B.id });
    assert.equal(reason(await svc.check(bearer('/read', b))), 'invalid_token');
    assert.equal(reason(await svc.check(httpCheck({ path: '/client', headers: { authorization: basic(PARTNER_B.id, PARTNER_B.secret) } }))), 'invalid_client');
    await revoke(svc, { restoreClient: PARTNER_B.id });
    assert.equal(status(await svc.check(bearer('/read', b))), 200);
  });

  it('admin revoke with forward: true revokes the token at the server too (RFC 7009)', async () => {
    const token = await as.token(PARTNER_A, 'orders:read');
    assert.equal(await as.active(token), true);
    const r = await revoke(svc, { token, forward: true });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body['forwarded'], { corp: 'revoked', wrongiss: 'oauth2 server "wrongiss" revocation: has no revocation_endpoint' });
    assert.equal(await as.active(token), false, 'a replica that missed the message gets active: false from the server');
  });
});

describe('oauth2 stale-if-error', function () {
  this.timeout(20_000);
  let as: TestAuthServer;
  let svc: Running;
  before(async () => {
    as = await new TestAuthServer().start();
    svc = await startService(oauth2Yaml(as.issuer, { cache: { maxTtlMs: 200, staleIfErrorMs: 60_000 } }));
  });
  after(async () => {
    await svc?.stop();
    await as?.close();
  });

  it('serves a stale answer while the server is down, except on a route that turned it off', async () => {
    const token = await as.token(PARTNER_A, 'orders:read');
    assert.equal(status(await svc.check(bearer('/read', token))), 200);
    assert.equal(status(await svc.check(bearer('/money', token))), 200);
    await new Promise((r) => setTimeout(r, 300)); // past maxTtlMs: the entry is stale
    as.mode = 'down';
    const stale = await svc.check(bearer('/read', token));
    assert.equal(status(stale), 200, reason(stale));
    assert.equal(reason(await svc.check(bearer('/write', token))), 'insufficient_scope', 'a stale answer still goes through the scope check');
    assert.equal(reason(await svc.check(bearer('/money', token))), 'oauth2_unavailable');
  });
});

describe('oauth2 revocation across two Passgate replicas on one real Redis', function () {
  this.timeout(20_000);
  let as: TestAuthServer;
  let a: Running;
  let b: Running;
  let yaml: string;
  before(async () => {
    as = await new TestAuthServer().start();
    yaml = oauth2Yaml(as.issuer, { redis: true, channel: `test:oauth2:${randomBytes(4).toString('hex')}` });
    a = await startService(yaml);
    b = await startService(yaml);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await as?.close();
  });

  it('a token revoked on replica A stops working on replica B at once, while the server still calls it active', async () => {
    const token = await as.token(PARTNER_A, 'orders:read');
    assert.equal(status(await a.check(bearer('/read', token))), 200);
    assert.equal(status(await b.check(bearer('/read', token))), 200);
    const calls = as.introspections;
    const r = await revoke(a, { token });
    assert.equal(r.status, 200);
    assert.equal(r.body['replicas'], 2, 'both replicas are subscribed');
    assert.equal(reason(await a.check(bearer('/read', token))), 'invalid_token');
    await until('replica B refuses the revoked token', async () => reason(await b.check(bearer('/read', token))) === 'invalid_token');
    assert.equal(as.introspections, calls, 'B refused from the revocation, not by asking the server again');
    // Cached entries are valid for 60 s: without the message B would still allow it.
  });

  it('a client revoked on B is refused on A', async () => {
    const token = await as.token(PARTNER_B, 'orders:read');
    assert.equal(status(await a.check(bearer('/read', token))), 200);
    await revoke(b, { client: PARTNER_B.id });
    await until('replica A refuses the revoked client', async () => reason(await a.check(bearer('/read', token))) === 'invalid_token');
    await revoke(b, { restoreClient: PARTNER_B.id });
    await until('replica A accepts the restored client', async () => status(await a.check(bearer('/read', token))) === 200);
  });

  it('a reload keeps the cache and the revocation channel; a rejected reload changes nothing', async () => {
    const token = await as.token(PARTNER_A, 'orders:read');
    assert.equal(status(await a.check(bearer('/read', token))), 200);
    assert.equal(status(await b.check(bearer('/read', token))), 200);
    const calls = as.introspections;
    await a.svc.applyConfig(testConfig(yaml.replace('"orders:write"]}', '"orders:write","orders:read"]}')));
    assert.equal(status(await a.check(bearer('/read', token))), 200);
    assert.equal(as.introspections, calls, 'the cache survived the reload');
    const broken = JSON.parse(yaml) as { oauth2: { servers: { corp: { client: Record<string, unknown> } } } };
    broken.oauth2.servers.corp.client = { id: GATEWAY.id, secretEnv: 'PASSGATE_TEST_UNSET_OAUTH2_SECRET' };
    await assert.rejects(a.svc.applyConfig(testConfig(JSON.stringify(broken))), /oauth2\.servers\.corp\.client\.secretEnv/);
    assert.equal(status(await a.check(bearer('/read', token))), 200);
    await revoke(a, { token });
    await until('replica B refuses the token revoked after A reloaded', async () => reason(await b.check(bearer('/read', token))) === 'invalid_token');
  });
});
