/**
 * FDS and mTLS together over gRPC: a certificate blocked by fingerprint or
 * serial through the admin API is refused, and failed logins with one
 * certificate block it: the production chain [fds, mtls] on a real Redis.
 */
import assert from 'node:assert/strict';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { createCa, issueCertificate, toXfcc, type CertificateAuthority, type IssuedCertificate } from '../../ext-authz/src/devcerts/generate.js';
import type { PassgateService } from '../../ext-authz/src/server/service.js';
import { TOKEN, adminCall, bodyOf, checkClient, cleanup, redisFds, startService, statusOf, testPrefix, type CheckClient } from './helpers.js';

describe('FDS with the mtls stage', function () {
  this.timeout(20_000);
  let ca: CertificateAuthority;
  let alice: IssuedCertificate;
  let bob: IssuedCertificate;
  let svc: PassgateService;
  let client: CheckClient;
  const prefix = testPrefix();

  before(async () => {
    ca = await createCa();
    alice = await issueCertificate({ ca, sans: { uri: ['spiffe://partners.example.com/org/acme/user/alice'] } });
    bob = await issueCertificate({ ca, sans: { uri: ['spiffe://partners.example.com/org/acme/user/bob'] } });
    const cfg = validateConfig({
      server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, shutdownGraceMs: 500 },
      logging: { level: 'silent', audit: false },
      identity: {
        mtls: {
          xfcc: { mode: 'sanitize_set' },
          rules: [{ name: 'users', uri: { prefix: 'spiffe://partners.example.com/org/acme/user/' }, identity: { subject: '{rest}', kind: 'user' } }],
        },
      },
      fds: redisFds(prefix, {
        blockedCacheMs: 0,
        rules: [{ name: 'cert-failures', events: ['auth_failure'], subject: 'cert', threshold: 3, window: '60s', block: '15m' }],
      }),
      gateways: {
        edge: { kind: 'secure', trustXfcc: true, routes: [{ name: 'api', match: { path: { prefix: '/api' } }, stages: ['fds', 'mtls'] }] },
      },
      defaultGateway: 'edge',
    });
    svc = await startService(cfg);
    client = checkClient(svc.grpcPort);
  });
  after(async () => {
    client?.close();
    await svc?.stop(500);
    await cleanup(prefix);
  });

  const asClient = (cert: IssuedCertificate, options: Parameters<typeof toXfcc>[1] = {}) =>
    client.check({ path: '/api/orders', headers: { 'x-forwarded-client-cert': toXfcc(cert, options) } });

  it('refuses a certificate blocked by fingerprint, and by serial', async () => {
    assert.equal(statusOf(await asClient(alice)), 200);
    const byFp = await adminCall(svc.adminPort, 'POST', '/admin/fds/blocks', { kind: 'cert', subject: alice.fingerprint, reason: 'stolen laptop', ttl: '1h' }, TOKEN);
    assert.equal(byFp.status, 201, JSON.stringify(byFp.json));
    const denied = await asClient(alice);
    assert.equal(statusOf(denied), 403);
    assert.equal(JSON.parse(bodyOf(denied)).reason, 'blocked');
    assert.equal(statusOf(await asClient(bob)), 200, 'another certificate is not affected');

    const bySerial = await adminCall(svc.adminPort, 'POST', '/admin/fds/blocks', { kind: 'cert', subject: bob.serial, reason: 'revoked', ttl: '1h' }, TOKEN);
    assert.equal(bySerial.status, 201, JSON.stringify(bySerial.json));
    assert.equal(statusOf(await asClient(bob)), 403);
  });

  it('three failed logins with one certificate block that certificate', async () => {
    const carol = await issueCertificate({ ca, sans: { uri: ['spiffe://partners.example.com/org/acme/user/carol'] } });
    assert.equal(statusOf(await asClient(carol)), 200);
    // A forged Hash= is an authentication failure the mtls stage reports against the real certificate.
    for (let i = 0; i < 3; i++) assert.equal(statusOf(await asClient(carol, { hash: '00'.repeat(32) })), 401);
    const denied = await asClient(carol);
    assert.equal(statusOf(denied), 403, 'the genuine certificate is now blocked');
    assert.equal(JSON.parse(bodyOf(denied)).reason, 'blocked');
    const inspect = await adminCall(svc.adminPort, 'GET', `/admin/fds/inspect?kind=cert&subject=${carol.fingerprint}`, undefined, TOKEN);
    assert.equal(inspect.json.blocked?.rule, 'cert-failures');
  });
});
