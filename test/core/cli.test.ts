/**
 * The `passgate` command line as a user meets it: real processes
 * (`tsx ext-authz/src/cli/main.ts ...`). A typo never starts a service.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { defaultComposition } from '../../ext-authz/src/capabilities/index.js';

const CLI = 'ext-authz/src/cli/main.ts';

function passgate(args: string[], env: NodeJS.ProcessEnv = {}) {
  const e = { ...process.env, ...env };
  delete e['PASSGATE_CONFIG'];
  return spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { encoding: 'utf8', timeout: 25_000, env: e });
}

describe('passgate CLI (real processes)', function () {
  this.timeout(90_000);

  it('--help prints the usage with every shipped command and exits 0', () => {
    for (const args of [['--help'], ['help'], ['serve', '--help']]) {
      const r = passgate(args);
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
      for (const cmd of ['\\[serve\\]', 'validate FILE', 'explain --config FILE', 'stages', 'fds']) assert.match(r.stdout, new RegExp(`passgate ${cmd}`));
      assert.doesNotMatch(r.stdout + r.stderr, /service started/);
    }
  });

  it('a mistyped flag is a usage error (exit 2) naming it, and nothing starts', () => {
    const r = passgate(['--conf', 'x.yaml']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--conf/);
    assert.match(r.stderr, /usage: passgate/);
    assert.doesNotMatch(r.stdout + r.stderr, /service started/);
  });

  it('stray arguments and unknown commands are usage errors', () => {
    for (const args of [['serve', 'extra'], ['validate', 'a.yaml', 'b.yaml'], ['explian'], ['explain', '--config', 'a.yaml', 'https://a.example/', 'extra']]) {
      const r = passgate(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /usage: passgate/, args.join(' '));
    }
  });

  it('without --config, PASSGATE_CONFIG or --dev it refuses to start (exit 2) and says what to pass', () => {
    for (const args of [[], ['serve']]) {
      const r = passgate(args);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /no config given: pass --config FILE or set PASSGATE_CONFIG; --dev/);
    }
  });

  it('validate FILE: 0 and a summary for a good file, 1 with the key for a bad one, 2 without FILE', () => {
    const dir = mkdtempSync(join(tmpdir(), 'passgate-cli-'));
    const good = join(dir, 'good.yaml');
    writeFileSync(good, 'gateways:\n  public:\n    kind: public\n    routes:\n      - name: a\n        stages: [allow]\ndefaultGateway: public\n');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'gateways:\n  public:\n    kind: public\n    routes:\n      - name: a\n        match: { path: { prefix: api } }\n        stages: [allow]\n');
    const ok = passgate(['validate', good]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /good\.yaml: valid \(1 gateway\(s\), 1 route\(s\)\)/);
    const ko = passgate(['validate', bad]);
    assert.equal(ko.status, 1, ko.stderr);
    assert.match(ko.stderr, /gateways\.public\.routes\[0\]\.match\.path\.prefix: must start with "\/"/);
    assert.equal(passgate(['validate']).status, 2);
  });

  it('stages lists every stage type with its description', () => {
    const r = passgate(['stages']);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    const types = lines.map((l) => l.split(/\s+/)[0]!);
    for (const t of ['allow', 'deny', 'require-headers', 'mtls', 'authorize', 'fds', 'passport', 'relay']) assert.ok(types.includes(t), t);
    for (const [i, t] of types.entries()) {
      const d = defaultComposition().stageTypes.get(t)?.definition;
      assert.ok(d, `${t} is a known stage type`);
      assert.ok(lines[i]!.endsWith(d.description), lines[i]);
      assert.ok(!t.startsWith('test-'), t);
    }
  });

  it('--dev runs the embedded development config with a loud warning; SIGTERM stops it with 0', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, PASSGATE_GRPC_PORT: '0', PASSGATE_ADMIN_PORT: '0' };
    delete env['PASSGATE_CONFIG'];
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, '--dev'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const warning = await new Promise<Record<string, unknown>>((resolve, reject) => {
        child.on('exit', (code) => reject(new Error(`exited ${code} before the warning`)));
        createInterface({ input: child.stdout! }).on('line', (line) => {
          const rec = JSON.parse(line) as Record<string, unknown>;
          if (String(rec['msg']).startsWith('DEVELOPMENT CONFIG IN USE')) resolve(rec);
        });
      });
      assert.equal(warning['level'], 40, 'a warn line');
      assert.match(String(warning['config']), /default\.yaml$/);
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
