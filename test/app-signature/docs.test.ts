/** docs/app-gateway.md: its config example validates, and it names every stage option, section key and refusal reason. */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { parse } from 'yaml';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { appSignatureStage } from '../../ext-authz/src/app-signature/app-signature-stage.js';

const doc = readFileSync(new URL('../../docs/app-gateway.md', import.meta.url), 'utf8');
const block = /```yaml\n(# app-example\n[\s\S]*?)```/.exec(doc)?.[1];

describe('docs/app-gateway.md', () => {
  it('the example validates (with a passport section and the key paths left out)', () => {
    assert.ok(block, 'example missing');
    const obj = parse(block) as { appSignature: { credentials: Record<string, unknown>; registration: { authorities: Record<string, Record<string, unknown>> } } };
    delete obj.appSignature.credentials['keyFile'];
    const a = obj.appSignature.registration.authorities['backend']!;
    delete a['publicKeyFile'];
    a['publicKey'] = 'PEM';
    const cfg = validateConfig({ ...obj, passport: { issuer: 'https://p.example', audience: 'api', keys: { active: 'k', entries: [{ id: 'k', generate: true }] }, source: { type: 'static', users: {} } } });
    assert.equal(cfg.appSignature!.credentials.ttl, 3_600_000);
    assert.equal(cfg.appSignature!.registration.authorities['backend']!.maxAge, 300_000);
  });

  it('names every stage option and every refusal reason the sources can give', () => {
    const shape = (appSignatureStage.schema as unknown as { shape: Record<string, unknown> }).shape;
    for (const key of Object.keys(shape)) if (key !== 'type') assert.ok(doc.includes(`\`${key}\``), `option ${key}`);
    const dir = new URL('../../ext-authz/src/app-signature/', import.meta.url);
    const reasons = new Set<string>();
    for (const f of readdirSync(dir)) {
      if (!['message-signature.ts', 'content-digest.ts', 'verify.ts', 'credential.ts', 'app-signature-stage.ts'].includes(f)) continue;
      const text = readFileSync(new URL(f, dir), 'utf8');
      for (const m of text.matchAll(/(?:fail\(|reason: )'([a-z_]+)'/g)) reasons.add(m[1]!);
    }
    assert.ok(reasons.size > 20, `found ${reasons.size} reasons`);
    for (const r of reasons) assert.ok(doc.includes(`\`${r}\``), `reason ${r} is not in the refusals table`);
  });
});
