/**
 * Issue 12 item 8: the Passport header (and every internal header) is
 * stripped on every route, and a config whose passport header is not
 * internal is refused at load, passport stage or not.
 */
import assert from 'node:assert/strict';
import { stringify } from 'yaml';
import { ConfigError } from '../../ext-authz/src/config/load.js';
import { configWith, passportSection } from '../passport/helpers.js';
import { httpCheck, startService } from '../support/service.js';

function problems(f: () => unknown): string[] {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  return [];
}

describe('internal headers everywhere (issue 12 item 8)', () => {
  it('refuses a passport header that is not internal even when no route has a passport stage', () => {
    const p = problems(() => configWith(passportSection({ header: 'x-user-passport' }), ['allow']));
    assert.ok(p.some((l) => l.startsWith('passport.header: "x-user-passport" is not an internal header')), p.join('\n'));
    assert.deepEqual(problems(() => configWith(passportSection({ header: 'x-passgate-passport' }), ['allow'])), [], 'a header under an internal prefix is internal');
  });

  it('strips x-passport and every listed internal header on routes without a passport stage', async () => {
    const cfg = {
      headers: { internal: ['x-passport', 'x-user-id'] },
      gateways: {
        public: { kind: 'public', routes: [{ name: 'bare', stages: ['allow'] }] },
        other: { kind: 'app', select: { ports: [7000] }, defaultRoute: { stages: ['allow'] } },
      },
      defaultGateway: 'public',
      passport: passportSection(),
    };
    const run = await startService(stringify(cfg));
    try {
      for (const port of [8443, 7000]) {
        const res = await run.check(httpCheck({ destinationPort: port, headers: { 'x-passport': 'forged', 'x-user-id': 'admin', 'x-passgate-user': 'root' } }));
        assert.equal(res.status?.code ?? 0, 0);
        const removed = res.ok_response?.headers_to_remove ?? [];
        for (const h of ['x-passport', 'x-user-id', 'x-passgate-user']) assert.ok(removed.includes(h), `${h} not removed on port ${port}: ${JSON.stringify(removed)}`);
      }
    } finally {
      await run.stop();
    }
  });
});
