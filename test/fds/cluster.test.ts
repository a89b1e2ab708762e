/**
 * The same FDS code on a real Redis Cluster (3 masters started here): the
 * hash-tagged script runs in one slot, CIDR pub/sub and SCAN listing work,
 * and a Check still costs one round trip.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { PassgateService } from '../../ext-authz/src/server/service.js';
import { TOKEN, adminCall, checkClient, clientCommandsDuring, config, eventually, freePort, startService, statusOf, type CheckClient } from './helpers.js';

const ROUTES = [
  { name: 'login', prefix: '/login', stages: ['fds', { type: 'deny', status: 401, reason: 'bad_credentials' }] },
  { name: 'api', prefix: '/api', stages: ['fds', 'allow'] },
];

describe('fds on Redis Cluster (3 local masters)', function () {
  this.timeout(60_000);
  const procs: ChildProcess[] = [];
  const ports: number[] = [];
  let dir: string;
  let svc: PassgateService | undefined;
  let client: CheckClient | undefined;

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'fds-cluster-'));
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      ports.push(port);
      procs.push(
        spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--dir', dir], { stdio: 'ignore' }),
      );
    }
    for (const port of ports) {
      await eventually(`redis-server :${port}`, async () => {
        const r = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
        r.on('error', () => undefined);
        try {
          await r.connect();
          return (await r.ping()) === 'PONG';
        } catch {
          return false;
        } finally {
          r.disconnect();
        }
      });
    }
    await new Promise<void>((resolve, reject) =>
      execFile('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-yes'], { timeout: 20_000 }, (err) => (err ? reject(err) : resolve())),
    );
    await eventually('cluster_state:ok on every node', async () => {
      for (const port of ports) {
        const r = new Redis(port, '127.0.0.1');
        try {
          if (!(await r.cluster('INFO')).includes('cluster_state:ok')) return false;
        } finally {
          r.disconnect();
        }
      }
      return true;
    }, 15_000);
    const fds = {
      store: 'redis',
      redis: { mode: 'cluster', nodes: [{ host: '127.0.0.1', port: ports[0] }], keyPrefix: 'test:fds:cluster:', commandTimeoutMs: 200 },
      admin: { token: TOKEN },
      rules: [{ name: 'ip-fail', events: ['auth_failure'], subject: 'ip', threshold: 3, window: '10s', block: '1m' }],
    };
    svc = await startService(config(fds, ROUTES));
    client = checkClient(svc.grpcPort);
    await eventually('first Check through the cluster', async () => statusOf(await client!.check({ path: '/api' })) === 200, 30_000);
  });

  after(async () => {
    client?.close();
    await svc?.stop(100);
    for (const p of procs) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('blocks by rule, by admin (exact and CIDR), lists and unblocks', async () => {
    const c = client!;
    const admin = svc!.adminPort;
    for (let i = 0; i < 3; i++) assert.equal(statusOf(await c.check({ ip: '203.0.113.20', path: '/login' })), 401);
    assert.equal(statusOf(await c.check({ ip: '203.0.113.20', path: '/api' })), 403);
    assert.equal((await adminCall(admin, 'POST', '/admin/fds/blocks', { kind: 'ip', subject: '2001:db8:5::/48', reason: 'r', ttl: '10m' })).status, 201);
    await eventually('CIDR via pub/sub', async () => statusOf(await c.check({ ip: '2001:db8:5::1', path: '/api' })) === 403);
    const list = await adminCall(admin, 'GET', '/admin/fds/blocks?count=1000');
    const seen: string[] = [];
    let page = list;
    for (;;) {
      seen.push(...page.json.items.map((i: { subject: string }) => i.subject));
      if (!page.json.next) break;
      page = await adminCall(admin, 'GET', `/admin/fds/blocks?count=1000&cursor=${encodeURIComponent(page.json.next)}`);
    }
    assert.ok(seen.includes('203.0.113.20') && seen.includes('2001:db8:5::/48'), seen.join(','));
    assert.equal((await adminCall(admin, 'DELETE', '/admin/fds/blocks?kind=ip&subject=203.0.113.20')).status, 200);
    await eventually('unblocked', async () => statusOf(await c.check({ ip: '203.0.113.20', path: '/api' })) === 200);
  });

  it('costs one round trip per Check on the cluster', async () => {
    const c = client!;
    const counts: Array<Map<string, number>> = [];
    const urls = ports.map((p) => `redis://127.0.0.1:${p}`);
    const run = async () => {
      for (let i = 0; i < 30; i++) assert.equal(statusOf(await c.check({ ip: `198.51.100.${i}`, path: '/api' })), 200);
    };
    // MONITOR every node at once. The client's own housekeeping (topology refreshes, ready checks,
    // keepalive pings) runs in the background on its own schedule and is not per Check.
    const nested = urls.reduceRight<() => Promise<void>>((inner, url) => async () => {
      counts.push(await clientCommandsDuring(url, inner));
    }, run);
    await nested();
    let total = 0;
    const housekeeping = new Set(['cluster', 'info', 'ping', 'client', 'readonly', 'command']);
    for (const m of counts) for (const [name, n] of m) if (!housekeeping.has(name)) total += n;
    assert.equal(total, 30);
  });
});
