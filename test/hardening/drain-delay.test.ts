/**
 * Issue 12 item 11: after SIGTERM (service.stop) health turns NOT_SERVING at
 * once, and every Check sent during server.drainDelayMs is still answered;
 * then the drain closes the listener. In-process, real gRPC over loopback.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { startService, httpCheck } from '../support/service.js';

const YAML = `
server: { drainDelayMs: 1500, shutdownGraceMs: 1000 }
logging: { level: info, audit: false }
gateways: { public: { kind: public, routes: [{ name: a, stages: [allow] }] } }
defaultGateway: public
`;

function healthClient(port: number) {
  const require = createRequire(import.meta.url);
  const def = protoLoader.loadSync(require('grpc-health-check').protoPath as string, { keepCase: true, enums: String });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as {
    Check(req: { service: string }, cb: (e: Error | null, r: { status: string }) => void): void;
    close(): void;
  };
  return {
    status: () => new Promise<string>((resolve, reject) => client.Check({ service: '' }, (e, r) => (e ? reject(e) : resolve(r.status)))),
    close: () => client.close(),
  };
}

describe('drain delay on SIGTERM (issue 12 item 11)', function () {
  this.timeout(20_000);

  it('NOT_SERVING at once, every Check during the delay answered, then the listener closes', async () => {
    const run = await startService(YAML);
    const health = healthClient(run.svc.grpcPort);
    assert.equal(await health.status(), 'SERVING');
    const stopped = run.svc.stop();
    let done = false;
    void stopped.then(() => (done = true));
    assert.equal(await health.status(), 'NOT_SERVING');
    // Checks over the delay (the stop has not finished yet: each must be an answer, not an error).
    let answered = 0;
    for (let i = 0; i < 10 && !done; i++) {
      const res = await run.check(httpCheck({ path: `/x${i}` }), 1000);
      assert.equal(res.status?.code ?? 0, 0);
      answered++;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(answered >= 5, `only ${answered} Checks were sent before the stop finished`);
    assert.equal(run.logs.lines.filter((l) => l['msg'] === 'draining: NOT_SERVING, still answering Checks for the drain delay').length, 1);
    await stopped;
    await assert.rejects(run.check(httpCheck({ path: '/after' }), 500));
    health.close();
    run.client.close();
  });
});
