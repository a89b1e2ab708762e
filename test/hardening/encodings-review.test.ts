/**
 * Independent review: meaning smuggled through encodings. Two spellings a client (or an identity
 * provider, a certificate issuer, an operator's config) can produce that the service merges into one
 * value, or one input two parts of the service read differently. Each case drives the real service
 * over gRPC (and, for SSO, a real OpenID Provider, the local gateway and Redis). A failing test here
 * is a finding: the source is not changed by this review.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createCa, issueCertificate, toXfcc } from '../../ext-authz/src/devcerts/generate.js';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import { httpCheck, startService, type Running } from '../support/service.js';
import { ecKey, nowSec, signEs256, type RawKey } from '../tokens/helpers.js';
import { Browser, REDIS_URL, startSso, TestOpenIdProvider, type SsoStack } from '../oidc/support.js';
import { ACCOUNTS } from '../oidc/provider.js';

const TOKEN = `review-enc-${randomBytes(12).toString('hex')}`;
const ISS = 'https://id.review.example';
const AUD = 'https://api.review.example';

function yaml(issuerJwk: Record<string, unknown>): string {
  return `
tokens:
  issuers:
    op:
      issuer: ${ISS}
      keys: [${JSON.stringify({ ...issuerJwk, kid: 'k1', alg: 'ES256' })}]
      algorithms: [ES256]
      audience: [${AUD}]
      identity: { subject: sub, groups: groups, scopes: scope }
identity:
  mtls:
    rules:
      - uri: { prefix: "spiffe://acme/" }
        identity: { subject: "{rest}", kind: user }
fds:
  store: memory
  admin: { token: ${TOKEN} }
gateways:
  paths:
    kind: public
    routes:
      - { name: cafe, match: { path: { prefix: "/caf%C3%A9" } }, stages: [{ type: deny, status: 403, reason: cafe_forbidden }] }
      - { name: menu, match: { path: { prefix: "/men%C3%BC" } }, stages: [{ type: deny, status: 403, reason: menu_forbidden }] }
      - { name: admin, match: { path: { prefix: /admin } }, stages: [{ type: deny, status: 403, reason: admin_forbidden }] }
    defaultRoute: { stages: [allow] }
  hosts:
    kind: public
    routes:
      - { name: admin-host, match: { hosts: [admin.example.com] }, stages: [{ type: deny, status: 403, reason: admin_host_forbidden }] }
    defaultRoute: { stages: [allow] }
  tokens:
    kind: public
    routes:
      - { name: writers, stages: [{ type: jwt, issuers: [op] }, { type: authorize, groups: ["scope:orders:write"] }, allow] }
  methods:
    kind: public
    routes: [{ name: reads, match: { methods: [GET, HEAD] }, stages: [allow] }]
    defaultRoute: { stages: [{ type: deny, status: 401, reason: writes_need_auth }] }
  certs:
    kind: secure
    trustXfcc: true
    routes: [{ name: r, stages: [fds, mtls, allow] }]
  ips:
    kind: public
    routes: [{ name: r, stages: [fds, allow] }]
`;
}

function outcome(res: CheckResponse): string {
  if (res.denied_response === undefined || res.denied_response === null) return 'allow';
  return `${res.denied_response.status?.code}:${JSON.parse(String(res.denied_response.body ?? '{}')).reason}`;
}

describe('encodings review: one meaning, one spelling', function () {
  this.timeout(30_000);
  let svc: Running;
  let issuer: RawKey;

  before(async () => {
    issuer = ecKey();
    svc = await startService(yaml(issuer.jwk));
  });
  after(async () => svc?.stop());

  const ask = async (gateway: string, opts: Parameters<typeof httpCheck>[0] = {}) => outcome(await svc.check(httpCheck({ ...opts, gateway })));

  async function admin(method: 'POST' | 'DELETE', body: Record<string, unknown>): Promise<{ status: number; json: Record<string, any> }> {
    const url = `http://127.0.0.1:${svc.svc.adminPort}/admin/fds/blocks${method === 'DELETE' ? `?kind=${body['kind']}&subject=${encodeURIComponent(String(body['subject']))}` : ''}`;
    const res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      ...(method === 'POST' ? { body: JSON.stringify({ reason: 'review', ttl: '10m', ...body }) } : {}),
    });
    return { status: res.status, json: (await res.json()) as Record<string, any> };
  }

  describe('route predicates vs the normalized request', () => {
    it('held: unreserved escapes and dot segments of /admin hit the deny route; %C0%AE (2-byte overlong ".") is refused', async () => {
      for (const p of ['/%61dmin', '/x/%2E%2E/admin', '/x/../admin/y']) assert.equal(await ask('paths', { path: p }), '403:admin_forbidden', p);
      assert.equal(await ask('paths', { path: '/x/%C0%AE%C0%AE/admin' }), '400:path_invalid_encoding');
    });

    it('a path predicate the config spells in another form than the path policy is refused at start (it could never match), naming the key and the form to write', async () => {
      // Request paths are rewritten to uppercase hex and raw non-ASCII is refused, so `/caf%c3%a9` or `/menü`
      // in a deny route would be a dead route every spelling of the protected path walks past.
      const dead = (prefix: string) => `gateways:\n  paths:\n    kind: public\n    routes:\n      - { name: cafe, match: { path: { prefix: "${prefix}" } }, stages: [allow] }\n`;
      await assert.rejects(startService(dead('/caf%c3%a9')), /gateways\.paths\.routes\[0\]\.match\.path\.prefix: "\/caf%c3%a9" can never match: request paths are compared in their normalized form "\/caf%C3%A9"; write that/);
      await assert.rejects(startService(dead('/menü')), /gateways\.paths\.routes\[0\]\.match\.path\.prefix: "\/menü" can never match.*path_invalid_character.*write "\/men%C3%BC"/s);
      await assert.rejects(startService(dead('/a/../admin')), /can never match: request paths are compared in their normalized form "\/admin"/);
      // Written in the normalized form, the deny routes hold for every spelling clients send.
      const cases: Array<[string, string]> = [
        ['/caf%c3%a9', '403:cafe_forbidden'], // lowercase hex, normalized to the config's spelling
        ['/caf%C3%A9/menu', '403:cafe_forbidden'], // what browsers and curl send for /café/menu
        ['/men%C3%BC', '403:menu_forbidden'], // /menü as every client percent-encodes it
      ];
      const got = [];
      for (const [p] of cases) got.push([p, await ask('paths', { path: p })]);
      assert.deepEqual(got, cases);
    });

    it('overlong 3- and 4-byte UTF-8 for "." (%E0%80%AE, %F0%80%80%AE) is refused like %C0%AE, not passed as a path that a lenient decoder reads as /x/../admin', async () => {
      assert.equal(await ask('paths', { path: '/x/%E0%80%AE%E0%80%AE/admin' }), '400:path_invalid_encoding');
      assert.equal(await ask('paths', { path: '/x/%F0%80%80%AE%F0%80%80%AE/admin' }), '400:path_invalid_encoding');
    });

    it('held: methods are matched as sent when they are the standard uppercase tokens', async () => {
      assert.equal(await ask('methods', { method: 'GET' }), 'allow');
      assert.equal(await ask('methods', { method: 'POST' }), '401:writes_need_auth');
    });

    it('a method is case-sensitive (RFC 9110 §9.1): "get" is not judged by the GET route', async () => {
      // The view uppercases the method, so "get" and "Get" take the public read route while Envoy forwards them as
      // written; a backend comparing r.Method == "GET" (Go, most routers) treats them as some other method.
      for (const m of ['get', 'Get']) assert.equal(await ask('methods', { method: m }), '401:writes_need_auth', m);
    });

    it('held: host predicates ignore ASCII case and the port', async () => {
      for (const h of ['admin.example.com', 'ADMIN.Example.COM', 'admin.example.com:8443']) assert.equal(await ask('hosts', { host: h }), '403:admin_host_forbidden', h);
    });

    it('a host route holds for the same host written as an absolute FQDN (trailing dot), which DNS, browsers and nginx treat as that host', async () => {
      for (const h of ['admin.example.com.', 'admin.example.com.:443']) assert.equal(await ask('hosts', { host: h }), '403:admin_host_forbidden', h);
    });
  });

  describe('jwt: groups and scopes', () => {
    const token = (claims: Record<string, unknown>) =>
      signEs256({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' }, { iss: ISS, aud: AUD, sub: 'alice', exp: nowSec() + 300, iat: nowSec(), ...claims }, issuer.privateKey);
    const withToken = (t: string) => ask('tokens', { headers: { authorization: `Bearer ${t}` } });

    it('held: the scope orders:write satisfies authorize groups [scope:orders:write]; no scope is a 403', async () => {
      assert.equal(await withToken(token({ scope: 'orders:read orders:write' })), 'allow');
      assert.equal(await withToken(token({ scope: 'orders:read', groups: ['staff'] })), '403:forbidden_identity');
    });

    it('an IdP group literally named "scope:orders:write" is not the OAuth scope orders:write', async () => {
      // identity.groups holds both the groups claim and `scope:<name>` for each scope, in one namespace: a user
      // whose directory group is called "scope:orders:write" passes a route that requires the granted scope.
      assert.equal(await withToken(token({ scope: 'orders:read', groups: ['scope:orders:write'] })), '403:forbidden_identity');
    });
  });

  describe('fds: admin subjects vs the subjects a Check reports', () => {
    it('held: a certificate serial blocked without leading zeros, in any case and with colons, blocks the certificate', async () => {
      const ca = await createCa();
      const cert = await issueCertificate({ ca, sans: { uri: ['spiffe://acme/dave'] }, serial: '7d1e2f' });
      const xfcc = { 'x-forwarded-client-cert': toXfcc(cert) };
      assert.equal(await ask('certs', { headers: xfcc }), 'allow');
      assert.equal((await admin('POST', { kind: 'cert', subject: '7D:1E:2F' })).status, 201);
      assert.equal(await ask('certs', { headers: xfcc }), '403:blocked');
    });

    it('a certificate serial blocked as OpenSSL and Node print it (0A:1B:2C, leading zero kept) blocks that certificate', async () => {
      // facts.serial drops leading zeros (a1b2c) and identity.mtls.deny.serials strips them too, but the FDS admin
      // API keeps them (0a1b2c): the block is stored, answered 201, and never matches the certificate it names.
      const ca = await createCa();
      const cert = await issueCertificate({ ca, sans: { uri: ['spiffe://acme/carol'] }, serial: '0a1b2c' });
      const xfcc = { 'x-forwarded-client-cert': toXfcc(cert) };
      assert.equal(await ask('certs', { headers: xfcc }), 'allow');
      const made = await admin('POST', { kind: 'cert', subject: '0A:1B:2C' });
      assert.equal(made.status, 201);
      assert.equal(await ask('certs', { headers: xfcc }), '403:blocked', `stored as ${made.json['block']?.subject}, the certificate's serial is ${cert.serial}`);
    });

    it('held: IPv4-mapped IPv6 and plain IPv4 are one address, for blocks and for the Check\'s source', async () => {
      assert.equal((await admin('POST', { kind: 'ip', subject: '::ffff:192.0.2.9' })).status, 201);
      assert.equal(await ask('ips', { sourceAddress: '192.0.2.9' }), '403:blocked');
      assert.equal((await admin('POST', { kind: 'ip', subject: '198.51.100.0/24' })).status, 201);
      assert.equal(await ask('ips', { sourceAddress: '::ffff:198.51.100.20' }), '403:blocked');
    });

    it('a CIDR block written in IPv4-mapped form (::ffff:203.0.113.0/120) blocks the IPv4 addresses it covers', async () => {
      // canonicalIp maps ::ffff:a.b.c.d to a.b.c.d (every Check source is IPv4 text), canonicalCidr keeps the range as
      // IPv6 (::ffff:cb00:7100/120): the block is stored and listed, and covers no address a Check can report.
      assert.equal(await ask('ips', { sourceAddress: '203.0.113.50' }), 'allow');
      const made = await admin('POST', { kind: 'ip', subject: '::ffff:203.0.113.0/120' });
      assert.equal(made.status, 201);
      for (const ip of ['203.0.113.50', '::ffff:203.0.113.50']) assert.equal(await ask('ips', { sourceAddress: ip }), '403:blocked', `${ip} vs block ${made.json['block']?.subject}`);
    });
  });
});

interface Echo {
  readonly path: string;
  readonly headers: Record<string, string | undefined>;
}

describe('encodings review: SSO session cookie and identity headers (oidc-provider, local gateway, Redis)', function () {
  this.timeout(60_000);
  const keyPrefix = `review:enc:${randomBytes(4).toString('hex')}:`;
  const COOKIE = '__Host-passgate';
  let op: TestOpenIdProvider;
  let sso: SsoStack;

  before(async () => {
    ACCOUNTS['mallory'] = { email: 'mallory@corp.example', name: 'Mallory', groups: ['staff,admins'] };
    op = await new TestOpenIdProvider().listen();
    sso = await startSso({ issuer: op.issuer, keyPrefix });
    await op.configure(sso.origin);
  });
  after(async () => {
    delete ACCOUNTS['mallory'];
    await sso?.stop();
    await op?.close();
    const redis = new Redis(REDIS_URL);
    try {
      const keys = await redis.keys(`${keyPrefix}*`);
      if (keys.length > 0) await redis.del(...keys);
    } finally {
      redis.disconnect();
    }
  });

  async function login(user: string): Promise<{ browser: Browser; echo: Echo; ticket: string }> {
    const browser = new Browser(user);
    const page = await browser.navigate(`${sso.origin}/app/home`);
    assert.equal(page.status, 200, page.hops.map((h) => `${h.status} ${h.url}`).join('\n'));
    const ticket = browser.cookie('127.0.0.1', COOKIE);
    assert.ok(ticket, `no ${COOKIE} cookie after ${user}'s login`);
    return { browser, echo: page.json<Echo>(), ticket };
  }

  /** One navigation with an exact Cookie header, as a browser sends it (longer cookie paths first). */
  async function withCookie(cookie: string): Promise<{ status: number; echo: Echo | undefined }> {
    const res = await new Browser('nobody').request(`${sso.origin}/app/page`, { headers: { cookie, accept: 'text/html', 'sec-fetch-mode': 'navigate' } });
    const text = await res.text();
    return { status: res.status, echo: res.status === 200 ? (JSON.parse(text) as Echo) : undefined };
  }

  it('held: the session cookie identifies its own user; a cookie merely named like ours (prefix) is not it', async () => {
    const alice = await login('alice');
    const own = await withCookie(`theme=dark; ${COOKIE}=${alice.ticket}`);
    assert.equal(own.echo?.headers['x-auth-request-user'], 'alice');
    assert.ok(!String(own.echo?.headers['cookie'] ?? '').includes(alice.ticket), 'the ticket never reaches upstream');
    assert.equal((await withCookie(`x${COOKIE}=${alice.ticket}`)).status, 302, 'xname=... is another cookie: login');
  });

  it('a "__Host-passgate=<ticket>" inside another cookie\'s value (a cookie any sibling subdomain can set) is not read as the session', async () => {
    // withoutOurCookies splits on ";" and sees cookie `theme` (forwarding it upstream); cookieValue scans for the name
    // after any space and takes bob's ticket from theme's value. The __Host- prefix exists so that no other origin
    // can choose this cookie; a sibling subdomain (Domain=.corp.example, Path=/app, sent first) chooses it anyway.
    const bob = await login('bob');
    const alice = await login('alice');
    const r = await withCookie(`theme=dark ${COOKIE}=${bob.ticket}; ${COOKIE}=${alice.ticket}`);
    assert.equal(r.status, 200);
    assert.equal(r.echo?.headers['x-auth-request-user'], 'alice', 'the browser\'s own session cookie must decide who is signed in');
    // Without the victim's own cookie the smuggled value must not sign anyone in either.
    assert.notEqual((await withCookie(`theme=dark ${COOKIE}=${bob.ticket}`)).status, 200, 'a cookie named theme signed the browser in as bob');
  });

  it('held: Passgate\'s own authorize reads a group named "staff,admins" as one group (mallory is refused /admin)', async () => {
    const mallory = await login('mallory');
    const page = await mallory.browser.navigate(`${sso.origin}/admin/x`);
    assert.equal(page.status, 403);
    assert.equal(page.json<{ reason: string }>().reason, 'forbidden_identity');
  });

  it('x-auth-request-groups tells one group named "staff,admins" apart from the two groups staff and admins', async () => {
    // The header joins groups with ",": the tool behind the gateway (oauth2-proxy convention) splits on ",", so
    // mallory (one group, "staff,admins", which some directories let users name) arrives exactly as alice, an admin.
    const alice = await login('alice');
    const mallory = await login('mallory');
    assert.equal(alice.echo.headers['x-auth-request-groups'], 'staff,admins');
    assert.notEqual(mallory.echo.headers['x-auth-request-groups'], alice.echo.headers['x-auth-request-groups']);
  });
});
