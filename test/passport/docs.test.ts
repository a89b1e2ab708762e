/** The config examples in docs/passport.md (blocks starting `# passport-example`) must validate. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { worstCasePassportBytes } from '../../ext-authz/src/passport/claims.js';
import { configWith, passportSection } from './helpers.js';

const doc = readFileSync(new URL('../../docs/passport.md', import.meta.url), 'utf8');
const blocks = [...doc.matchAll(/```yaml\n(# passport-example\n[\s\S]*?)```/g)].map((m) => m[1]!);

describe('docs/passport.md examples', () => {
  it('has examples', () => assert.ok(blocks.length >= 2));
  blocks.forEach((text, i) => {
    it(`example ${i + 1} validates`, () => {
      const obj = parse(text) as Record<string, unknown>;
      const providers = Object.keys((obj['passport'] as { relay?: { providers: object } }).relay?.providers ?? {});
      const stages = providers.length > 0 ? [{ type: 'relay', providers }, 'passport'] : ['passport'];
      validateConfig({ ...obj, gateways: { public: { kind: 'public', routes: [{ name: 'a', stages }] } } });
    });
  });
  it('the documented worst-case size for the defaults is right', () => {
    const bytes = worstCasePassportBytes(configWith(passportSection({ audience: 'x' })).passport!);
    const documented = /defaults produce ≈ ([\d.]+) KB/.exec(doc)?.[1];
    assert.ok(documented, 'size statement missing from the doc');
    assert.ok(Math.abs(bytes / 1000 - Number(documented)) < 0.3, `doc says ${documented} KB, computed ${bytes} bytes`);
  });
});
