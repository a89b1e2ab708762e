/**
 * `passgate explain` as a user runs it (real processes, the real Redis) and
 * POST /explain on a running service: why a request gets its answer, and
 * proof that explaining writes nothing (Redis keys, FDS counters and
 * INFO commandstats unchanged; no Check counted in the service's metrics).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { loadConfigFile } from '../../ext-authz/src/config/load.js';
import { pino } from 'pino';
import { fdsCapability } from '../../ext-authz/src/fds/capability.js';
import { authzClient, check, httpCheck } from '../support/service.js';
import { REDIS_URL, TOKEN, adminCall, cleanup, commandCalls, testPrefix } from '../fds/helpers.js';

const CLI = 'ext-authz/src/cli/main.ts';

function passgate(args: string[]) {
  const env = { ...process.env };
  delete env['PASSGATE_CONFIG'];
  return spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { encoding: 'utf8', timeout: 40_000, env });
}

function yaml(prefix: string): string {
  return `
server: { grpc: { host: 127.0.0.1 }, admin: { host: 127.0.0.1 } }
logging: { level: silent }
fds:
  store: redis
  redis: { mode: single, url: "${REDIS_URL}", keyPrefix: "${prefix}" }
  admin: { token: "${TOKEN}" }
  rules:
    - { name: ip-failures, events: [auth_failure], subject: ip, threshold: 1, window: 1m, block: 5m }
gateways:
  edge:
    kind: public
    select: { hosts: [api.example.com] }
    routes:
      - name: health
        match: { path: { exact: /healthz } }
        stages: [allow]
      - name: api
        match: { path: { prefix: /v1 }, methods: [GET, POST] }
        stages:
          - fds
          - { type: require-headers, status: 401, headers: [{ name: x-api-key }] }
          - allow
defaultGateway: edge
`;
}

async function keysUnder(prefix: string): Promise<string[]> {
  const r = new Redis(REDIS_URL);
  try {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      out.push(...keys);
      cursor = next;
    } while (cursor !== '0');
    return out.sort();
  } finally {
    r.disconnect();
  }
}

/** Commands that only read (or are connection housekeeping); anything else counted during explain is a write. */
const READ_ONLY = new Set(['mget', 'get', 'exists', 'hgetall', 'scan', 'info', 'subscribe', 'unsubscribe', 'ping', 'echo', 'client|setinfo', 'client|setname', 'client', 'select', 'hello', 'command', 'quit']);

describe('passgate explain (real processes, real Redis)', function () {
  this.timeout(180_000);
  const prefix = testPrefix();
  let dir: string;
  let file: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'passgate-explain-'));
    file = join(dir, 'passgate.yaml');
    writeFileSync(file, yaml(prefix));
    // A real block made through the admin API of a running service, which is then stopped.
    const svc = await PassgateService.start({ config: loadConfigFile(file), grpcPort: 0, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) });
    try {
      const r = await adminCall(svc.adminPort, 'POST', '/admin/fds/blocks', { kind: 'ip', subject: '192.0.2.66', reason: 'explain test', ttl: '1h' });
      assert.equal(r.status, 201, JSON.stringify(r.json));
    } finally {
      await svc.stop(500);
    }
  });
  after(() => cleanup(prefix));

  it('names the gateway, the routes tried and why, each stage, and prints the CheckResponse (human form)', () => {
    const r = passgate(['explain', '--config', file, '-X', 'POST', '--ip', '198.51.100.20', 'https://api.example.com/v1/accounts']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /gateway: edge \(public\), selected by Host api\.example\.com/);
    assert.match(r.stdout, /route health: no, path = \/healthz does not hold/);
    assert.match(r.stdout, /route api: matched \(method in GET,POST, path prefix \/v1\)/);
    assert.match(r.stdout, /\[1\] require-headers deny missing_header \(401\) - header x-api-key is missing/);
    assert.match(r.stdout, /\[2\] allow not_run/);
    assert.match(r.stdout, /decision: deny missing_header \(401\)/);
    assert.match(r.stdout, /"code": 16/, 'the CheckResponse itself (UNAUTHENTICATED)');
  });

  it('--json: a blocked IP is found (block lookups are read), the answer is the 403 Envoy would get', () => {
    const r = passgate(['explain', '--config', file, '--json', '--ip', '192.0.2.66', '-H', 'x-api-key: k', 'https://api.example.com/v1/x']);
    assert.equal(r.status, 0, r.stderr);
    const e = JSON.parse(r.stdout);
    assert.equal(e.gateway.name, 'edge');
    assert.equal(e.route.name, 'api');
    assert.equal(e.decision.decision, 'deny');
    assert.equal(e.decision.reason, 'blocked');
    assert.equal(e.response.denied_response.status.code, 403);
    assert.equal(e.audit.fds.blocked.subject, '192.0.2.66');
  });

  it('has no side effects: keys, FDS counters and blocks unchanged; INFO commandstats shows only reads', async () => {
    const keysBefore = await keysUnder(prefix);
    const before = await commandCalls(REDIS_URL);
    // Three 401s for one IP: as traffic, the first would have blocked it (threshold 1).
    for (let i = 0; i < 3; i++) {
      const r = passgate(['explain', '--config', file, '--json', '--ip', '198.51.100.21', 'https://api.example.com/v1/accounts']);
      assert.equal(r.status, 0, r.stderr);
      const e = JSON.parse(r.stdout);
      assert.equal(e.decision.reason, 'missing_header');
      assert.deepEqual(e.audit.fds_dry.wouldCount, ['ip-failures ip:198.51.100.21 +1'], 'what a real Check would count is shown, not done');
    }
    const after = await commandCalls(REDIS_URL);
    const changed = [...after].filter(([name, calls]) => calls !== (before.get(name) ?? 0)).map(([name]) => name);
    assert.ok(changed.includes('mget'), `the block lookup ran (changed: ${changed.join(', ')})`);
    const writes = changed.filter((n) => !READ_ONLY.has(n));
    assert.deepEqual(writes, [], `explain sent write commands: ${writes.join(', ')}`);
    assert.deepEqual(await keysUnder(prefix), keysBefore, 'no key created or removed');
    // The same request as real traffic would have blocked the IP: the check can fail.
    const svc = await PassgateService.start({ config: loadConfigFile(file), grpcPort: 0, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) });
    try {
      const inspect = await adminCall(svc.adminPort, 'GET', '/admin/fds/inspect?kind=ip&subject=198.51.100.21');
      assert.equal(inspect.status, 200);
      assert.equal(inspect.json.blocked, null, 'no block created by explain');
      assert.ok(inspect.json.counters.every((c: { count: number }) => c.count === 0), JSON.stringify(inspect.json.counters));
      // The same request as a real Check over gRPC blocks the IP: the check above can fail.
      await svc.stateOf(fdsCapability)!.engine!.store.ready(5_000);
      const client = authzClient(svc.grpcPort);
      try {
        const res = await check(client, httpCheck({ method: 'POST', host: 'api.example.com', path: '/v1/accounts', sourceAddress: '198.51.100.21', destinationPort: 443 }));
        assert.equal(res.denied_response?.status?.code, 401);
      } finally {
        client.close();
      }
      const real = await adminCall(svc.adminPort, 'GET', '/admin/fds/inspect?kind=ip&subject=198.51.100.21');
      assert.equal(real.json.blocked?.rule, 'ip-failures', `a real 401 does block (threshold 1): ${JSON.stringify(real.json)}`);
    } finally {
      await svc.stop(500);
    }
  });

  it('usage errors: no --config, no URL, a bad header, both a URL and --check-request; --help lists the flags', () => {
    for (const [args, pattern] of [
      [['explain', 'https://api.example.com/'], /explain needs --config FILE/],
      [['explain', '--config', file], /explain needs a URL/],
      [['explain', '--config', file, '-H', 'nocolon', 'https://api.example.com/'], /write a header as 'Name: value'/],
      [['explain', '--config', file, '--check-request', file, 'https://api.example.com/'], /replaces the curl-like flags/],
      [['explain', '--config', file, '--bogus', 'https://api.example.com/'], /--bogus/],
    ] as const) {
      const r = passgate([...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, pattern);
    }
    const h = passgate(['explain', '--help']);
    assert.equal(h.status, 0);
    for (const flag of ['-X', '-H', '--cert', '--xfcc', '--ip', '--check-request', '--json']) assert.ok(h.stdout.includes(flag), flag);
  });

  it('--check-request FILE explains a CheckRequest as Envoy sends it, and POST /explain answers the same JSON', async () => {
    const cr = join(dir, 'check.json');
    writeFileSync(
      cr,
      JSON.stringify({
        attributes: {
          source: { address: { socket_address: { address: '198.51.100.30', port_value: 5000 } } },
          destination: { address: { socket_address: { address: '10.0.0.1', port_value: 443 } } },
          request: { http: { id: 'r-1', method: 'GET', host: 'api.example.com', path: '/healthz', headers: { ':authority': 'api.example.com', ':path': '/healthz', ':method': 'GET' } } },
        },
      }),
    );
    const r = passgate(['explain', '--config', file, '--json', '--check-request', cr]);
    assert.equal(r.status, 0, r.stderr);
    const fromCli = JSON.parse(r.stdout);
    assert.equal(fromCli.route.name, 'health');
    assert.equal(fromCli.decision.decision, 'allow');

    const svc = await PassgateService.start({ config: loadConfigFile(file), grpcPort: 0, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) });
    try {
      const url = `http://127.0.0.1:${svc.adminPort}/explain`;
      const body = JSON.stringify(JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(cr, 'utf8'))));
      const none = await fetch(url, { method: 'POST', body });
      assert.equal(none.status, 401, 'the admin credential is required');
      const wrong = await fetch(url, { method: 'POST', body, headers: { authorization: 'Bearer not-the-token-at-all' } });
      assert.equal(wrong.status, 401);
      const ok = await fetch(url, { method: 'POST', body, headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), fromCli, 'POST /explain and passgate explain --json agree');
      // Curl-like body, and a bad one.
      const curl = await fetch(url, { method: 'POST', body: JSON.stringify({ url: 'https://api.example.com/v1/a', method: 'GET', ip: '198.51.100.31' }), headers: { authorization: `Bearer ${TOKEN}` } });
      const e = (await curl.json()) as { decision: { reason: string } };
      assert.equal(e.decision.reason, 'missing_header');
      const bad = await fetch(url, { method: 'POST', body: '{"url": 5}', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as { reason: string }).reason, /url must be a string/);
      // Nothing was counted as traffic.
      const metrics = await (await fetch(`http://127.0.0.1:${svc.adminPort}/metrics`)).text();
      assert.doesNotMatch(metrics, /^passgate_checks_total\{/m, 'explain is not a Check in the metrics');
      assert.match(metrics, /passgate_admin_auth_failures_total\{api="explain",why="missing"\} 1/);
    } finally {
      await svc.stop(500);
    }
  });
});
