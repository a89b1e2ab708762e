/**
 * ext_authz failure handling through the local gateway, with the service in
 * a child process: paused (SIGSTOP: the TCP connection is up but nothing
 * answers, so only the 200 ms deadline ends the call) and killed. Envoy's
 * rules: status_on_error (default 403; our config 503), or through with
 * failure_mode_allow.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { LocalGateway } from '../../local-gateway/src/gateway.js';
import { EchoUpstream, type EchoBody } from '../../local-gateway/src/echo-upstream.js';
import { REPO_ROOT, defaultFilters, ensureWasmBuilt } from '../../local-gateway/src/stack.js';
import { nodeRequest } from './support/harness.js';

const CONFIG = `
logging: { level: silent, audit: false }
gateways:
  public:
    kind: public
    routes:
      - { name: public, match: { path: { prefix: /public } }, stages: [allow] }
`;

async function startChild(): Promise<{ child: ChildProcess; grpcPort: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test', 'e2e', 'support', 'service-child.ts')], {
    cwd: REPO_ROOT,
    env: { ...process.env, PASSGATE_CHILD_CONFIG: CONFIG },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const [first] = (await Promise.race([once(lines, 'line'), once(child, 'exit').then(() => { throw new Error('service child exited before listening'); })])) as [string];
  return { child, grpcPort: (JSON.parse(first) as { grpcPort: number }).grpcPort };
}

describe('local gateway e2e: ext_authz failures (service paused or stopped)', function () {
  this.timeout(30_000);
  let echo: EchoUpstream;
  let svc: { child: ChildProcess; grpcPort: number };
  const gateways: Record<'closed503' | 'envoyDefault' | 'open', LocalGateway> = {} as never;

  before(async () => {
    ensureWasmBuilt();
    echo = await EchoUpstream.start();
    svc = await startChild();
    const make = (extra: { statusOnError?: number; failureModeAllow?: boolean; failureModeAllowHeaderAdd?: boolean }) =>
      LocalGateway.start({
        listeners: [{ name: 'public', port: 0, contextExtensions: { gateway: 'public' } }],
        upstream: { host: '127.0.0.1', port: echo.port },
        extAuthz: { target: `127.0.0.1:${svc.grpcPort}`, timeoutMs: 200, ...extra },
        filters: defaultFilters(),
        logger: pino({ level: 'silent' }),
      });
    gateways.closed503 = await make({ statusOnError: 503 });
    gateways.envoyDefault = await make({});
    gateways.open = await make({ failureModeAllow: true, failureModeAllowHeaderAdd: true });
  });
  after(async () => {
    for (const g of Object.values(gateways)) await g.stop();
    await echo?.stop();
    if (svc && svc.child.exitCode === null) {
      svc.child.kill('SIGCONT');
      svc.child.kill('SIGKILL');
    }
  });

  const get = (g: LocalGateway) => nodeRequest({ port: g.ports['public']!, path: '/public/x' });

  it('service up: allowed through all three gateways', async () => {
    for (const g of Object.values(gateways)) assert.equal((await get(g)).status, 200);
  });

  it('service paused (SIGSTOP): the deadline ends the call; status_on_error 503 / Envoy default 403 / fail-open 200', async function () {
    this.timeout(10_000); // without a deadline the call would hang until this fails the test
    svc.child.kill('SIGSTOP');
    try {
      const closed = await get(gateways.closed503);
      assert.equal(closed.status, 503);
      assert.equal(closed.headers['x-echo-upstream'], undefined);
      assert.equal((await get(gateways.envoyDefault)).status, 403);
      const open = await get(gateways.open);
      assert.equal(open.status, 200);
      assert.equal((JSON.parse(open.body) as EchoBody).headers['x-envoy-auth-failure-mode-allowed'], 'true');
    } finally {
      svc.child.kill('SIGCONT');
    }
    assert.equal((await get(gateways.closed503)).status, 200, 'works again once resumed');
  });

  it('service stopped: status_on_error 503 / Envoy default 403 / fail-open 200', async () => {
    svc.child.kill('SIGKILL');
    await once(svc.child, 'exit');
    assert.equal((await get(gateways.closed503)).status, 503);
    assert.equal((await get(gateways.envoyDefault)).status, 403);
    assert.equal((await get(gateways.open)).status, 200);
  });
});
