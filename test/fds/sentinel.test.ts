/** FDS through Redis Sentinel (a master and one sentinel started here): discovery, blocks and pub/sub. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { PassgateService } from '../../ext-authz/src/server/service.js';
import { OwnRedis, TOKEN, adminCall, checkClient, config, eventually, freePort, startService, statusOf, type CheckClient } from './helpers.js';

describe('fds through Redis Sentinel', function () {
  this.timeout(30_000);
  let master: OwnRedis;
  let sentinel: ChildProcess | undefined;
  let dir: string;
  let svc: PassgateService | undefined;
  let client: CheckClient | undefined;

  before(async () => {
    master = new OwnRedis(await freePort());
    await master.start();
    const sport = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'fds-sentinel-'));
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(conf, `port ${sport}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor fdsmaster 127.0.0.1 ${master.port} 1\n`);
    // redis-server in sentinel mode (no separate redis-sentinel binary here).
    sentinel = spawn('/usr/bin/redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    await eventually('sentinel knows the master', async () => {
      const r = new Redis(sport, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      r.on('error', () => undefined);
      try {
        await r.connect();
        const addr = (await r.call('SENTINEL', 'get-master-addr-by-name', 'fdsmaster')) as string[] | null;
        return Array.isArray(addr) && addr[1] === String(master.port);
      } catch {
        return false;
      } finally {
        r.disconnect();
      }
    });
    const fds = {
      store: 'redis',
      redis: { mode: 'sentinel', sentinels: [{ host: '127.0.0.1', port: sport }], name: 'fdsmaster', keyPrefix: 'test:fds:sentinel:', commandTimeoutMs: 200 },
      admin: { token: TOKEN },
    };
    svc = await startService(config(fds, [{ name: 'api', prefix: '/', stages: ['fds', 'allow'] }]));
    client = checkClient(svc.grpcPort);
  });

  after(async () => {
    client?.close();
    await svc?.stop(100);
    sentinel?.kill('SIGKILL');
    await master.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('finds the master through the sentinel and enforces blocks, CIDR included', async () => {
    const c = client!;
    await eventually('connected through sentinel', async () => statusOf(await c.check({ ip: '192.0.2.1' })) === 200, 10_000);
    assert.equal((await adminCall(svc!.adminPort, 'POST', '/admin/fds/blocks', { kind: 'ip', subject: '192.0.2.0/28', reason: 'r', ttl: '10m' })).status, 201);
    await eventually('CIDR via pub/sub', async () => statusOf(await c.check({ ip: '192.0.2.1' })) === 403);
    assert.equal(statusOf(await c.check({ ip: '192.0.2.16' })), 200);
  });
});
