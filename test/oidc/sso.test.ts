/**
 * OIDC single sign-on through the local gateway: a scripted browser, a real
 * OpenID Provider (oidc-provider), a real Redis, two Passgate processes on it.
 */
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { Browser, newKeyPrefix, REDIS_URL, startSso, TestOpenIdProvider, until, type SsoStack } from './support.js';
import { SignJWT, generateKeyPair } from 'jose';
import { KeyLayout } from '../../ext-authz/src/fds/store/keys.js';
import { parseTicket, sessionKey, unseal } from '../../ext-authz/src/oidc/seal.js';
import { clientCommandsDuring } from '../fds/helpers.js';
import { CLIENT } from './provider.js';

const COOKIE = '__Host-passgate';

interface Echo {
  path: string;
  headers: Record<string, string>;
}

/** The key names of the default single-node layout (fds/store/keys.ts). */
const layout = (prefix: string) => new KeyLayout(prefix, 'fds', 'single-tag');

describe('oidc: single sign-on through the local gateway (oidc-provider, Redis, scripted browser)', function () {
  this.timeout(60_000);
  let op: TestOpenIdProvider;
  let a: SsoStack;
  let b: SsoStack;
  let redis: Redis;
  const keyPrefix = newKeyPrefix();

  before(async () => {
    op = await new TestOpenIdProvider().listen();
    a = await startSso({ issuer: op.issuer, keyPrefix, session: { refreshBeforeExpiryMs: 8_500 } });
    b = await startSso({ issuer: op.issuer, keyPrefix, session: { refreshBeforeExpiryMs: 8_500 } });
    await op.configure(a.origin, [b.origin]);
    redis = new Redis(REDIS_URL);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await op?.close();
    if (redis) {
      const keys = await redis.keys(`${keyPrefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });
  afterEach(() => {
    op.mode = 'ok';
    op.tamper = undefined;
  });

  async function login(browser: Browser, path = '/app/page?x=1', stack = a) {
    const page = await browser.navigate(`${stack.origin}${path}`);
    if (page.status !== 200) console.log(stack.logs.lines.filter((l) => l['detail']).map((l) => l['detail']).slice(-3));
    assert.equal(page.status, 200, `${page.hops.map((h) => `${h.status} ${h.url}`).join('\n')}\n${page.text.slice(0, 500)}`);
    return page;
  }

  it('logs a browser in (code + PKCE, state, nonce) and brings it back to the page it asked for, identity upstream, cookies stripped', async () => {
    const browser = new Browser('alice');
    const page = await login(browser);
    const echo = page.json<Echo>();
    assert.equal(echo.path, '/app/page?x=1');
    assert.equal(echo.headers['x-auth-request-user'], 'alice');
    assert.equal(echo.headers['x-auth-request-email'], 'alice@corp.example');
    assert.equal(echo.headers['x-auth-request-groups'], 'staff,admins');
    assert.ok(!String(echo.headers['cookie'] ?? '').includes(COOKIE), 'the session cookie never reaches upstream');
    const toProvider = new URL(page.hops[0]!.location!);
    assert.equal(toProvider.origin, op.issuer);
    assert.equal(toProvider.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(toProvider.searchParams.get('nonce'));
    assert.match(toProvider.searchParams.get('state')!, /^[A-Za-z0-9_-]{22}$/);
    const callback = page.hops.find((h) => h.url.startsWith(`${a.origin}/oauth2/callback`))!;
    assert.ok(new URL(callback.url).searchParams.get('iss'), 'the provider sends iss (RFC 9207), checked on return');
    const set = callback.setCookies.find((c) => c.startsWith(`${COOKIE}=`))!;
    assert.match(set, /; Path=\/; Secure; HttpOnly; SameSite=Lax$/);
    assert.match(set, /^__Host-passgate=[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}; Max-Age=\d+/);
    // The login flow's binding cookie is cleared on the first allowed answer.
    assert.deepEqual(browser.cookieNames('127.0.0.1').filter((k) => k.startsWith(`${COOKIE}-f-`)), []);
    // Signed in: the next page needs no provider round trip.
    const again = await browser.navigate(`${a.origin}/other`);
    assert.equal(again.hops.length, 1);
    assert.equal(again.status, 200);
  });

  it('answers fetch/XHR without a session with 401 JSON and a login link, not a redirect', async () => {
    const res = await new Browser().request(`${a.origin}/api/items`, { headers: { accept: 'application/json', 'sec-fetch-mode': 'cors' } });
    assert.equal(res.status, 401);
    const body = (await res.json()) as { reason: string };
    assert.equal(body.reason, 'oidc_login_required');
    assert.equal(res.headers.get('x-passgate-login'), '/oauth2/login?return_to=%2Fapi%2Fitems');
  });

  it('authorizes per page by group (authorize after oidc)', async () => {
    const alice = new Browser('alice');
    const bob = new Browser('bob');
    await login(alice);
    await login(bob);
    assert.equal((await alice.navigate(`${a.origin}/admin/x`)).status, 200);
    const denied = await bob.navigate(`${a.origin}/admin/x`);
    assert.equal(denied.status, 403);
    assert.equal(denied.json<{ reason: string }>().reason, 'forbidden_identity');
  });

  it('lets two tabs of one browser log in at once (login state is per flow)', async () => {
    const browser = new Browser('alice');
    // Signed in at the provider already (its own session cookie), not at this tool: both tabs come back with a code at once.
    await login(browser, '/warmup');
    browser.deleteCookie('127.0.0.1', COOKIE);
    const [one, two] = await Promise.all([browser.navigate(`${a.origin}/tab/one`), browser.navigate(`${a.origin}/tab/two`)]);
    assert.equal(one.status, 200, `${one.hops.map((h) => `${h.status} ${h.url}`).join('\n')}\n${one.text.slice(0, 300)}`);
    assert.equal(two.status, 200);
    assert.equal(one.json<Echo>().path, '/tab/one');
    assert.equal(two.json<Echo>().path, '/tab/two');
  });

  it('keeps no token and no claim readable in Redis (sealed under the per-session key from the cookie)', async () => {
    const browser = new Browser('alice');
    await login(browser);
    const ticket = parseTicket(browser.cookie('127.0.0.1', COOKIE)!)!;
    const keys = await redis.keys(`${keyPrefix}{fds}:oidc:*`);
    assert.ok(keys.includes(layout(keyPrefix).session('session', ticket.id)));
    let dump = '';
    for (const k of keys) {
      const type = await redis.type(k);
      if (type === 'hash') dump += JSON.stringify(await redis.hgetall(k));
      else if (type === 'string') dump += await redis.get(k);
      else if (type === 'set') dump += (await redis.smembers(k)).join(',');
    }
    // A JWT is two base64url JSON segments joined by '.' (sealed data is base64url too, so a bare "eyJ" can occur by chance).
    assert.doesNotMatch(dump, /eyJ[A-Za-z0-9_-]*\.eyJ/, 'no JWT (ID token) in the store');
    assert.ok(!dump.includes('alice'), 'no subject or email in the store');
    assert.ok(!dump.includes(ticket.secret), 'the per-session secret is not stored');
    const sealed = await redis.hget(layout(keyPrefix).session('session', ticket.id), 'd');
    const data = JSON.parse(unseal(sessionKey(ticket), ticket.id, sealed!)!) as { sub: string; idt: string; at: string };
    assert.equal(data.sub, 'alice');
    for (const token of [data.idt, data.at]) assert.ok(!dump.includes(token), 'the tokens are only inside the sealed blob');
    // No token and no ticket in any log line of the run so far.
    for (const line of [...a.logs.lines, ...b.logs.lines].map((l) => JSON.stringify(l))) {
      for (const secret of [data.idt, data.at, ticket.secret]) assert.ok(!line.includes(secret), `a log line carries a secret: ${line.slice(0, 200)}`);
    }
  });

  const NAV = { accept: 'text/html', 'sec-fetch-mode': 'navigate' };
  const HOST = '127.0.0.1';

  it('logs out: ends the session, expires the cookie, sends the browser to the provider with id_token_hint', async () => {
    const browser = new Browser('alice');
    await login(browser);
    const old = browser.cookie(HOST, COOKIE)!;
    const page = await browser.navigate(`${a.origin}/oauth2/logout`, { stopAt: (u) => u.origin === op.issuer });
    const hop = page.hops[0]!;
    assert.equal(hop.status, 302);
    const end = new URL(hop.location!);
    assert.equal(`${end.origin}${end.pathname}`, `${op.issuer}/session/end`);
    assert.ok(end.searchParams.get('id_token_hint')?.startsWith('eyJ'));
    assert.equal(end.searchParams.get('post_logout_redirect_uri'), `${a.origin}/`);
    assert.ok(hop.setCookies.some((c) => c.startsWith(`${COOKIE}=; Max-Age=0`)));
    assert.equal(browser.cookie(HOST, COOKIE), undefined);
    // The old cookie, replayed (e.g. copied before logout), finds no session: cleared again and sent to log in.
    const replay = await new Browser().request(`${a.origin}/x?y=1`, { headers: { cookie: `${COOKIE}=${old}`, ...NAV } });
    assert.equal(replay.status, 302);
    assert.equal(replay.headers.get('location'), '/x?y=1');
    assert.equal(((await replay.json()) as { reason: string }).reason, 'oidc_session_ended');
  });

  it('refuses a logout another site asks for (Sec-Fetch-Site, Origin or Referer) and keeps the session; a same-origin one works', async () => {
    const browser = new Browser('alice');
    await login(browser);
    const crossSite: Array<Record<string, string>> = [
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { origin: 'https://evil.example' },
      { referer: 'https://evil.example/page' },
      { referer: 'not a url' },
    ];
    for (const h of crossSite) {
      const r = await browser.request(`${a.origin}/oauth2/logout`, { headers: { ...NAV, ...h } });
      assert.equal(r.status, 403, JSON.stringify(h));
      assert.equal(((await r.json()) as { reason: string }).reason, 'oidc_logout_cross_site');
      assert.ok(browser.cookie(HOST, COOKIE), 'the cookie is not expired');
      assert.equal((await browser.request(`${a.origin}/still`, { headers: NAV })).status, 200, `session still valid after ${JSON.stringify(h)}`);
    }
    const own = await browser.request(`${a.origin}/oauth2/logout`, { headers: { ...NAV, 'sec-fetch-site': 'same-origin', referer: `${a.origin}/page` } });
    assert.equal(own.status, 302);
    assert.equal(browser.cookie(HOST, COOKIE), undefined);
  });

  it('back-channel logout from the provider ends the session on the other Passgate process too (warm cache there)', async () => {
    const browser = new Browser('bob');
    await login(browser);
    // The same browser on the second process (cookies are per host): read once (cold), then served from its cache.
    assert.equal((await browser.navigate(`${b.origin}/b-page`)).status, 200);
    assert.equal((await browser.navigate(`${b.origin}/b-page`)).hops.length, 1);
    // Bob signs out at the provider itself: it posts a logout token to the gateway's back-channel endpoint.
    const form = await browser.navigate(`${op.issuer}/session/end`);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(form.text)?.[1];
    assert.ok(xsrf, form.text.slice(0, 500));
    const sent = op.backchannelSent;
    const confirm = await browser.request(`${op.issuer}/session/end/confirm`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `xsrf=${encodeURIComponent(xsrf)}&logout=yes` });
    assert.ok(confirm.status < 400, `${confirm.status} ${(await confirm.text()).slice(0, 300)}`);
    await until('the provider delivered the logout token', () => op.backchannelSent > sent || op.backchannelErrors.length > 0);
    assert.deepEqual(op.backchannelErrors, []);
    const after = await browser.request(`${b.origin}/b-page`, { headers: NAV });
    assert.equal(after.status, 302, 'the second process saw the session gone in its one store call');
    assert.equal(((await after.json()) as { reason: string }).reason, 'oidc_session_ended');
    const onA = await browser.request(`${a.origin}/a-page`, { headers: NAV });
    assert.equal(onA.status, 302);
  });

  it('refreshes once for 50 concurrent requests on two processes (Redis lock), and both serve the new version', async () => {
    const browser = new Browser('alice');
    op.accessTtl = 10; // refreshBeforeExpiryMs is 8.5 s: due 1.5 s after login
    await login(browser);
    op.accessTtl = 3600; // the refreshed token is long-lived: nothing more is due
    assert.equal((await browser.navigate(`${b.origin}/warm`)).status, 200, 'the second process caches the first version');
    await new Promise((r) => setTimeout(r, 1_700));
    const before = op.seen.refreshGrants;
    const xhr = { accept: 'application/json', 'sec-fetch-mode': 'cors' };
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => browser.request(`${(i % 2 === 0 ? a : b).origin}/api/r${i}`, { headers: xhr })));
    assert.deepEqual(answers.map((r) => r.status), Array(50).fill(200), 'the requests are served with the session they have while the refresh runs');
    await until('the refresh reached the provider', () => op.seen.refreshGrants > before);
    await until('the refresh was stored', async () => {
      const t = parseTicket(browser.cookie(HOST, COOKIE)!)!;
      const d = JSON.parse(unseal(sessionKey(t), t.id, (await redis.hget(layout(keyPrefix).session('session', t.id), 'd'))!)!) as { ate: number };
      return d.ate - Date.now() > 60_000;
    });
    const more = await Promise.all(Array.from({ length: 20 }, (_, i) => browser.request(`${(i % 2 === 0 ? a : b).origin}/api/s${i}`, { headers: xhr })));
    assert.deepEqual(more.map((r) => r.status), Array(20).fill(200));
    assert.equal(op.seen.refreshGrants - before, 1, 'exactly one refresh call at the provider');
  });

  it('keeps serving sessions while the provider is down; a login then fails closed with a precise reason', async () => {
    const browser = new Browser('alice');
    await login(browser);
    // A login that got its code, whose exchange meets a dead provider.
    const pending = new Browser('bob');
    const stopped = await pending.navigate(`${a.origin}/later`, { stopAt: (u) => u.pathname === '/oauth2/callback' });
    const callbackUrl = stopped.hops[stopped.hops.length - 1]!.location!;
    op.mode = 'down';
    assert.equal((await browser.navigate(`${a.origin}/still`)).status, 200);
    const exchange = await pending.request(new URL(callbackUrl, a.origin).href, { headers: NAV });
    assert.equal(exchange.status, 502);
    assert.equal(((await exchange.json()) as { reason: string }).reason, 'oidc_provider_unavailable');
    // A process that never reached the provider cannot start a login: the route's failure mode (closed) answers 503.
    const cold = await startSso({ issuer: op.issuer, keyPrefix });
    try {
      const res = await new Browser().request(`${cold.origin}/x`, { headers: NAV });
      assert.equal(res.status, 503);
      assert.equal(((await res.json()) as { reason: string }).reason, 'oidc_provider_unavailable');
    } finally {
      await cold.stop();
    }
  });

  it('costs one Redis round trip per Check with a warm session, on a route with an fds stage and on one without', async () => {
    const browser = new Browser('alice');
    await login(browser);
    await browser.navigate(`${a.origin}/plain/warm`);
    for (const path of ['/app/one', '/plain/one']) {
      const seen = await clientCommandsDuring(REDIS_URL, async () => {
        for (let i = 0; i < 5; i++) assert.equal((await browser.navigate(`${a.origin}${path}`)).status, 200);
      });
      // Leaving out the FDS CIDR refresh timer and connection pings (housekeeping, not per Check).
      const perCheck = [...seen].filter(([name]) => !['hgetall', 'ping', 'info', 'echo'].includes(name));
      assert.deepEqual(perCheck, [['evalsha', 5]], `${path}: ${JSON.stringify([...seen])}`);
    }
  });

  it('sees a logout made on the other process on a route without an fds stage (the stage sends its watch itself)', async () => {
    const browser = new Browser('bob');
    await login(browser);
    assert.equal((await browser.navigate(`${b.origin}/plain/x`)).status, 200);
    assert.equal((await browser.navigate(`${b.origin}/plain/x`)).hops.length, 1, 'warm at b');
    const cookie = browser.cookie(HOST, COOKIE)!;
    await browser.navigate(`${a.origin}/oauth2/logout`, { stopAt: (u) => u.origin === op.issuer });
    const after = await new Browser().request(`${b.origin}/plain/x`, { headers: { cookie: `${COOKIE}=${cookie}`, ...NAV } });
    assert.equal(after.status, 302);
    assert.equal(((await after.json()) as { reason: string }).reason, 'oidc_session_ended');
  });

  describe('back-channel logout tokens', () => {
    const url = () => `${a.origin}/oauth2/backchannel-logout`;
    const EVENT = { 'http://schemas.openid.net/event/backchannel-logout': {} };
    async function token(claims: Record<string, unknown>, key = op.signingKey().key, kid = op.signingKey().kid): Promise<string> {
      const now = Math.floor(Date.now() / 1000);
      const payload = { iss: op.issuer, aud: CLIENT.id, iat: now, jti: `jti-${Math.random()}`, events: EVENT, sid: 'some-sid', ...claims };
      return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid, typ: 'logout+jwt' }).sign(key);
    }
    async function post(logoutToken: string): Promise<{ status: number; reason: string }> {
      const res = await fetch(url(), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `logout_token=${encodeURIComponent(logoutToken)}` });
      const body = (await res.json()) as { reason: string };
      return { status: res.status, reason: body.reason };
    }

    it('accepts a valid one once (jti is single use) and refuses forged or malformed ones', async () => {
      const good = await token({});
      assert.deepEqual(await post(good), { status: 200, reason: 'oidc_backchannel_logout' });
      assert.deepEqual(await post(good), { status: 400, reason: 'oidc_logout_token_replayed' });
      const other = (await generateKeyPair('RS256')).privateKey;
      assert.equal((await post(await token({}, other))).reason, 'oidc_logout_token_invalid', 'signed by another key');
      assert.equal((await post(await token({ nonce: 'n' }))).reason, 'oidc_logout_token_invalid', 'a nonce');
      assert.equal((await post(await token({ events: { other: {} } }))).reason, 'oidc_logout_token_invalid', 'no logout event');
      assert.equal((await post(await token({ sid: undefined }))).reason, 'oidc_logout_token_invalid', 'neither sid nor sub');
      assert.equal((await post(await token({ aud: 'someone-else' }))).reason, 'oidc_logout_token_invalid', 'another audience');
      assert.equal((await post(await token({ iss: 'https://evil.example' }))).reason, 'oidc_logout_token_invalid', 'another issuer');
      const get = await fetch(url());
      assert.equal(get.status, 400);
      const empty = await fetch(url(), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'x=1' });
      assert.equal(((await empty.json()) as { reason: string }).reason, 'oidc_logout_token_missing');
    });
  });

  describe('bad input', () => {
    async function reasonOf(res: Response): Promise<string> {
      return ((await res.json()) as { reason: string }).reason;
    }

    /** A login stopped just before its callback: the callback URL (relative to the gateway) and the browser. */
    async function pendingLogin(user = 'alice'): Promise<{ browser: Browser; callback: URL }> {
      const browser = new Browser(user);
      const page = await browser.navigate(`${a.origin}/p`, { stopAt: (u) => u.pathname === '/oauth2/callback' });
      return { browser, callback: new URL(page.hops[page.hops.length - 1]!.location!, a.origin) };
    }

    it('refuses a forged, malformed or replayed state', async () => {
      const forged = await new Browser().request(`${a.origin}/oauth2/callback?code=abc&state=AAAAAAAAAAAAAAAAAAAAAA`, { headers: NAV });
      assert.equal(forged.status, 400);
      assert.equal(await reasonOf(forged), 'oidc_state_unknown');
      const malformed = await new Browser().request(`${a.origin}/oauth2/callback?code=abc&state=x'`, { headers: NAV });
      assert.equal(await reasonOf(malformed), 'oidc_state_invalid');
      const { browser, callback } = await pendingLogin();
      assert.equal((await browser.request(callback.href, { headers: NAV })).status, 302);
      const replay = await browser.request(callback.href, { headers: NAV });
      assert.equal(replay.status, 400);
      assert.equal(await reasonOf(replay), 'oidc_state_unknown');
      const line = a.logs.lines.find((l) => l['reason'] === 'oidc_state_unknown');
      assert.ok(line, 'an audit line names the refusal');
    });

    it('refuses a callback from another browser than the one that started the login (state bound by cookie)', async () => {
      const { callback } = await pendingLogin();
      const res = await new Browser('mallory').request(callback.href, { headers: NAV });
      assert.equal(res.status, 400);
      assert.equal(await reasonOf(res), 'oidc_state_unbound');
    });

    it('refuses a missing code, a reused code and a wrong iss in the callback', async () => {
      const one = await pendingLogin();
      const noCode = new URL(one.callback);
      noCode.searchParams.delete('code');
      const missing = await one.browser.request(noCode.href, { headers: NAV });
      assert.equal(missing.status, 400);
      assert.match(await reasonOf(missing), /^oidc_(bad_callback|code_rejected|code_invalid)$/);

      const two = await pendingLogin();
      assert.equal((await two.browser.request(two.callback.href, { headers: NAV })).status, 302);
      const three = await pendingLogin();
      const reused = new URL(three.callback);
      reused.searchParams.set('code', two.callback.searchParams.get('code')!);
      const res = await three.browser.request(reused.href, { headers: NAV });
      assert.equal(res.status, 400);
      assert.equal(await reasonOf(res), 'oidc_code_rejected');

      const four = await pendingLogin();
      const wrongIss = new URL(four.callback);
      wrongIss.searchParams.set('iss', 'https://evil.example');
      const iss = await four.browser.request(wrongIss.href, { headers: NAV });
      assert.equal(iss.status, 400);
      assert.equal(await reasonOf(iss), 'oidc_bad_callback');
    });

    for (const [claim, value] of [
      ['iss', 'https://evil.example'],
      ['aud', 'someone-else'],
      ['nonce', 'not-the-nonce'],
    ] as const) {
      it(`refuses an ID token with a wrong ${claim} (re-signed with the provider's key)`, async () => {
        const { browser, callback } = await pendingLogin();
        op.tamper = { [claim]: value };
        const res = await browser.request(callback.href, { headers: NAV });
        assert.equal(res.status, 400);
        assert.equal(await reasonOf(res), 'oidc_code_invalid');
        assert.equal(browser.cookie(HOST, COOKIE), undefined, 'no session was made');
      });
    }

    it('refuses tampered, malformed and oversize cookies', async () => {
      const browser = new Browser('alice');
      await login(browser);
      const good = browser.cookie(HOST, COOKIE)!;
      const flipped = `${good.slice(0, -2)}${good.endsWith('A') ? 'B' : 'A'}${good.slice(-1)}`;
      for (const [target, what] of [
        [a, 'warm'],
        [b, 'cold'],
      ] as const) {
        const res = await new Browser().request(`${target.origin}/x`, { headers: { cookie: `${COOKIE}=${flipped}`, ...NAV } });
        assert.equal(res.status, 302, what);
        assert.equal(await reasonOf(res), 'oidc_cookie_forged', what);
        assert.ok(res.headers.getSetCookie().some((c) => c.startsWith(`${COOKIE}=; Max-Age=0`)));
      }
      const malformed = await new Browser().request(`${a.origin}/x`, { headers: { cookie: `${COOKIE}=../../etc`, ...NAV } });
      assert.equal(await reasonOf(malformed), 'oidc_cookie_invalid');
      // Over oidc.session.maxCookieHeaderBytes (8 KiB here), under the gateway's own header limit.
      const big = await new Browser().request(`${a.origin}/x`, { headers: { cookie: `${COOKIE}=${good}; junk=${'x'.repeat(9_000)}`, ...NAV } });
      assert.equal(big.status, 431);
      assert.equal(await reasonOf(big), 'cookie_too_large');
      assert.equal((await browser.navigate(`${a.origin}/x`)).status, 200, 'the real session is untouched');
    });

    it('never redirects to another origin after login (return_to)', async () => {
      for (const evil of ['//evil.example/x', '/\\evil.example', 'https://evil.example/', 'http://127.0.0.1:1/x', 'javascript:alert(1)', '/x\r\nSet-Cookie: a=b']) {
        const res = await new Browser().request(`${a.origin}/oauth2/login?return_to=${encodeURIComponent(evil)}`, { headers: NAV });
        assert.equal(res.status, 400, evil);
        assert.equal(await reasonOf(res), 'oidc_return_to_invalid', evil);
      }
      const browser = new Browser('alice');
      const page = await browser.navigate(`${a.origin}/oauth2/login?return_to=${encodeURIComponent(`${a.origin}/deep/link?q=1`)}`);
      assert.equal(page.status, 200);
      assert.equal(page.json<Echo>().path, '/deep/link?q=1');
    });
  });

  // Nested so it runs after every other test of the file (mocha runs a block's own tests before its nested blocks).
  describe('afterwards', () => {
    it('wrote no JWT into any log line of the whole run', () => {
      assert.ok(a.logs.lines.length > 20);
      for (const line of [...a.logs.lines, ...b.logs.lines].map((l) => JSON.stringify(l))) assert.ok(!line.includes('eyJ'), line.slice(0, 300));
    });
  });
});
