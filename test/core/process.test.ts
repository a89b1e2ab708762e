/**
 * The real process, driven by real signals: `passgate --config FILE` starts,
 * answers Checks, reloads on SIGHUP, and on SIGTERM drains and exits 0 within
 * its grace period.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { authzClient, check, httpCheck } from '../support/service.js';

const config = (reason: string) => `
server: { grpc: { host: 127.0.0.1, port: 0 }, admin: { host: 127.0.0.1, port: 0 }, shutdownGraceMs: 2000 }
logging: { level: info, audit: false }
gateways:
  public:
    kind: public
    routes:
      - name: login
        match: { path: { prefix: /login } }
        stages: [{ type: deny, status: 401, reason: ${reason} }]
defaultGateway: public
`;

/** Collects the child's JSON log lines and resolves when one matches. */
function logWatcher(child: ChildProcess) {
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{ test: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const text = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text);
      } catch {
        continue;
      }
      lines.push(line);
      for (const w of waiters.splice(0)) (w.test(line) ? w.resolve(line) : waiters.push(w));
    }
  });
  return {
    lines,
    waitFor(msg: string, ms = 15_000): Promise<Record<string, unknown>> {
      const seen = lines.find((l) => l['msg'] === msg);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${msg}" log line within ${ms} ms`)), ms);
        waiters.push({ test: (l) => l['msg'] === msg, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
  };
}

describe('the passgate process and its signals', function () {
  this.timeout(40_000);

  it('starts, reloads on SIGHUP, and drains and exits 0 on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'passgate-proc-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(file, config('first'));
    const child = spawn(process.execPath, ['--import', 'tsx', 'ext-authz/src/main.ts', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const logs = logWatcher(child);
      const started = await logs.waitFor('passgate ext_authz service started');
      const port = Number(started['grpcPort']);
      const client = authzClient(port);
      const reason = async () => JSON.parse((await check(client, httpCheck({ path: '/login' }))).denied_response!.body!).reason;
      assert.equal(await reason(), 'first');

      // Rewriting the file also triggers the watcher; SIGHUP must work on its own, so wait for either.
      writeFileSync(file, config('second'));
      child.kill('SIGHUP');
      await logs.waitFor('config reloaded');
      assert.equal(await reason(), 'second');
      client.close();

      const signalled = Date.now();
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      assert.ok(Date.now() - signalled < 2_000 + 2_000, 'exits within the grace period');
      await logs.waitFor('stopped', 1_000);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
