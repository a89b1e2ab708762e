/**
 * Header values built from identity or claim text (an OIDC `name`, a subject, a user API's answer) go out
 * to Envoy only when they are valid HTTP field values that keep their meaning: a control character (LF
 * would start a new header on an HTTP/1 upstream) or a lone UTF-16 surrogate (which protobuf's UTF-8
 * turns into U+FFFD, so two identities would reach the upstream as one) denies the Check with
 * `unsafe_header_value`, through the real service, for upstream and client-bound headers alike.
 */
import assert from 'node:assert/strict';
import { startService, httpCheck, headerMap, type Running } from '../support/service.js';
import { isSafeFieldValue } from '../../ext-authz/src/pipeline/text.js';

const UNSAFE: Record<string, string> = {
  lf: 'alice\nx-passgate-user: admin',
  cr: 'alice\r',
  nul: 'al\u0000ice',
  del: 'alice\u007f',
  vt: 'alice\u000b',
  lone_high: 'alice\ud800',
  lone_low: '\udc00alice',
};
const SAFE: Record<string, string> = {
  plain: 'alice',
  tab: 'alice\tsmith',
  latin: 'Zoë Müller',
  emoji: 'ok \ud83d\ude00',
  empty: '',
};

function route(name: string, value: string): string {
  // JSON escapes are YAML double-quoted escapes: the config carries exactly these code units.
  return `      - { name: ${name}, match: { path: { exact: /${name} } }, stages: [{ type: test-set-header, name: x-user-name, value: ${JSON.stringify(value)} }, allow] }\n`;
}

const CONFIG = `
logging: { level: info, audit: true }
gateways:
  public:
    kind: public
    select: { hosts: [www.example.com] }
    routes:
${Object.entries({ ...UNSAFE, ...SAFE }).map(([n, v]) => route(n, v)).join('')}`;

describe('hardening: header values that cannot go out as they are', function () {
  this.timeout(20_000);
  let run: Running;
  before(async () => {
    run = await startService(CONFIG);
  });
  after(async () => run?.stop());

  it('the config carries the exact code units (lone surrogates included)', () => {
    assert.equal(isSafeFieldValue(UNSAFE['lone_high']!), false);
    assert.equal(isSafeFieldValue(SAFE['emoji']!), true);
  });

  for (const [name, value] of Object.entries(UNSAFE)) {
    it(`denies 403 unsafe_header_value, forwarding nothing, for a value with ${name.replace('_', ' ')}`, async () => {
      const res = await run.check(httpCheck({ path: `/${name}` }));
      assert.equal(res.ok_response, undefined, 'not allowed');
      assert.equal(res.denied_response?.status?.code, 403);
      assert.equal(JSON.parse(res.denied_response?.body ?? '{}').reason, 'unsafe_header_value');
      assert.ok(!JSON.stringify(res).includes('alice'), 'the value is in no part of the answer');
      const audit = run.logs.lines.find((l) => l['route'] === name && l['reason'] === 'unsafe_header_value');
      assert.ok(audit, `audited: ${JSON.stringify(run.logs.lines.filter((l) => l['route'] === name))}`);
      assert.ok(!JSON.stringify(audit).includes(value), 'the value is not logged');
    });
  }

  for (const [name, value] of Object.entries(SAFE)) {
    it(`forwards a value with ${name} unchanged`, async () => {
      const res = await run.check(httpCheck({ path: `/${name}` }));
      assert.ok(res.ok_response, JSON.stringify(res.denied_response));
      assert.equal(headerMap(res.ok_response.headers)['x-user-name'], value);
    });
  }
});
