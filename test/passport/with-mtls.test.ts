/**
 * The real chain, no test-only identity: the mTLS identity stage (identity
 * capability) establishes the caller from the peer principal, and the
 * passport stage turns it into a Passport, over gRPC.
 */
import assert from 'node:assert/strict';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { createPassportVerifier } from '../../ext-authz/src/passport/consumer/index.js';
import { authzClient, check as grpcCheck, type AuthzClient } from '../support/service.js';
import { silent } from './helpers.js';

describe('passport after the mtls identity stage (gRPC)', () => {
  let svc: PassgateService;
  let c: AuthzClient;
  before(async () => {
    const config = validateConfig({
      server: { defaultDeadlineMs: 10_000 },
      identity: {
        mtls: {
          rules: [
            {
              name: 'partners',
              uri: { regex: 'spiffe://partners\\.example\\.com/org/(?<org>[^/]+)/user/(?<user>[^/]+)' },
              identity: { subject: '{user}@{org}', kind: 'user' },
            },
          ],
        },
      },
      gateways: { secure: { kind: 'secure', trustXfcc: true, routes: [{ name: 'api', stages: ['mtls', 'passport'] }] } },
      passport: {
        issuer: 'https://passgate.test',
        audience: 'orders',
        keys: { active: 'k1', entries: [{ id: 'k1', generate: true }] },
        source: { type: 'static', users: { 'alice@acme': { id: 'u-alice', roles: ['partner'] } } },
      },
    });
    svc = await PassgateService.start({ config, grpcPort: 0, adminPort: 0, processMetrics: false, logger: silent });
    c = authzClient(svc.grpcPort);
  });
  after(async () => {
    c.close();
    await svc.stop(0);
  });

  const check = (principal: string): Promise<CheckResponse> =>
    grpcCheck(
      c,
      {
        attributes: {
          context_extensions: { gateway: 'secure' },
          source: { principal },
          request: { http: { method: 'GET', path: '/api', host: 'secure.test', headers: { 'x-passport': 'forged' } } },
        },
      },
      10_000,
    );

  it('issues a Passport for the certificate identity, with authLevel HIGH from mtls', async () => {
    const res = await check('spiffe://partners.example.com/org/acme/user/alice');
    assert.equal(res.status?.code, 0, JSON.stringify(res.denied_response));
    const token = res.ok_response?.headers?.find((h) => h.header?.key === 'x-passport')?.header?.value;
    const v = createPassportVerifier({ jwksUrl: `http://127.0.0.1:${svc.adminPort}/.well-known/jwks.json`, issuer: 'https://passgate.test', audience: 'orders' });
    const p = await v.verifyOrThrow(token);
    assert.deepEqual([p.user.id, p.user.source, p.user.authLevel, p.user.roles], ['u-alice', 'mtls', 'HIGH', ['partner']]);
  });

  it('a certificate identity the user directory does not know: 403 unknown_user', async () => {
    const res = await check('spiffe://partners.example.com/org/acme/user/bob');
    assert.equal(res.denied_response?.status?.code, 403);
    assert.match(res.denied_response?.body ?? '', /unknown_user/);
  });
});
