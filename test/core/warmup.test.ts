/**
 * Issue 18: start-up warm-up (server.warmupMs). The capabilities' warm hooks
 * run after commit and before health says SERVING; a failing or hanging hook
 * is logged and never stops the start; 0 turns the warm-up off. The FDS hook
 * loads the script into the test Redis, so the first Check's EVALSHA hits.
 */
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { createHash } from 'node:crypto';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import type { Capability } from '../../ext-authz/src/capabilities/capability.js';
import { EVALUATE_LUA } from '../../ext-authz/src/fds/lua/evaluate.js';
import { captureLogs } from '../support/service.js';
import { REDIS_URL, cleanup, testPrefix } from '../fds/helpers.js';

function probe(warm: () => Promise<void>, seen: string[]): Capability<undefined> {
  return {
    name: `warm-probe-${seen.length}-${Math.random().toString(36).slice(2, 6)}`,
    prepare: () => ({ state: undefined, commit: () => void seen.push('commit'), warm: async () => {
      seen.push('warm');
      await warm();
    } }),
  };
}

const base = (server: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
  validateConfig({
    server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, shutdownGraceMs: 200, ...server },
    logging: { level: 'debug', audit: false },
    gateways: { edge: { kind: 'public', routes: [{ name: 'r', stages: ['allow'] }] } },
    defaultGateway: 'edge',
    ...extra,
  });

describe('start-up warm-up (issue 18, server.warmupMs)', function () {
  this.timeout(30_000);

  it('runs each capability\'s warm hook after commit, before SERVING', async () => {
    const seen: string[] = [];
    const { logger, lines } = captureLogs('debug');
    const svc = await PassgateService.start({ config: base(), logger, grpcPort: 0, adminPort: 0, processMetrics: false, capabilities: [probe(async () => undefined, seen)] });
    try {
      assert.deepEqual(seen, ['commit', 'warm']);
      assert.ok(lines.some((l) => l['msg'] === 'warm-up done'));
    } finally {
      await svc.stop();
    }
  });

  it('a failing hook is logged; a hanging one is cut off at server.warmupMs; the service starts either way', async () => {
    const seen: string[] = [];
    const { logger, lines } = captureLogs('debug');
    const started = Date.now();
    const svc = await PassgateService.start({
      config: base({ warmupMs: 300 }),
      logger,
      grpcPort: 0,
      adminPort: 0,
      processMetrics: false,
      capabilities: [probe(() => Promise.reject(new Error('no key')), seen), probe(() => new Promise(() => undefined), seen)],
    });
    try {
      assert.ok(Date.now() - started < 10_000);
      assert.ok(lines.some((l) => l['msg'] === 'warm-up step failed (the first Checks pay for it instead)' && l['err'] === 'no key'));
      assert.ok(lines.some((l) => l['msg'] === 'warm-up took longer than server.warmupMs; serving anyway' && l['limitMs'] === 300));
    } finally {
      await svc.stop();
    }
  });

  it('server.warmupMs: 0 runs no hook', async () => {
    const seen: string[] = [];
    const svc = await PassgateService.start({ config: base({ warmupMs: 0 }), logger: captureLogs().logger, grpcPort: 0, adminPort: 0, processMetrics: false, capabilities: [probe(async () => undefined, seen)] });
    try {
      assert.deepEqual(seen, ['commit']);
    } finally {
      await svc.stop();
    }
  });

  it('the FDS hook leaves the script loaded in Redis and writes no key', async () => {
    const prefix = testPrefix();
    const svc = await PassgateService.start({
      config: base({}, { gateways: { edge: { kind: 'public', routes: [{ name: 'r', stages: ['fds', 'allow'] }] } }, fds: { store: 'redis', redis: { mode: 'single', url: REDIS_URL, keyPrefix: prefix } } }),
      logger: captureLogs().logger,
      grpcPort: 0,
      adminPort: 0,
      processMetrics: false,
    });
    const redis = new Redis(REDIS_URL);
    try {
      const sha = createHash('sha1').update(EVALUATE_LUA).digest('hex');
      assert.deepEqual(await redis.script('EXISTS', sha), [1]);
      const [, keys] = await redis.scan('0', 'MATCH', `${prefix}*`, 'COUNT', 1000);
      assert.deepEqual(keys, []);
    } finally {
      redis.disconnect();
      await svc.stop();
      await cleanup(prefix);
    }
  });
});
