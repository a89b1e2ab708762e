/**
 * Layering is enforced: the real sources follow layers.json, and the check
 * itself is shown to catch a planted cycle, an upward import and a sideways
 * import between two capabilities (a fixture in a temp dir).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLayers, type LayerConfig } from './layers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

describe('architecture: layers and import cycles', function () {
  this.timeout(120_000);

  it('ext-authz/src, local-gateway/src and wasm-filters/host: no cycle (type imports included), no upward or sideways import', async () => {
    const config = JSON.parse(readFileSync(join(ROOT, 'layers.json'), 'utf8')) as LayerConfig;
    const problems = await checkLayers(ROOT, config, join(ROOT, 'tsconfig.json'));
    assert.deepEqual(problems, []);
  });

  it('the check catches a planted cycle, an upward import and a sideways import', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'passgate-layers-'));
    try {
      const file = (path: string, text: string) => {
        mkdirSync(dirname(join(dir, path)), { recursive: true });
        writeFileSync(join(dir, path), text);
      };
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }));
      file('src/low/a.ts', "import type { B } from './b.js';\nexport interface A { b?: B }\n");
      file('src/low/b.ts', "import type { A } from './a.js';\nexport interface B { a?: A }\n");
      file('src/low/up.ts', "import { high } from '../high/h.js';\nexport const up = high;\n");
      file('src/high/h.ts', 'export const high = 1;\n');
      file('src/caps/one/x.ts', "import { y } from '../two/y.js';\nexport const x = y;\n");
      file('src/caps/two/y.ts', 'export const y = 2;\n');
      const config: LayerConfig = {
        roots: ['src'],
        layers: [
          { name: 'low', paths: ['src/low/'] },
          { name: 'caps', isolated: true, paths: ['src/caps/one/', 'src/caps/two/'] },
          { name: 'high', paths: ['src/high/'] },
        ],
      };
      const problems = await checkLayers(dir, config, join(dir, 'tsconfig.json'));
      assert.ok(problems.some((p) => /^import cycle: src\/low\/(a|b)\.ts -> src\/low\/(a|b)\.ts -> /.test(p)), problems.join('\n'));
      assert.ok(problems.includes('upward import: src/low/up.ts (low) imports src/high/h.ts (high)'), problems.join('\n'));
      assert.ok(problems.some((p) => p.startsWith('sideways import: src/caps/one/x.ts')), problems.join('\n'));
      assert.equal(problems.length, 3, problems.join('\n'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loading the config schema or the config loader loads no Redis client (istio/checks runs offline)', () => {
    // ioredis is CommonJS: whatever imports it, Node records it in the CommonJS module cache.
    const script = [
      "import { createRequire } from 'node:module';",
      "await import('./ext-authz/src/config/schema.ts');",
      "const load = await import('./ext-authz/src/config/load.ts');",
      "load.parseConfigText('gateways:\\n  public:\\n    kind: public\\n    routes: [{ name: r, stages: [fds, allow] }]\\n', 'x.yaml');",
      "const cache = createRequire(import.meta.url).cache;",
      "console.log(JSON.stringify(Object.keys(cache).filter((k) => k.includes('/node_modules/ioredis/'))));",
    ].join('\n');
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out.trim().split('\n').pop()!), []);
    // And the probe can see ioredis when it is loaded, so the empty list means something.
    const control = execFileSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', "import { createRequire } from 'node:module';\nawait import('./ext-authz/src/fds/engine.ts');\nconsole.log(Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('/node_modules/ioredis/')).length);"],
      { cwd: ROOT, encoding: 'utf8' },
    );
    assert.ok(Number(control.trim().split('\n').pop()) > 0, 'importing the FDS engine does load ioredis');
  });
});
