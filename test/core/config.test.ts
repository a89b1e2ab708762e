import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfigFile, parseConfigText, resolveConfigPath } from '../../ext-authz/src/config/load.js';

function problems(yaml: string): string[] {
  try {
    parseConfigText(yaml, 'test.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return [...err.problems];
  }
  assert.fail('config was accepted but should have been rejected');
}

const gw = (routes: string) => `gateways:\n  public:\n    kind: public\n    routes:\n${routes}`;

describe('config validation', () => {
  it('accepts the embedded default and fills defaults', () => {
    const config = loadConfigFile(DEFAULT_CONFIG_PATH);
    assert.equal(config.server.grpc.port, 9001);
    assert.equal(config.server.defaultDeadlineMs, 200);
    assert.ok(config.headers.internal.includes('x-passport'));
    assert.equal(config.gateways['secure']?.trustXfcc, true);
  });

  it('accepts the `- allow` shorthand for stages', () => {
    const c = parseConfigText(gw('      - name: a\n        stages: [allow]\n'), 't');
    assert.deepEqual(c.gateways['public']?.routes[0]?.stages, [{ type: 'allow' }]);
  });

  const cases: Array<[string, string, RegExp]> = [
    ['path without leading slash', gw('      - name: a\n        match: { path: { prefix: api } }\n        stages: [allow]\n'), /^gateways\.public\.routes\[0\]\.match\.path\.prefix: must start with "\/"/],
    ['bad regex', gw('      - name: a\n        match: { path: { regex: "([" } }\n        stages: [allow]\n'), /routes\[0\]\.match\.path\.regex: is not a valid regular expression/],
    ['two path kinds at once', gw('      - name: a\n        match: { path: { exact: /a, prefix: /b } }\n        stages: [allow]\n'), /routes\[0\]\.match\.path: must be exactly one of/],
    ['unknown method', gw('      - name: a\n        match: { methods: [FETCH] }\n        stages: [allow]\n'), /routes\[0\]\.match\.methods\[0\]/],
    ['unknown stage type', gw('      - name: a\n        stages: [{ type: nope }]\n'), /routes\[0\]\.stages\[0\]\.type: unknown stage type; known types: allow, deny/],
    ['empty stage list', gw('      - name: a\n        stages: []\n'), /routes\[0\]\.stages: a route needs at least one stage/],
    ['bad deny status', gw('      - name: a\n        stages: [{ type: deny, status: 402 }]\n'), /stages\[0\]\.status: must be one of 401, 403, 404, 429, 503/],
    ['typo in a key', gw('      - name: a\n        mach: {}\n        stages: [allow]\n'), /routes\[0\]: unknown key "mach" \(check the spelling\)/],
    ['typo in a stage option', gw('      - name: a\n        stages: [{ type: deny, stauts: 401 }]\n'), /routes\[0\]\.stages\[0\]: unknown key "stauts" \(check the spelling\)/],
    ['a required stage option missing', gw('      - name: a\n        stages: [{ type: require-headers }]\n'), /routes\[0\]\.stages\[0\]\.headers: is required/],
    ['uppercase header name', gw('      - name: a\n        stages: [{ type: require-headers, headers: [{ name: X-Up }] }]\n'), /headers\[0\]\.name: must be a lowercase HTTP header name/],
    ['header rule with two matchers', gw('      - name: a\n        match: { headers: [{ name: x-a, exact: "1", prefix: "2" }] }\n        stages: [allow]\n'), /match\.headers\[0\]: set at most one of/],
    ['duplicate route names', gw('      - name: a\n        stages: [allow]\n      - name: a\n        stages: [allow]\n'), /routes\[1\]\.name: duplicate route name "a"/],
    ['route without stages key', gw('      - name: a\n'), /routes\[0\]\.stages: is required|routes\[0\]\.stages/],
    ['no gateways', 'gateways: {}\n', /^gateways: define at least one gateway/],
    ['missing gateways', 'server: {}\n', /^gateways/],
    ['unknown gateway kind', 'gateways:\n  public: { kind: publik }\n', /gateways\.public\.kind: Invalid option/],
    ['uppercase gateway name', 'gateways:\n  Public: { kind: public }\n', /gateways\.Public: gateway names are lowercase|gateways/],
    ['port out of range', 'server: { grpc: { port: 99999 } }\ngateways:\n  public: { kind: public }\n', /^server\.grpc\.port: Too big/],
    ['defaultGateway names nothing', 'gateways:\n  public: { kind: public }\ndefaultGateway: nope\n', /^defaultGateway: names no gateway; defined gateways: public/],
    ['host claimed twice', 'gateways:\n  a: { kind: public, select: { hosts: [x.com] } }\n  b: { kind: app, select: { hosts: [x.com] } }\n', /gateways\.b\.select\.hosts\[0\]: host "x\.com" already selects gateway "a"/],
    ['port claimed twice', 'gateways:\n  a: { kind: public, select: { ports: [80] } }\n  b: { kind: app, select: { ports: [80] } }\n', /gateways\.b\.select\.ports\[0\]: port 80 already selects gateway "a"/],
    ['uppercase host pattern', 'gateways:\n  a: { kind: public, select: { hosts: [X.com] } }\n', /gateways\.a\.select\.hosts\[0\]: must be a lowercase host name/],
    ['unknown top-level key', 'gatways: {}\ngateways:\n  a: { kind: public }\n', /\(root\): unknown key "gatways"/],
    ['wrong type for grace', 'server: { shutdownGraceMs: soon }\ngateways:\n  a: { kind: public }\n', /^server\.shutdownGraceMs: /],
    ['negative margin', 'server: { deadlineMarginMs: -1 }\ngateways:\n  a: { kind: public }\n', /^server\.deadlineMarginMs: /],
    ['bad log level', 'logging: { level: loud }\ngateways:\n  a: { kind: public }\n', /^logging\.level: /],
    ['broken YAML', 'gateways: [\n', /^YAML line \d+, column \d+: /],
    ['duplicate YAML key', 'gateways:\n  a: { kind: public }\ngateways:\n  b: { kind: public }\n', /^YAML .*unique|^YAML/],
    ['a scalar instead of a map', 'just a string\n', /\(root\): /],
  ];
  for (const [name, yaml, expected] of cases) {
    it(`rejects ${name} with a message naming the key`, () => {
      const found = problems(yaml);
      assert.ok(found.some((p) => expected.test(p)), `no problem matched ${expected}; got:\n${found.join('\n')}`);
    });
  }

  it('reports every problem at once, not only the first', () => {
    const found = problems(gw('      - name: a\n        match: { path: { prefix: x } }\n        stages: []\n'));
    assert.ok(found.length >= 2, found.join('\n'));
  });

  it('names an unreadable file', () => {
    assert.throws(() => loadConfigFile('/nonexistent/passgate.yaml'), /cannot read the file/);
  });

  it('resolves --config, then PASSGATE_CONFIG, then the embedded default only with --dev', () => {
    assert.deepEqual(resolveConfigPath({ config: '/a.yaml' }, { PASSGATE_CONFIG: '/b.yaml' }), { path: '/a.yaml', embedded: false });
    assert.deepEqual(resolveConfigPath({ config: '/a.yaml', dev: true }, {}), { path: '/a.yaml', embedded: false });
    assert.deepEqual(resolveConfigPath({}, { PASSGATE_CONFIG: '/b.yaml' }), { path: '/b.yaml', embedded: false });
    assert.deepEqual(resolveConfigPath({ dev: true }, {}), { path: DEFAULT_CONFIG_PATH, embedded: true });
    assert.throws(() => resolveConfigPath({}, {}), /no config given: pass --config FILE or set PASSGATE_CONFIG; --dev/);
    assert.throws(() => resolveConfigPath({ config: '' }, {}), /--config needs a file path/);
  });

  it('a bad file makes the process exit non-zero naming the key, and nothing starts', function () {
    this.timeout(30_000);
    const dir = mkdtempSync(join(tmpdir(), 'passgate-cfg-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, gw('      - name: a\n        match: { path: { prefix: api } }\n        stages: [allow]\n'));
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'ext-authz/src/main.ts', '--config', file], { encoding: 'utf8', timeout: 25_000 });
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /gateways\.public\.routes\[0\]\.match\.path\.prefix: must start with "\/"/);
    assert.match(run.stderr, /Nothing was started/);
    assert.doesNotMatch(run.stdout, /service started/);
  });
});
