/**
 * The composition (capabilities/index.ts): the root schema and the stage
 * types come from the capability list; a missing or cyclic dependency, a
 * duplicate stage type or section is a startup error naming it.
 */
import assert from 'node:assert/strict';
import { z } from 'zod';
import { compose, CAPABILITIES } from '../../ext-authz/src/capabilities/index.js';
import { STATELESS, type Capability } from '../../ext-authz/src/capabilities/capability.js';
import { ConfigError } from '../../ext-authz/src/config/errors.js';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { CONTINUE } from '../../ext-authz/src/pipeline/decision.js';

const cap = (name: string, extra: Partial<Capability<undefined>> = {}): Capability<undefined> => ({ name, prepare: () => STATELESS, ...extra });

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return [...err.problems];
  }
  assert.fail('expected a ConfigError');
}

describe('composition', () => {
  it('derives the stage types and the prepare order from the one list', () => {
    const c = compose();
    assert.deepEqual(c.capabilities.map((x) => x.name), CAPABILITIES.map((x) => x.name));
    const declared = CAPABILITIES.flatMap((x) => (x.stages ?? []).map((s) => s.type));
    assert.deepEqual([...c.stageTypes.keys()].sort(), [...declared].sort());
    for (const t of ['allow', 'authorize', 'deny', 'fds', 'mtls', 'passport', 'relay', 'require-headers']) assert.ok(declared.includes(t), t);
  });

  it('orders a capability after the ones it needs', () => {
    const c = compose([cap('late', { needs: ['early'] }), cap('early')]);
    const names = c.capabilities.map((x) => x.name);
    assert.ok(names.indexOf('early') < names.indexOf('late'));
  });

  it('a missing dependency, a cycle, a duplicate stage type or section is an error naming it', () => {
    assert.deepEqual(problemsOf(() => compose([cap('alpha', { needs: ['beta'] })])), ['capability "alpha" needs "beta", which is not in the composition']);
    assert.match(problemsOf(() => compose([cap('a', { needs: ['b'] }), cap('b', { needs: ['a'] })])).join('\n'), /cycle: a -> b -> a/);
    const allow = { type: 'allow', schema: z.strictObject({ type: z.literal('allow') }), description: 'again', create: () => ({ type: 'allow', run: () => CONTINUE }) };
    assert.deepEqual(problemsOf(() => compose([cap('dup', { stages: [allow] })])), ['capability "dup": stage type "allow" already comes from "core"']);
    assert.deepEqual(problemsOf(() => compose([cap('dup', { section: { key: 'fds', schema: z.unknown() } })])), ['capability "dup": config section "fds" already belongs to "fds"']);
  });

  it("an extra capability's section and stage types join the root schema; without it they are unknown", () => {
    const schema = z.strictObject({ type: z.literal('tenant'), header: z.string() });
    const tenant = cap('tenant', {
      section: { key: 'tenants', schema: z.strictObject({ names: z.array(z.string()) }).optional() },
      stages: [{ type: 'tenant', schema, description: 'test', create: () => ({ type: 'tenant', run: () => CONTINUE }) }],
    });
    const yaml = 'tenants: { names: [acme] }\ngateways:\n  public:\n    kind: public\n    routes: [{ name: r, stages: [{ type: tenant, header: x-tenant }] }]\n';
    const config = parseConfigText(yaml, 't.yaml', compose([tenant]));
    assert.deepEqual((config as unknown as { tenants: unknown }).tenants, { names: ['acme'] });
    assert.deepEqual(problemsOf(() => parseConfigText(yaml, 't.yaml')), [
      `gateways.public.routes[0].stages[0].type: unknown stage type; known types: ${CAPABILITIES.flatMap((x) => (x.stages ?? []).map((s) => s.type)).join(', ')}`,
      '(root): unknown key "tenants" (check the spelling)',
    ]);
  });

  it('the old gateway key mtls is refused with a hint naming trustXfcc', () => {
    const problems = problemsOf(() => parseConfigText('gateways:\n  secure:\n    kind: secure\n    mtls: true\n', 't.yaml'));
    assert.deepEqual(problems, ['gateways.secure.mtls: renamed: use trustXfcc (it says whether x-forwarded-client-cert is believed)']);
  });
});
