/**
 * Issue 12 items 9 and 10: admin secrets of at least 16 characters from every
 * source, failed admin authentication logged (without the token) and counted,
 * the admin port on loopback by default; a missing key or token file is a
 * config error (exit 2, "Nothing was started", the key named).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { captureLogs } from '../support/service.js';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { parseConfigText } from '../../ext-authz/src/config/load.js';

function runProcess(yaml: string, env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'passgate-h-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, yaml);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'ext-authz/src/main.ts', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

const BASE = `
server: { grpc: { host: 127.0.0.1, port: 0 }, admin: { port: 0 } }
logging: { level: silent }
gateways: { public: { kind: public, routes: [{ name: a, stages: [allow] }] } }
defaultGateway: public
`;

describe('startup config errors and the admin API (issue 12 items 9, 10)', function () {
  this.timeout(40_000);

  it('a missing passport key file: exit 2, "Nothing was started", the key named', async () => {
    const r = await runProcess(`${BASE}
passport:
  issuer: https://passgate.test
  audience: [orders]
  keys: { active: k1, entries: [{ id: k1, file: /nonexistent/passgate-key.pem }] }
  source: { type: static, users: {} }
`);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /Nothing was started/);
    assert.match(r.stderr, /passport\.keys\.entries\[0\]\.file: cannot read \/nonexistent\/passgate-key\.pem/);
  });

  it('a missing FDS admin token file, or a short token from the environment: exit 2 naming the key', async () => {
    const missing = await runProcess(`${BASE}\nfds: { store: memory, admin: { tokenFile: /nonexistent/token } }\n`, { PASSGATE_FDS_ADMIN_TOKEN: '' });
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /Nothing was started/);
    assert.match(missing.stderr, /fds\.admin\.tokenFile: cannot read \/nonexistent\/token/);
    const short = await runProcess(`${BASE}\nfds: { store: memory }\n`, { PASSGATE_FDS_ADMIN_TOKEN: 'short-secret' });
    assert.equal(short.code, 2, short.stderr);
    assert.match(short.stderr, /fds\.admin\.tokenEnv: the token in \$PASSGATE_FDS_ADMIN_TOKEN is 12 characters; use at least 16/);
  });

  it('the admin port binds loopback unless configured', () => {
    const c = validateConfig({ gateways: { public: { kind: 'public', routes: [{ name: 'a', stages: ['allow'] }] } } });
    assert.equal(c.server.admin.host, '127.0.0.1');
  });

  it('a failed admin authentication is logged without the token and counted', async () => {
    const logs = captureLogs();
    const svc = await PassgateService.start({
      config: parseConfigText(`${BASE}\nfds: { store: memory, admin: { token: "a-long-enough-admin-secret" } }\n`, 't.yaml'),
      logger: logs.logger,
      grpcPort: 0,
      adminPort: 0,
      processMetrics: false,
      watchConfig: false,
    });
    try {
      const url = `http://127.0.0.1:${svc.adminPort}/admin/fds/blocks`;
      assert.equal((await fetch(url, { headers: { authorization: 'Bearer guessed-token-value-123' } })).status, 401);
      assert.equal((await fetch(url)).status, 401);
      assert.equal((await fetch(url, { headers: { authorization: 'Bearer a-long-enough-admin-secret' } })).status, 200);
      const refused = logs.lines.filter((l) => l['admin'] === 'auth_failed');
      assert.equal(refused.length, 2);
      assert.deepEqual(refused.map((l) => l['why']), ['invalid', 'missing']);
      assert.ok(!JSON.stringify(logs.lines).includes('guessed-token-value-123'), 'the token sent is never logged');
      const metrics = await (await fetch(`http://127.0.0.1:${svc.adminPort}/metrics`)).text();
      assert.match(metrics, /passgate_admin_auth_failures_total\{api="fds",why="invalid"\} 1/);
      assert.match(metrics, /passgate_admin_auth_failures_total\{api="fds",why="missing"\} 1/);
    } finally {
      await svc.stop(500);
    }
  });
});
