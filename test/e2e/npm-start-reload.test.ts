/**
 * `npm start -- --config FILE` (a real dev.ts process): the banner names that
 * file, and SIGHUP or an edit of the file reloads the service's config as in
 * production, without stopping the local chain; SIGINT then stops it with 0.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ensureWasmBuilt, REPO_ROOT } from '../../local-gateway/src/stack.js';
import { DEFAULT_CONFIG_PATH } from '../../ext-authz/src/config/load.js';

const PUBLIC_ROUTE = '      - name: public\n        match: { path: { prefix: /public } }\n        stages: [allow]\n';

function configWith(publicStages: string): string {
  const base = readFileSync(DEFAULT_CONFIG_PATH, 'utf8');
  assert.ok(base.includes(PUBLIC_ROUTE), 'default.yaml still has the public route this test edits');
  return base.replace(PUBLIC_ROUTE, `      - name: public\n        match: { path: { prefix: /public } }\n        stages: ${publicStages}\n`);
}

describe('npm start -- --config FILE: reload as in production', function () {
  this.timeout(90_000);
  let dir: string;
  let child: ChildProcess;
  let stdout = '';
  const waiters: Array<{ re: RegExp; from: number; resolve: () => void }> = [];

  /** Resolves when a line matching `re` appears after this call. */
  function next(re: RegExp, timeoutMs = 20_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no line matching ${re} within ${timeoutMs} ms:\n${stdout.slice(-3000)}`)), timeoutMs);
      waiters.push({ re, from: stdout.length, resolve: () => (clearTimeout(t), resolve()) });
    });
  }

  let httpPort = 0;
  const status = async () => (await fetch(`http://127.0.0.1:${httpPort}/public/hello`)).status;

  before(async () => {
    ensureWasmBuilt();
    dir = mkdtempSync(join(tmpdir(), 'lg-reload-'));
    const file = join(dir, 'my.yaml');
    writeFileSync(file, configWith('[allow]'));
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
    delete env['PASSGATE_DEV_CONFIG'];
    // As `npm start -- --config FILE` runs it: the script's --dev, then the user's flags.
    child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'local-gateway', 'src', 'dev.ts'), '--dev', '--config', file], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      stdout += `${line}\n`;
      for (const w of [...waiters]) {
        if (w.re.test(stdout.slice(w.from))) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    });
    await next(/Ctrl-C stops everything\./, 60_000);
    httpPort = Number(/http:\/\/127\.0\.0\.1:(\d+) \(gateway=public\)/.exec(stdout)?.[1]);
    assert.ok(httpPort > 0, stdout);
    // The first Check also opens the gateway's gRPC channel; on a loaded machine that can pass the
    // gateway's 200 ms ext_authz timeout (503). Warm it up; the assertions below are on later requests.
    await status();
  });

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the banner names the file given, not the embedded default, and no development warning', () => {
    assert.match(stdout, new RegExp(`config +\\S*${join(dir, 'my.yaml').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&').split('/').pop()!} `));
    assert.doesNotMatch(stdout, /default\.yaml/);
    assert.doesNotMatch(stdout, /DEVELOPMENT CONFIG IN USE/);
  });

  it('SIGHUP reloads the file and the chain keeps serving', async () => {
    assert.equal(await status(), 200);
    // Write, then wait for the watcher's reload so the SIGHUP below is a reload of its own.
    const watched = next(/config reloaded/);
    writeFileSync(join(dir, 'my.yaml'), configWith('[{ type: deny, status: 403, reason: closed_for_test }]'));
    await watched;
    assert.equal(await status(), 403);
    const hup = next(/SIGHUP: config reloaded/);
    child.kill('SIGHUP');
    await hup;
    assert.equal(child.exitCode, null, 'SIGHUP did not stop the chain');
    assert.equal(await status(), 403);
  });

  it('a file edit alone reloads it; a broken file keeps the previous config serving', async () => {
    const back = next(/config reloaded/);
    writeFileSync(join(dir, 'my.yaml'), configWith('[allow]'));
    await back;
    assert.equal(await status(), 200);
    const rejected = next(/new config rejected/);
    writeFileSync(join(dir, 'my.yaml'), configWith('[{ type: deny, stauts: 403 }]'));
    await rejected;
    assert.equal(await status(), 200);
  });

  it('SIGINT stops the chain with exit code 0', async () => {
    const exit = once(child, 'exit');
    child.kill('SIGINT');
    const [code] = (await exit) as [number | null];
    assert.equal(code, 0);
  });
});
