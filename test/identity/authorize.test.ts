/**
 * The `authorize` stage on a CheckContext: routes authorize by subject
 * (exact, `prefix*`, `*suffix`), kind, group, attribute and source (issue 3,
 * "Routes then authorize by subject, kind, attribute or group"). No identity
 * is 401 identity_required; an identity that does not fit is 403
 * forbidden_identity with the reason in the audit.
 */
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import type { RouteTable } from '../../ext-authz/src/routing/route-table.js';
import { assemble } from '../../ext-authz/src/server/assemble.js';
import { Metrics } from '../../ext-authz/src/observability/metrics.js';
import { CheckContext, type Identity } from '../../ext-authz/src/pipeline/context.js';
import { toRequestView } from '../../ext-authz/src/pipeline/request-view.js';
import { httpCheck } from '../support/service.js';

const alice: Identity = { subject: 'alice@acme', kind: 'user', source: 'mtls', attributes: { org: 'acme' }, groups: ['partners', 'org:acme'] };
const billing: Identity = { subject: 'billing.svc.acme.example', kind: 'service', source: 'mtls', attributes: {}, groups: [] };

describe('identity: the authorize stage', () => {
  let table: RouteTable;
  before(async () => {
    const config = parseConfigText(
      `
gateways:
  secure:
    kind: secure
    trustXfcc: true
    routes:
      - { name: exact, match: { path: { prefix: /exact } }, stages: [{ type: authorize, subjects: [alice@acme] }] }
      - { name: suffix, match: { path: { prefix: /suffix } }, stages: [{ type: authorize, subjects: ["*@acme"] }] }
      - { name: prefix, match: { path: { prefix: /prefix } }, stages: [{ type: authorize, subjects: ["billing.*"] }] }
      - { name: groups, match: { path: { prefix: /groups } }, stages: [{ type: authorize, groups: [admins, partners] }] }
      - { name: attrs, match: { path: { prefix: /attrs } }, stages: [{ type: authorize, attributes: { org: [acme, globex] } }] }
      - { name: sources, match: { path: { prefix: /sources } }, stages: [{ type: authorize, sources: [jwt] }] }
      - { name: all, match: { path: { prefix: /all } }, stages: [{ type: authorize, kinds: [user], groups: [partners], subjects: ["*@acme"] }] }
`,
      't.yaml',
    );
    table = (await assemble(config, { logger: pino({ level: 'silent' }), metrics: new Metrics(false) })).table;
  });

  function authorize(path: string, identity: Identity | undefined): { reason: string | undefined; status: number | undefined; why: unknown } {
    const view = toRequestView(httpCheck({ gateway: 'secure', path }));
    const gw = table.selectGateway(view)!;
    const route = table.selectRoute(gw, view);
    assert.equal(route.name, path.slice(1));
    const ctx = new CheckContext(view, gw, route, Date.now() + 1000, 't', 0);
    if (identity) ctx.identity = identity;
    const r = route.stages[0]!.run(ctx) as { kind: string; denial?: { reason: string; status: number } };
    return { reason: r.kind === 'continue' ? undefined : r.denial?.reason, status: r.denial?.status, why: ctx.audit['authorize'] };
  }

  it('subjects: exact, *suffix and prefix*', () => {
    assert.equal(authorize('/exact', alice).reason, undefined);
    assert.deepEqual(authorize('/exact', { ...alice, subject: 'alice@acme.evil' }), { reason: 'forbidden_identity', status: 403, why: 'subject alice@acme.evil not allowed' });
    assert.equal(authorize('/suffix', alice).reason, undefined);
    assert.equal(authorize('/suffix', { ...alice, subject: 'bob@globex' }).reason, 'forbidden_identity');
    assert.equal(authorize('/prefix', billing).reason, undefined);
    assert.equal(authorize('/prefix', alice).reason, 'forbidden_identity');
  });

  it('groups: any listed group; attributes: each named one with a listed value; sources', () => {
    assert.equal(authorize('/groups', alice).reason, undefined);
    assert.deepEqual(authorize('/groups', billing), { reason: 'forbidden_identity', status: 403, why: 'in none of the required groups' });
    assert.equal(authorize('/attrs', alice).reason, undefined);
    assert.equal(authorize('/attrs', { ...alice, attributes: { org: 'initech' } }).why, 'attribute org=initech not allowed');
    assert.equal(authorize('/attrs', billing).why, 'attribute org=(absent) not allowed');
    assert.equal(authorize('/sources', alice).why, 'identity source mtls not allowed');
    assert.equal(authorize('/sources', { ...alice, source: 'jwt' }).reason, undefined);
  });

  it('every condition must hold', () => {
    assert.equal(authorize('/all', alice).reason, undefined);
    assert.equal(authorize('/all', { ...alice, kind: 'developer' }).why, 'kind developer not allowed');
    assert.equal(authorize('/all', { ...alice, groups: [] }).why, 'in none of the required groups');
  });

  it('no identity, or an anonymous one, is 401 identity_required', () => {
    assert.deepEqual(authorize('/groups', undefined), { reason: 'identity_required', status: 401, why: undefined });
    assert.equal(authorize('/groups', { ...alice, kind: 'anonymous' }).reason, 'identity_required');
  });

  it('an authorize stage with no condition is a config error', () => {
    assert.throws(
      () => parseConfigText('gateways:\n  g: { kind: secure, routes: [{ name: r, stages: [{ type: authorize }] }] }\n', 't.yaml'),
      /set at least one of subjects, kinds, groups, attributes, sources/,
    );
  });
});
