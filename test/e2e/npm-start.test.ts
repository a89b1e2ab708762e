/**
 * What a newcomer does: `npm start` (local-gateway/src/dev.ts, run as its own
 * process on the embedded default config, with fresh dev certificates in a
 * temp folder and OS-chosen ports), then paste the curl commands it prints.
 * Each command must answer as its comment says: 200 with a verified Passport,
 * 401 without a certificate, 403 for the blocked demo user, 200 on the public
 * gateway. SIGTERM stops the whole chain with exit code 0.
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

  it('SIGTERM stops the chain with exit code 0', async () => {
    const exit = once(child, 'exit');
    child.kill('SIGTERM');
    const [code] = (await exit) as [number | null];
    assert.equal(code, 0);
  });
});
