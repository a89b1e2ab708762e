/**
 * What a newcomer does: `npm start` (local-gateway/src/dev.ts, run as its own
 * process on the embedded default config, with fresh dev certificates in a
 * temp folder and OS-chosen ports), then paste the curl commands it prints.
 * Each command must answer as its comment says: 200 with a verified Passport,
 * 401 without a certificate, 403 for the blocked demo user, 200 on the public
 * gateway. The single sign-on demo it prints logs a person in through its local OpenID Provider.
 * SIGTERM stops the whole chain with exit code 0.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ensureWasmBuilt, REPO_ROOT } from '../../local-gateway/src/stack.js';
import type { EchoBody } from '../../local-gateway/src/echo-upstream.js';
import { curl } from './support/harness.js';
import { Browser, type Page } from '../oidc/support.js';

const READY = 'Ctrl-C stops everything.';

describe('npm start: the printed curl commands work as described', function () {
  this.timeout(60_000);
  let dir: string;
  let child: ChildProcess;
  const commands: string[] = [];
  let stdout = '';

  before(async () => {
    ensureWasmBuilt();
    dir = mkdtempSync(join(tmpdir(), 'lg-npm-start-'));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PASSGATE_DEV_CERTS: join(dir, 'certs'),
      PASSGATE_GRPC_PORT: '0',
      PASSGATE_ADMIN_PORT: '0',
      GATEWAY_HTTPS_PORT: '0',
      GATEWAY_HTTP_PORT: '0',
      UPSTREAM_PORT: '0',
      SSO_PROVIDER_PORT: '0',
      SSO_GATEWAY_PORT: '0',
    };
    delete env['PASSGATE_FDS_ADMIN_TOKEN']; // npm start makes one up, as for a newcomer
    delete env['PASSGATE_DEV_CONFIG'];
    child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'local-gateway', 'src', 'dev.ts'), '--dev'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4096)));
    const exited = once(child, 'exit').then(([code]) => {
      throw new Error(`npm start exited (${String(code)}) before it was ready:\n${stderr}\n${stdout}`);
    });
    const ready = new Promise<void>((resolve) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        stdout += `${line}\n`;
        const t = line.trim();
        if (t.startsWith('curl -si ')) commands.push(t.slice('curl '.length));
        if (t === READY) resolve();
      });
    });
    await Promise.race([ready, exited]);
  });

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The printed command (arguments split on spaces: the paths it prints have none here), run from the repo root like a newcomer. */
  const run = (i: number) => curl(commands[i]!.split(' '));

  it('prints four commands and no warning about the blocked user', () => {
    assert.equal(commands.length, 4, stdout);
    assert.ok(!stdout.includes('could not block mallory'), stdout);
  });

  it('with the client certificate: 200, a Passport the echo upstream verified, x-trace-id back', async () => {
    const r = await run(0);
    assert.equal(r.status, 200, `${JSON.stringify(r)}\n${stdout}`);
    const echo = JSON.parse(r.body) as EchoBody;
    assert.equal(echo.passport?.verified, true, JSON.stringify(echo.passport));
    assert.equal((echo.passport as { claims: { sub: string } }).claims.sub, 'alice');
    assert.match(r.headers['x-trace-id'] ?? '', /^[0-9a-f]{32}$/);
  });

  it('without a client certificate: 401', async () => {
    const r = await run(1);
    assert.equal(r.status, 401, r.body);
    assert.equal(r.headers['x-echo-upstream'], undefined);
  });

  it('25 requests without a certificate do not lock out loopback: a valid certificate still gets 200', async () => {
    for (let i = 0; i < 25; i++) assert.equal((await run(1)).status, 401);
    const r = await run(0);
    assert.equal(r.status, 200, r.body);
  });

  it('the banner names the config used and says how to unblock', () => {
    assert.match(stdout, /config {5}ext-authz\/src\/config\/default\.yaml /);
    assert.match(stdout, /FDS never auto-blocks 127\.0\.0\.0\/8, ::1 \(fds\.exempt\.ip\)/);
    assert.match(stdout, /npm run passgate -- fds unblock ip 127\.0\.0\.1 --url http:\/\/127\.0\.0\.1:\d+/);
    assert.match(stdout, /DEVELOPMENT CONFIG IN USE/);
  });

  it('the blocked demo user: 403', async () => {
    const r = await run(2);
    assert.equal(r.status, 403, r.body);
    assert.equal(r.headers['x-echo-upstream'], undefined);
  });

  it('the public gateway over plain HTTP: 200 from the echo upstream', async () => {
    const r = await run(3);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-echo-upstream'], '1');
  });

  /** The sign-in and consent forms of the demo's OpenID Provider, answered as a person would. */
  async function signIn(browser: Browser, url: string, login: string): Promise<Page> {
    let page = await browser.navigate(url);
    for (let step = 0; step < 4; step++) {
      const form = /<form[^>]*action="([^"]+)"[^>]*method="post"[^>]*>([\s\S]*?)<\/form>/i.exec(page.text);
      if (form === null) return page;
      const fields = new URLSearchParams();
      for (const m of form[2]!.matchAll(/<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"/gi)) fields.set(m[1]!, m[2]!);
      if (fields.get('prompt') === 'login') {
        fields.set('login', login);
        fields.set('password', 'anything');
      }
      const res = await browser.request(new URL(form[1]!.replace(/&amp;/g, '&'), page.url).href, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: fields.toString() });
      await res.arrayBuffer();
      const location = res.headers.get('location');
      assert.ok(res.status >= 300 && res.status < 400 && location, `the ${fields.get('prompt')} form answered ${res.status}`);
      page = await browser.navigate(new URL(location, form[1]!).href);
    }
    throw new Error(`still on a provider form after 4 steps: ${page.url}`);
  }

  it('the single sign-on demo: log in as alice in the printed URL, the echo shows her identity headers; /admin needs the admins group', async () => {
    const origin = /open (http:\/\/localhost:\d+)\/ in a browser/.exec(stdout)?.[1];
    assert.ok(origin, `the banner prints the SSO URL:\n${stdout}`);
    const alice = new Browser('alice');
    const home = await signIn(alice, `${origin}/`, 'alice');
    assert.equal(home.status, 200, `${home.url}: ${home.text.slice(0, 300)}`);
    assert.equal(new URL(home.url).origin, origin, 'back on the tool after the login');
    const headers = home.json<EchoBody>().headers;
    assert.equal(headers['x-auth-request-user'], 'alice');
    assert.equal(headers['x-auth-request-email'], 'alice@demo.example');
    assert.equal(headers['x-auth-request-groups'], 'staff,admins');
    assert.ok(!String(headers['cookie'] ?? '').includes('__Host-'), 'the session cookie does not reach the upstream');
    const admin = await alice.navigate(`${origin}/admin`);
    assert.equal(admin.status, 200, admin.text.slice(0, 300));
    const bob = new Browser('bob');
    assert.equal((await signIn(bob, `${origin}/`, 'bob')).status, 200);
    const refused = await bob.navigate(`${origin}/admin`);
    assert.equal(refused.status, 403, refused.text.slice(0, 300));
  });

  it('SIGTERM stops the chain with exit code 0', async () => {
    const exit = once(child, 'exit');
    child.kill('SIGTERM');
    const [code] = (await exit) as [number | null];
    assert.equal(code, 0);
  });
});
