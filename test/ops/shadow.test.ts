/**
 * Shadow (dry-run) routes and stages over real gRPC with the real Redis: the
 * decision is computed, audited and counted (`shadow_decision`,
 * passgate_shadow_checks_total), Envoy gets the configured answer, and FDS
 * counts shadow outcomes in counters of their own that never block.
 */
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { startService, testConfig, type Running } from '../support/service.js';
import { httpCheck } from '../support/service.js';
import { REDIS_URL, TOKEN, adminCall, cleanup, testPrefix } from '../fds/helpers.js';
import { fdsCapability } from '../../ext-authz/src/fds/capability.js';
import { ConfigError } from '../../ext-authz/src/config/load.js';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';

function yaml(prefix: string): string {
  const needKey = '{ type: require-headers, status: 401, headers: [{ name: x-api-key }] }';
  return `
server: { grpc: { host: 127.0.0.1 }, admin: { host: 127.0.0.1 }, defaultDeadlineMs: 2000 }
fds:
  store: redis
  redis: { mode: single, url: "${REDIS_URL}", keyPrefix: "${prefix}", commandTimeoutMs: 1000 }
  admin: { token: "${TOKEN}" }
  rules:
    - { name: ip-fail, events: [auth_failure], subject: ip, threshold: 2, window: 1m, block: 5m }
gateways:
  edge:
    kind: public
    routes:
      - { name: beta, shadow: true, match: { path: { prefix: /beta } }, stages: [fds, { type: test-set-header, name: x-user, value: alice }, ${needKey}, allow] }
      - { name: api, match: { path: { prefix: /api } }, stages: [fds, ${needKey}, allow] }
      - { name: staged, match: { path: { prefix: /staged } }, stages: [fds, { type: require-headers, shadow: true, status: 401, headers: [{ name: x-new-header }] }, allow] }
      - { name: claims, match: { path: { prefix: /claims } }, stages: [fds, { type: test-claim, async: true, shadow: true }, allow] }
      - { name: claims-real, match: { path: { prefix: /enforced-claims } }, stages: [fds, { type: test-claim, async: true }, allow] }
      - { name: fds-shadow, match: { path: { prefix: /fds-shadow } }, stages: [{ type: fds, shadow: true }, ${needKey}, allow] }
      - { name: minted, match: { path: { prefix: /minted } }, stages: [{ type: test-set-header, name: x-passgate-secret, value: s3cret-value }, allow] }
defaultGateway: edge
`;
}

const ok = (r: CheckResponse) => (r.status?.code ?? 0) === 0;

describe('shadow routes and stages (real gRPC, real Redis)', function () {
  this.timeout(60_000);
  const prefix = testPrefix();
  let t: Running;
  const req = (path: string, ip: string, headers: Record<string, string> = {}) => t.check(httpCheck({ path, sourceAddress: ip, headers, host: 'edge.example' }));
  const audits = () => t.logs.lines.filter((l) => l['log'] === 'audit');
  const metrics = async () => (await fetch(`http://127.0.0.1:${t.svc.adminPort}/metrics`)).text();

  before(async () => {
    t = await startService(yaml(prefix));
    await t.svc.stateOf(fdsCapability)!.engine!.store.ready(5_000);
  });
  after(async () => {
    await t?.stop();
    await cleanup(prefix);
  });

  it('a shadowed route answers allow whatever its chain decides, audits and counts the real decision', async () => {
    const ip = '198.51.100.40';
    for (let i = 0; i < 3; i++) {
      const r = await req('/beta/x', ip);
      assert.ok(ok(r), `shadow route lets the request through: ${JSON.stringify(r.denied_response)}`);
      assert.deepEqual(r.ok_response?.headers ?? [], [], 'a denied chain sets no upstream headers (no half-made identity)');
    }
    const lines = audits().filter((l) => l['route'] === 'beta');
    assert.equal(lines.length, 3);
    for (const l of lines) {
      assert.equal(l['decision'], 'allow');
      assert.equal(l['reason'], 'shadow');
      assert.equal(l['shadow_decision'], 'deny');
      assert.equal(l['shadow_reason'], 'missing_header');
    }
    const m = await metrics();
    assert.match(m, /passgate_shadow_checks_total\{gateway="edge",route="beta",decision="deny",reason="missing_header"\} 3/);
    assert.match(m, /passgate_checks_total\{gateway="edge",route="beta",decision="allow",reason="shadow"\} 3/);
    // With the header the chain allows and its upstream headers go through as usual.
    const allowed = await req('/beta/x', ip, { 'x-api-key': 'k' });
    assert.equal(allowed.ok_response?.headers?.find((h) => h.header?.key === 'x-user')?.header?.value, 'alice');
    assert.equal(audits().at(-1)!['shadow_decision'], 'allow');
  });

  it('FDS counts a shadowed route apart: the rule would block (reported), no block is made, the real window is untouched', async () => {
    const ip = '198.51.100.40';
    const inspect = await adminCall(t.svc.adminPort, 'GET', `/admin/fds/inspect?kind=ip&subject=${ip}`);
    assert.equal(inspect.json.blocked, null, 'three shadow 401s (threshold 2) blocked nothing');
    assert.deepEqual(inspect.json.counters, [{ rule: 'ip-fail', count: 0 }], 'the real counter saw none of them');
    assert.ok(audits().some((l) => l['route'] === 'beta' && JSON.stringify(l['fds_shadow']) === JSON.stringify({ wouldBlock: [{ kind: 'ip', subject: ip, rule: 'ip-fail' }] })));
    assert.match(await metrics(), /passgate_fds_shadow_blocks_total\{kind="ip",rule="ip-fail"\} 1/);
    const r = new Redis(REDIS_URL);
    try {
      const [, keys] = await r.scan('0', 'MATCH', `${prefix}*:s:ip-fail:*`, 'COUNT', 1000);
      assert.equal(keys.length, 1, 'the shadow counter lives in its own key');
    } finally {
      r.disconnect();
    }
    // The same IP is not blocked on the enforced route, whose 401s do count and block (the check can fail).
    assert.ok(ok(await req('/api/x', ip, { 'x-api-key': 'k' })));
    assert.equal((await req('/api/x', ip)).denied_response?.status?.code, 401);
    assert.equal((await req('/api/x', ip)).denied_response?.status?.code, 401);
    assert.equal((await req('/api/x', ip, { 'x-api-key': 'k' })).denied_response?.status?.code, 403, 'two real 401s block the IP');
  });

  it('a shadowed stage records its deny and the chain goes on; its deny feeds no real counter', async () => {
    const ip = '198.51.100.41';
    for (let i = 0; i < 3; i++) assert.ok(ok(await req('/staged/x', ip)));
    const l = audits().filter((a) => a['route'] === 'staged');
    assert.equal(l.length, 3);
    assert.deepEqual([l[0]!['decision'], l[0]!['reason'], l[0]!['shadow_decision'], l[0]!['shadow_reason'], l[0]!['shadow_stage']], ['allow', 'allowed', 'deny', 'missing_header', 'require-headers']);
    const inspect = await adminCall(t.svc.adminPort, 'GET', `/admin/fds/inspect?kind=ip&subject=${ip}`);
    assert.equal(inspect.json.blocked, null);
    assert.match(await metrics(), /passgate_shadow_checks_total\{gateway="edge",route="staged",decision="deny",reason="missing_header"\} 3/);
  });

  it('a shadowed fds stage counts apart too: the enforced 401s stand, the IP is not blocked', async () => {
    const ip = '198.51.100.45';
    for (let i = 0; i < 3; i++) assert.equal((await req('/fds-shadow/x', ip)).denied_response?.status?.code, 401);
    const inspect = await adminCall(t.svc.adminPort, 'GET', `/admin/fds/inspect?kind=ip&subject=${ip}`);
    assert.equal(inspect.json.blocked, null);
    assert.deepEqual(inspect.json.counters, [{ rule: 'ip-fail', count: 0 }]);
    assert.ok(audits().some((l) => l['route'] === 'fds-shadow' && (l['fds_shadow'] as { wouldBlock?: unknown[] } | undefined)?.wouldBlock?.length === 1));
  });

  it('claims a shadowed stage leaves are burned, but a replay stays a shadow verdict (the real answer is not broken)', async () => {
    const ip = '198.51.100.42';
    assert.ok(ok(await req('/claims/x', ip, { 'x-test-jti': 'j-1' })));
    assert.ok(ok(await req('/claims/x', ip, { 'x-test-jti': 'j-1' })), 'the replay of a shadowed claim is allowed');
    const last = audits().filter((a) => a['route'] === 'claims').at(-1)!;
    assert.deepEqual([last['decision'], last['shadow_decision'], last['shadow_reason'], last['shadow_stage']], ['allow', 'deny', 'test_replayed', 'claims']);
    // Enforced, the same replay is refused.
    assert.ok(ok(await req('/enforced-claims/x', ip, { 'x-test-jti': 'j-2' })));
    assert.equal((await req('/enforced-claims/x', ip, { 'x-test-jti': 'j-2' })).denied_response?.status?.code, 401);
  });

  it('POST /explain on a shadowed route shows the chain decision and what Envoy gets', async () => {
    const res = await fetch(`http://127.0.0.1:${t.svc.adminPort}/explain`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ url: 'https://edge.example/beta/y', ip: '198.51.100.43' }),
    });
    const e = (await res.json()) as { route: { shadow: boolean }; decision: { decision: string; reason: string }; enforced: { decision: string; reason: string }; response: CheckResponse };
    assert.equal(e.route.shadow, true);
    assert.deepEqual([e.decision.decision, e.decision.reason], ['deny', 'missing_header']);
    assert.deepEqual([e.enforced.decision, e.enforced.reason], ['allow', 'shadow']);
    assert.equal(e.response.status?.code, 0);
  });

  it('POST /explain redacts the values of internal headers the answer sets (a Passport is a credential), real Checks get them', async () => {
    const res = await fetch(`http://127.0.0.1:${t.svc.adminPort}/explain`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ url: 'https://edge.example/minted' }),
    });
    const text = await res.text();
    assert.doesNotMatch(text, /s3cret-value/);
    assert.match(text, /<redacted: 12 characters set by the gateway>/);
    const real = await req('/minted', '198.51.100.44');
    assert.equal(real.ok_response?.headers?.find((h) => h.header?.key === 'x-passgate-secret')?.header?.value, 's3cret-value');
  });

  it('shadow must be a boolean: a startup error naming the key', () => {
    const bad = (route: string) => yaml(prefix).replace(/      - \{ name: api,.*\n/, route);
    assert.throws(() => testConfig(bad('      - { name: api, match: { path: { prefix: /api } }, stages: [fds, { type: allow, shadow: "yes" }] }\n')), (err: unknown) => err instanceof ConfigError && /routes\[1\]\.stages\[1\]\.shadow: shadow must be true or false/.test(err.message));
    assert.throws(() => testConfig(bad('      - { name: api, shadow: 1, match: { path: { prefix: /api } }, stages: [allow] }\n')), (err: unknown) => err instanceof ConfigError && /routes\[1\]\.shadow/.test(err.message));
  });
});
