/**
 * oauth2 with FDS and the audit log: failed client authentication counts per
 * client id (a brute force on a secret blocks the client), the client id is
 * an FDS subject, and no secret or token reaches any log line.
 */
import assert from 'node:assert/strict';
import { startService, httpCheck, type Running } from '../support/service.js';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import { TestAuthServer, GATEWAY, PARTNER_A, PARTNER_B } from './provider.js';

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

function reason(res: CheckResponse): string {
  return res.ok_response ? 'ok' : (JSON.parse(res.denied_response?.body ?? '{}') as { reason: string }).reason;
}

describe('oauth2 with FDS and audit', function () {
  this.timeout(20_000);
  let as: TestAuthServer;
  let svc: Running;

  before(async () => {
    as = await new TestAuthServer().start();
    svc = await startService(
      JSON.stringify({
        server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, shutdownGraceMs: 200, defaultDeadlineMs: 1_500 },
        logging: { level: 'info', audit: true },
        fds: {
          store: 'memory',
          rules: [{ name: 'client-secret-guessing', events: ['oauth2_failure'], subject: 'client', threshold: 3, window: '60s', block: '15m' }],
        },
        oauth2: {
          servers: { corp: { issuer: as.issuer, discovery: 'oidc', allowInsecureHttp: true, clientCredentialsScope: 'orders:read', client: { id: GATEWAY.id, secret: GATEWAY.secret } } },
        },
        gateways: {
          partners: {
            kind: 'public',
            routes: [
              { name: 'api', match: { path: { prefix: '/' } }, stages: [{ type: 'fds' }, { type: 'oauth2', credentials: ['basic', 'bearer'], requiredScopes: ['orders:read'] }, { type: 'allow' }] },
            ],
          },
        },
        defaultGateway: 'partners',
      }),
    );
  });
  after(async () => {
    await svc?.stop();
    await as?.close();
  });

  it('blocks a client after repeated bad secrets, even with the right one, and logs no secret or token', async () => {
    const token = await as.token(PARTNER_B, 'orders:read');
    assert.equal(reason(await svc.check(httpCheck({ path: '/x', headers: { authorization: `Bearer ${token}` } }))), 'ok');
    assert.equal(reason(await svc.check(httpCheck({ path: '/x', headers: { authorization: basic(PARTNER_A.id, PARTNER_A.secret) } }))), 'ok');
    for (let i = 0; i < 3; i++) {
      const res = await svc.check(httpCheck({ path: '/x', headers: { authorization: basic(PARTNER_A.id, `guess-number-${i}`) } }));
      assert.ok(['invalid_client', 'blocked'].includes(reason(res)), reason(res));
    }
    assert.equal(reason(await svc.check(httpCheck({ path: '/x', headers: { authorization: basic(PARTNER_A.id, PARTNER_A.secret) } }))), 'blocked');
    assert.equal(reason(await svc.check(httpCheck({ path: '/x', headers: { authorization: `Bearer ${token}` } }))), 'ok', 'another client is not affected');

    const audit = svc.logs.lines.filter((l) => l['oauth2'] !== undefined);
    assert.ok(audit.some((l) => (l['oauth2'] as Record<string, unknown>)['client_id'] === PARTNER_A.id && (l['oauth2'] as Record<string, unknown>)['error'] === 'invalid_client'));
    const all = JSON.stringify(svc.logs.lines);
    for (const secret of [PARTNER_A.secret, GATEWAY.secret, token, 'guess-number-0', Buffer.from(`${PARTNER_A.id}:${PARTNER_A.secret}`).toString('base64')]) {
      assert.ok(!all.includes(secret), `a log line holds ${secret.slice(0, 6)}…`);
    }
  });
});
