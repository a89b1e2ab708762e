/**
 * Issue 18: several Passgate processes on one port (PASSGATE_WORKERS, Node's
 * cluster module). Starts the real CLI with 2 workers, shows that both answer
 * Checks on the one gRPC port (the audit lines say which worker decided) and
 * that an FDS block one worker creates in Redis is enforced by the other;
 * then SIGTERM drains both and the primary exits 0.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { httpCheck } from '../support/service.js';
import { REDIS_URL, cleanup, freePort, sleep, testPrefix } from '../fds/helpers.js';
import { workerCount, workersProblem } from '../../ext-authz/src/cli/workers.js';
import { validateConfig } from '../../ext-authz/src/config/load.js';

interface AuditLine {
  worker?: number;
  log?: string;
  msg?: string;
  decision?: string;
  reason?: string;
  source?: string;
}

describe('several workers on one port (issue 18, PASSGATE_WORKERS)', function () {
  this.timeout(120_000);
  let dir: string;
  let child: ChildProcess;
  let port: number;
  const prefix = testPrefix();
  const lines: AuditLine[] = [];
  let exited: Promise<number | null>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'passgate-workers-'));
    port = await freePort();
    const file = join(dir, 'passgate.yaml');
    writeFileSync(
      file,
      stringify({
        server: { grpc: { host: '127.0.0.1', port }, admin: { host: '127.0.0.1', port: await freePort() }, shutdownGraceMs: 1000 },
        logging: { level: 'info', audit: true },
        gateways: {
          edge: {
            kind: 'public',
            routes: [{ name: 'api', match: { path: { prefix: '/' } }, stages: ['fds', { type: 'require-headers', status: 401, headers: [{ name: 'authorization' }] }, 'allow'] }],
          },
        },
        defaultGateway: 'edge',
        fds: {
          store: 'redis',
          redis: { mode: 'single', url: REDIS_URL, keyPrefix: prefix },
          authFailureStatuses: [401],
          rules: [{ name: 'ip-auth-failures', events: ['auth_failure'], subject: 'ip', threshold: 4, window: '60s', block: '10m' }],
        },
      }),
    );
    child = spawn(process.execPath, ['--import', 'tsx', 'ext-authz/src/main.ts', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PASSGATE_WORKERS: '2' } });
    exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          lines.push(JSON.parse(line) as AuditLine);
        } catch {
          // not a log line
        }
      }
    });
    child.stderr!.on('data', () => undefined);
    const until = Date.now() + 60_000;
    while (new Set(lines.filter((l) => l.msg === 'passgate ext_authz service started').map((l) => l.worker)).size < 2) {
      if (Date.now() > until) throw new Error(`2 workers did not start; log: ${JSON.stringify(lines.slice(-5))}`);
      await sleep(100);
    }
  });

  after(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    await cleanup(prefix);
  });

  const { service } = loadAuthorizationService();
  const Client = grpc.makeGenericClientConstructor(service, 'Authorization');

  /** One Check on a connection of its own, so the primary hands it to the next worker (round robin). */
  async function checkOnNewConnection(req: CheckRequest): Promise<CheckResponse> {
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as {
      Check(r: CheckRequest, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: CheckResponse) => void): void;
      close(): void;
    };
    try {
      return await new Promise((ok, fail) => client.Check(req, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e, r) => (e ? fail(e) : ok(r ?? {}))));
    } finally {
      client.close();
    }
  }

  const decisions = (ip: string) => lines.filter((l) => l.log === 'audit' && l.source === ip);

  it('rejects a bad worker count naming the variable', () => {
    assert.equal(workerCount(undefined), 1);
    assert.equal(workerCount('3'), 3);
    assert.ok(typeof workerCount('auto') === 'number');
    for (const bad of ['0', '-1', '1.5', 'many', '65']) {
      const r = workerCount(bad);
      assert.ok(typeof r === 'object' && r.error.includes('PASSGATE_WORKERS'), bad);
    }
  });

  it('refuses several workers when FDS keeps its state in memory (per worker), naming the fix', () => {
    const memory = validateConfig({ gateways: { edge: { kind: 'public', routes: [{ name: 'r', stages: ['fds', 'allow'] }] } }, defaultGateway: 'edge' });
    assert.match(workersProblem(memory, 2) ?? '', /PASSGATE_WORKERS=2 with fds.store memory.*fds.store: redis/);
    assert.equal(workersProblem(memory, 1), undefined);
    const none = validateConfig({ gateways: { edge: { kind: 'public', routes: [{ name: 'r', stages: ['allow'] }] } }, defaultGateway: 'edge' });
    assert.equal(workersProblem(none, 4), undefined);
  });

  it('both workers answer Checks on the one gRPC port', async () => {
    const ip = '198.51.100.10';
    for (let i = 0; i < 8; i++) {
      const res = await checkOnNewConnection(httpCheck({ sourceAddress: ip, headers: { authorization: 'Bearer x' } }));
      assert.equal(res.status?.code ?? 0, 0);
    }
    await sleep(300);
    const workers = new Set(decisions(ip).map((l) => l.worker));
    assert.equal(workers.size, 2, `decisions came from workers ${[...workers].join(', ')}`);
  });

  it('a block one worker creates in Redis is enforced by both', async () => {
    const ip = '198.51.100.20';
    // 401s on alternating connections: the failures of both workers add up in the one Redis counter.
    for (let i = 0; i < 4; i++) await checkOnNewConnection(httpCheck({ sourceAddress: ip }));
    await sleep(300);
    const failures = decisions(ip);
    assert.equal(new Set(failures.map((l) => l.worker)).size, 2, 'both workers counted failures');
    const before = lines.length;
    for (let i = 0; i < 6; i++) {
      const res = await checkOnNewConnection(httpCheck({ sourceAddress: ip, headers: { authorization: 'Bearer x' } }));
      assert.equal(res.denied_response?.status?.code, 403, `Check ${i + 1} after the threshold`);
      assert.equal(JSON.parse(res.denied_response?.body ?? '{}').reason, 'blocked');
    }
    await sleep(300);
    const blocked = lines.slice(before).filter((l) => l.log === 'audit' && l.source === ip && l.reason === 'blocked');
    assert.equal(new Set(blocked.map((l) => l.worker)).size, 2, `blocked answers came from workers ${[...new Set(blocked.map((l) => l.worker))].join(', ')}`);
  });

  it('SIGTERM drains every worker and the primary exits 0', async () => {
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  });
});
