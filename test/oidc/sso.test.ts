/**
 * OIDC single sign-on through the local gateway: a scripted browser, a real
 * OpenID Provider (oidc-provider), a real Redis, two Passgate processes on it.
 */
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { Browser, newKeyPrefix, REDIS_URL, startSso, TestOpenIdProvider, until, type SsoStack } from './support.js';
import { parseTicket, sessionKey, unseal } from '../../ext-authz/src/oidc/seal.js';

const COOKIE = '__Host-passgate';

interface Echo {
  path: string;
  headers: Record<string, string>;
}

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
    const keys = await redis.keys(`${keyPrefix}oidc:*`);
    assert.ok(keys.includes(`${keyPrefix}oidc:{s:${ticket.id}}`));
    let dump = '';
    for (const k of keys) {
      const type = await redis.type(k);
      if (type === 'hash') dump += JSON.stringify(await redis.hgetall(k));
      else if (type === 'string') dump += await redis.get(k);
      else if (type === 'set') dump += (await redis.smembers(k)).join(',');
    }
    assert.ok(!dump.includes('eyJ'), 'no JWT (ID token) in the store');
    assert.ok(!dump.includes('alice'), 'no subject or email in the store');
    assert.ok(!dump.includes(ticket.secret), 'the per-session secret is not stored');
    const sealed = await redis.hget(`${keyPrefix}oidc:{s:${ticket.id}}`, 'd');
    const data = JSON.parse(unseal(sessionKey(ticket), ticket.id, sealed!)!) as { sub: string; idt: string; at: string };
    assert.equal(data.sub, 'alice');
    // No token and no ticket in any log line of the run so far.
    for (const line of [...a.logs.lines, ...b.logs.lines].map((l) => JSON.stringify(l))) {
      for (const secret of [data.idt, data.at, ticket.secret]) assert.ok(!line.includes(secret), `a log line carries a secret: ${line.slice(0, 200)}`);
    }
  });
});
