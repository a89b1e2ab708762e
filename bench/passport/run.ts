/**
 * Passport benchmark (`npm run bench:passport`), in-process, ~20 s:
 *  - issue, warm: passport stage with source and Passport caches hot (no crypto);
 *  - issue, cold: every Check needs a new Passport (one EdDSA signature per Check);
 *  - verify: consumer library, full verification vs its verified-token cache;
 *  - Check throughput: Checker with [identity, passport] vs a bare allow route.
 * The `bench-identity` stage type is a bench-only stand-in for mTLS/JWT identity stages.
 */
import { pino } from 'pino';
import { z } from 'zod';
import { Checker } from '../../ext-authz/src/check/checker.js';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { Metrics } from '../../ext-authz/src/observability/metrics.js';
import { CheckContext, type Identity } from '../../ext-authz/src/pipeline/context.js';
import { CONTINUE } from '../../ext-authz/src/pipeline/decision.js';
import { toRequestView } from '../../ext-authz/src/pipeline/request-view.js';
import { passportStage } from '../../ext-authz/src/passport/passport-stage.js';
import { passportCapability } from '../../ext-authz/src/passport/capability.js';
import { compose } from '../../ext-authz/src/capabilities/index.js';
import { STATELESS } from '../../ext-authz/src/capabilities/capability.js';
import { assemble } from '../../ext-authz/src/server/assemble.js';
import { createPassportVerifier } from '../../ext-authz/src/passport/consumer/index.js';
import type { CheckRequest } from '../../ext-authz/src/proto/types.js';

const logger = pino({ level: 'silent' });
const budgetMs = Number(process.env['BENCH_MS'] ?? 3_000);
const alice: Identity = { subject: 'alice', kind: 'user', source: 'mtls', attributes: {}, groups: [], deviceId: 'd-1' };

const benchIdentity = {
  type: 'bench-identity',
  schema: z.strictObject({ type: z.literal('bench-identity') }),
  description: 'bench only: every request is alice on d-1',
  create: () => ({
    type: 'bench-identity',
    run(c: CheckContext) {
      c.identity = alice;
      return CONTINUE;
    },
  }),
};
const composition = compose([{ name: 'bench', stages: [benchIdentity], prepare: () => STATELESS }]);

const config = validateConfig({
  logging: { level: 'silent', audit: false },
  gateways: {
    public: {
      kind: 'public',
      routes: [
        { name: 'passport', match: { path: { prefix: '/app' } }, stages: ['bench-identity', 'passport'] },
        { name: 'bare', match: { path: { prefix: '/bare' } }, stages: ['allow'] },
      ],
    },
  },
  defaultGateway: 'public',
  passport: {
    issuer: 'https://passgate.bench',
    audience: 'orders',
    keys: { active: 'k1', entries: [{ id: 'k1', generate: true }] },
    source: {
      type: 'static',
      users: { alice: { id: 'u-alice', roles: ['admin', 'reader'], scopes: ['orders:read', 'orders:write'], devices: { 'd-1': { type: 'mobile', os: 'ios', appVersion: '1.2.3' } } } },
    },
  },
}, 'bench', composition);

const metrics = new Metrics(false);

/** Time per op (µs) of `fn`, run in batches until the budget is spent. */
async function measure(name: string, fn: (i: number) => unknown | Promise<unknown>, batch = 1_000): Promise<{ name: string; usPerOp: number; ops: number }> {
  for (let i = 0; i < Math.min(batch, 200); i++) await fn(i); // warm-up
  let ops = 0;
  const start = performance.now();
  while (performance.now() - start < budgetMs) {
    for (let i = 0; i < batch; i++) {
      const r = fn(ops + i);
      if (r instanceof Promise) await r;
    }
    ops += batch;
  }
  const ms = performance.now() - start;
  return { name, usPerOp: (ms * 1000) / ops, ops };
}

function ctx(id: Identity): CheckContext {
  const view = toRequestView({ attributes: { request: { http: { method: 'GET', path: '/app', host: 'h', headers: {} } } } });
  const table = compiled;
  const gw = table.gateways.get('public')!;
  const c = new CheckContext(view, gw, gw.routes[0]!, Date.now() + 1_000, 't', 0);
  c.identity = id;
  return c;
}

const assembled = await assemble(config, { composition, logger, metrics });
const compiled = assembled.table;
const state = assembled.stateOf(passportCapability)!;
const stage = passportStage.create(passportStage.schema.parse({ type: 'passport' }), { config, logger, metrics, state, path: 'bench' });

const results: Array<{ name: string; usPerOp: number; ops: number }> = [];

// Issue, warm: one Passport reused.
const warm = ctx(alice);
await stage.run(warm);
results.push(await measure('issue: warm cache (per Check)', () => stage.run(ctx(alice))));

// Issue, cold: a new device each time → new cache key → one signature per Check.
results.push(
  await measure('issue: cold (1 signature per Check)', (i) => stage.run(ctx({ ...alice, deviceId: `cold-${i}` })), 200),
);

// Verify in the consumer library.
const token = warm.upstreamHeaders[0]![1];
const keys = JSON.parse(state.ring.jwksBody) as { keys: unknown[] };
const full = createPassportVerifier({ keys: keys as never, issuer: 'https://passgate.bench', audience: 'orders', cacheSize: 0 });
const cached = createPassportVerifier({ keys: keys as never, issuer: 'https://passgate.bench', audience: 'orders' });
results.push(await measure('verify: consumer, full (signature + claims)', () => full.verify(token), 200));
results.push(await measure('verify: consumer, verified-token cache hit', () => cached.verify(token)));

// Check throughput: Checker with the [bench-identity, passport] route vs a bare allow route.
const checker = new Checker(compiled, { logger, metrics });
const req = (path: string): CheckRequest => ({
  attributes: { context_extensions: { gateway: 'public' }, request: { http: { method: 'GET', path, host: 'app', headers: { 'user-agent': 'bench', accept: '*/*' } } } },
});
const bare = req('/bare/x');
const pass = req('/app/x');
const sanity = await checker.check(pass, Date.now() + 1_000);
if (sanity.status?.code !== 0 || !sanity.ok_response?.headers?.some((h) => h.header?.key === 'x-passport')) throw new Error('bench setup: passport route did not issue');
const deadline = () => Date.now() + 1_000;
// Interleaved rounds, so load from other processes hits both rows alike and the ratio stays meaningful.
async function interleaved(): Promise<[{ name: string; usPerOp: number; ops: number }, { name: string; usPerOp: number; ops: number }]> {
  const rounds = 10;
  const acc = [
    { name: 'Check: bare allow route', ms: 0, ops: 0, fn: () => checker.check(bare, deadline()) },
    { name: 'Check: [identity, passport] route (warm)', ms: 0, ops: 0, fn: () => checker.check(pass, deadline()) },
  ];
  for (let r = 0; r < rounds; r++) {
    for (const a of acc) {
      const start = performance.now();
      while (performance.now() - start < budgetMs / rounds) {
        for (let i = 0; i < 500; i++) {
          const r = a.fn();
          if (r instanceof Promise) await r;
        }
        a.ops += 500;
      }
      a.ms += performance.now() - start;
    }
  }
  const [b, p] = acc.map((a) => ({ name: a.name, usPerOp: (a.ms * 1000) / a.ops, ops: a.ops }));
  return [b!, p!];
}
const [bareR, passR] = await interleaved();
results.push(bareR, passR);

const pad = (s: string, n: number) => s + ' '.repeat(Math.max(0, n - s.length));
console.log(`\nPassport benchmark (${budgetMs} ms per row, node ${process.version})\n`);
console.log(`${pad('operation', 48)} ${pad('µs/op', 10)} ${pad('ops/s', 12)} ops`);
for (const r of results) console.log(`${pad(r.name, 48)} ${pad(r.usPerOp.toFixed(2), 10)} ${pad(Math.round(1e6 / r.usPerOp).toLocaleString('en-US'), 12)} ${r.ops}`);
const byName = (n: string) => results.find((r) => r.name.startsWith(n))!.usPerOp;
console.log('\nratios');
console.log(`  cold issue / warm issue:            ${(byName('issue: cold') / byName('issue: warm')).toFixed(1)}x`);
console.log(`  full verify / cached verify:        ${(byName('verify: consumer, full') / byName('verify: consumer, verified')).toFixed(1)}x`);
console.log(`  Check throughput passport / bare:   ${(bareR.usPerOp / passR.usPerOp).toFixed(2)} (${((passR.usPerOp / bareR.usPerOp - 1) * 100).toFixed(0)}% more time per Check)`);
console.log(`  signatures made: ${state.issuer.signatures}`);
await assembled.close();
