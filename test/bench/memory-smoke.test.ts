/**
 * bench:memory runs only by hand, so nothing else would notice when its
 * config stops loading (it did: a renamed gateway key). A few thousand
 * Checks prove it still runs the real chain and decides as it should.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { REPO_ROOT } from '../../local-gateway/src/stack.js';

describe('bench:memory (smoke)', () => {
  it('runs a short pass through the real Checker and reports allows and precise denials', function () {
    this.timeout(120_000);
    const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', 'bench/memory/run.ts', '--checks', '2000', '--pool', '4'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: 110_000,
    });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const m = /decisions: (\{.*\})/.exec(r.stdout);
    assert.ok(m, r.stdout);
    const decisions = JSON.parse(m[1]!) as Record<string, number>;
    assert.ok((decisions['allow'] ?? 0) > 0, m[1]);
    assert.ok((decisions['certificate_too_large'] ?? 0) > 0, m[1]);
    assert.match(r.stdout, /ratio end\/after-10%: RSS [0-9.]+, heap [0-9.]+/);
  });
});
