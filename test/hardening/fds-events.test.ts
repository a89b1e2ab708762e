/**
 * Issue 12 item 12: identity stages report auth failures with the user they
 * could attribute, so the default `user-auth-failures` rule fires; events
 * are declared per stage type: unknown names are config errors, rules no
 * stage of the config can trigger are load-time warnings naming the rule.
 */
import assert from 'node:assert/strict';
import { ConfigError, parseConfigText } from '../../ext-authz/src/config/load.js';
import { createCa, issueCertificate, toXfcc } from '../../ext-authz/src/devcerts/generate.js';
import { httpCheck, startService } from '../support/service.js';

const RULE = '{ name: user-auth-failures, events: [auth_failure], subject: user, threshold: 3, window: 60s, block: 15m }';

function yaml(stages: string, rules = RULE): string {
  return `
identity:
  mtls:
    rules:
      - uri: { prefix: "spiffe://acme/" }
        identity: { subject: "{rest}", kind: user }
fds:
  store: memory
  rules:
    - ${rules}
gateways:
  secure:
    kind: secure
    routes: [{ name: r, stages: ${stages} }]
defaultGateway: secure
`;
}

describe('fds events from identity stages (issue 12 item 12)', function () {
  this.timeout(20_000);

  it('unknown event names are config errors naming the key', () => {
    let problems: readonly string[] = [];
    try {
      parseConfigText(yaml('[fds, mtls]', '{ name: typo, events: [auth_failur], subject: user, threshold: 3, window: 60s, block: 15m }'), 't.yaml');
    } catch (e) {
      if (e instanceof ConfigError) problems = e.problems;
      else throw e;
    }
    assert.ok(problems.some((p) => p.startsWith('fds.rules[0].events[0]: no stage type reports "auth_failur"')), problems.join('\n'));
  });

  it('a rule no stage of the config can trigger is a warning naming the rule', async () => {
    const run = await startService(yaml('[fds, allow]'));
    try {
      assert.ok(run.logs.lines.some((l) => l['level'] === 40 && l['fds_rule'] === 'user-auth-failures'), 'no warning for an untriggerable rule');
    } finally {
      await run.stop();
    }
    const ok = await startService(yaml('[fds, mtls]'));
    try {
      assert.ok(!ok.logs.lines.some((l) => l['fds_rule'] === 'user-auth-failures'), 'warned although mtls reports user auth failures');
    } finally {
      await ok.stop();
    }
  });

  it('mtls failures of an authentic certificate count for its user: the user rule blocks', async () => {
    const ca = await createCa();
    const day = 86_400_000;
    const expired = await issueCertificate({ ca, sans: { uri: ['spiffe://acme/alice'] }, notBefore: new Date(Date.now() - 3 * day), notAfter: new Date(Date.now() - 2 * day) });
    const good = await issueCertificate({ ca, sans: { uri: ['spiffe://acme/alice'] } });
    const run = await startService(yaml('[fds, mtls]'));
    const ask = async (xfcc: string, ip: string) => {
      const res = await run.check(httpCheck({ headers: { 'x-forwarded-client-cert': xfcc }, sourceAddress: ip }));
      return (res.status?.code ?? 0) === 0 ? 'allow' : String(JSON.parse(res.denied_response?.body ?? '{}').reason);
    };
    try {
      assert.equal(await ask(toXfcc(good), '198.51.100.9'), 'allow');
      for (let i = 0; i < 3; i++) assert.equal(await ask(toXfcc(expired), `198.51.100.${i + 1}`), 'certificate_expired');
      // Another, valid certificate of the same user, from another address: the user is blocked.
      assert.equal(await ask(toXfcc(good), '198.51.100.50'), 'blocked');
    } finally {
      await run.stop();
    }
  });
});
