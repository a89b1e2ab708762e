/** The config example in docs/tokens.md (the block starting `# tokens-example`) must validate and compile. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { validateConfig } from '../../ext-authz/src/config/load.js';

const doc = readFileSync(new URL('../../docs/tokens.md', import.meta.url), 'utf8');
const block = /```yaml\n(# tokens-example\n[\s\S]*?)```/.exec(doc)?.[1];

describe('docs/tokens.md example', () => {
  it('validates (with a passport section for its passport stages)', () => {
    assert.ok(block, 'example missing');
    const obj = parse(block) as Record<string, unknown>;
    const cfg = validateConfig({
      ...obj,
      passport: { issuer: 'https://passgate.example', audience: 'api', keys: { active: 'k', entries: [{ id: 'k', generate: true }] }, source: { type: 'static', users: {} } },
    });
    assert.deepEqual(Object.keys(cfg.tokens!.issuers), ['op']);
    assert.equal(cfg.tokens!.issuers['op']!.clockSkew, 30_000);
  });

  it('names every stage option the schema knows', async () => {
    const { proofStage } = await import('../../ext-authz/src/tokens/proof-stage.js');
    const { jwtStage } = await import('../../ext-authz/src/tokens/jwt-stage.js');
    for (const def of [jwtStage, proofStage]) {
      const shape = ((def.schema as unknown as { shape?: Record<string, unknown>; def?: { in?: { shape: Record<string, unknown> } } }).shape ??
        (def.schema as unknown as { _zod: { def: { in?: { shape: Record<string, unknown> } } } })._zod?.def?.in?.shape) as Record<string, unknown> | undefined;
      assert.ok(shape, `${def.type}: schema shape not found`);
      for (const key of Object.keys(shape)) if (key !== 'type') assert.ok(doc.includes(`\`${key}\``), `docs/tokens.md does not mention ${def.type}.${key}`);
    }
  });
});
