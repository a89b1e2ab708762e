/**
 * The parts on their own: duplicate detection the SF parser cannot do, the
 * credential authority, the offline attestation verifier, config errors that
 * name the key, and a reload that keeps (or moves) the registration listener
 * and the credential key.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { duplicateKeys, parseSignature } from '../../ext-authz/src/app-signature/message-signature.js';
import { CredentialAuthority } from '../../ext-authz/src/app-signature/credential.js';
import { offlineVerifier, loadAuthorities } from '../../ext-authz/src/app-signature/attestation.js';
import { appSignatureConfigSchema } from '../../ext-authz/src/app-signature/config.js';
import { AppDevice, offlineAttestation } from '../../ext-authz/src/app-signature/client.js';
import { memoryDevices } from '../../ext-authz/src/fds/store/devices.js';
import { ConfigError, validateConfig } from '../../ext-authz/src/config/load.js';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import pino from 'pino';
import { freePort } from '../fds/helpers.js';

const CACHE = { maxEntries: 100, maxBytes: 1 << 20 };

describe('app-signature: units', () => {
  it('finds duplicated labels and parameters, ignoring look-alikes inside strings and byte sequences', () => {
    assert.equal(duplicateKeys('app=("@method");created=1;nonce="a;created=2"', 'app'), undefined);
    assert.match(duplicateKeys('app=("@method");created=1;created=2', 'app')!, /created/);
    assert.match(duplicateKeys('app=("a"), other=("b"), app=("c")', 'app')!, /label "app"/);
    assert.equal(duplicateKeys('app=:YWJj:, b=:ZGVm:', '\u0000'), undefined);
    assert.equal(duplicateKeys('app=("@method");created=1, other=("x");created=1', 'app'), undefined);
  });

  it('parseSignature never throws on hostile input', () => {
    for (const s of ['', '(', 'app=', 'app=(', 'app=("@METHOD")', 'app=("@method";req)', 'app=(1 2)', 'app=("@method");created=-1', 'app=("@method");created=1.5', 'app=("@method");zzz=1', 'app=("@method" "@method")', `app=(${'"a" '.repeat(2000)})`]) {
      const r = parseSignature(s, 'app=:YWJj:', 'app', 4096);
      assert.equal(r.ok, false, s);
    }
  });

  it('credentials: verified once and cached; expired, foreign and altered ones are refused with their reason', () => {
    const a = CredentialAuthority.ephemeral('passgate', 60, CACHE);
    const b = CredentialAuthority.ephemeral('passgate', 60, CACHE);
    const d = AppDevice.generate('ed25519');
    const claims = { deviceId: 'dev_x', platform: 'android', attestation: 'basic', user: undefined, jwk: d.publicJwk, jkt: d.jkt };
    const t = a.issue(claims).token;
    assert.equal(a.verify(t).ok, true);
    assert.equal(a.cached, 1);
    assert.equal((b.verify(t) as { reason: string }).reason, 'credential_unknown_key');
    const r = a.verify(t, Date.now() + 120_000) as { reason: string; expired?: { deviceId: string } };
    assert.equal(r.reason, 'credential_expired');
    assert.equal(r.expired?.deviceId, 'dev_x');
    const [h, p, s] = t.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
    payload.dev = 'dev_other';
    assert.equal((a.verify(`${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`) as { reason: string }).reason, 'credential_invalid');
  });

  it('offline attestation: the authority, key, platform and age are all checked', async () => {
    const ra = generateKeyPairSync('ed25519');
    const cfg = appSignatureConfigSchema.parse({ registration: { authorities: { be: { publicKey: ra.publicKey.export({ type: 'spki', format: 'pem' }).toString(), platforms: ['ios'], level: 'strong' } } } })!;
    const v = offlineVerifier(loadAuthorities(cfg));
    const d = AppDevice.generate();
    const input = (att: Record<string, unknown>, platform = 'ios') => v.verify({ attestation: att, platform, jkt: d.jkt, jwk: d.publicJwk, nowMs: Date.now() });
    const ok = await input(offlineAttestation(ra.privateKey, { authority: 'be', jkt: d.jkt, platform: 'ios', user: 'u1' }));
    assert.deepEqual(ok, { ok: true, level: 'strong', attestedBy: 'offline:be', user: 'u1', counter: 0 });
    const reason = async (att: Record<string, unknown>, platform?: string) => ((await input(att, platform)) as { reason: string }).reason;
    assert.equal(await reason(offlineAttestation(ra.privateKey, { authority: 'be', jkt: 'other', platform: 'ios' })), 'attestation_key_mismatch');
    assert.equal(await reason(offlineAttestation(ra.privateKey, { authority: 'be', jkt: d.jkt, platform: 'android' }), 'android'), 'attestation_platform_not_allowed');
    assert.equal(await reason(offlineAttestation(ra.privateKey, { authority: 'be', jkt: d.jkt, platform: 'ios', nowMs: Date.now() - 3_600_000 })), 'attestation_stale');
    assert.equal(await reason(offlineAttestation(generateKeyPairSync('ed25519').privateKey, { authority: 'be', jkt: d.jkt, platform: 'ios' })), 'attestation_bad_signature');
    assert.equal(await reason(offlineAttestation(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, { authority: 'be', jkt: d.jkt, platform: 'ios' })), 'attestation_invalid');
    assert.equal(await reason({ format: 'offline', authority: 'nobody', token: 'x' }), 'attestation_unknown_authority');
  });

  it('the memory device registry keeps, updates and expires records', async () => {
    let now = 1_000;
    const reg = memoryDevices(() => now);
    await reg.put({ id: 'd1', jwk: '{}', jkt: 't', platform: 'ios', attestation: 'basic', attestedBy: 'offline:x', user: '', status: 'active', counter: 0, createdAt: 1, rotatedAt: 1 }, 500);
    assert.equal((await reg.get('d1'))?.platform, 'ios');
    assert.equal(await reg.update('d1', { status: 'revoked' }), true);
    assert.equal((await reg.get('d1'))?.status, 'revoked');
    now = 2_000;
    assert.equal(await reg.get('d1'), undefined);
    assert.equal(await reg.update('d1', { status: 'active' }), false);
  });
});

describe('app-signature: configuration', () => {
  const base = (extra: Record<string, unknown>, stages: unknown[] = ['fds', 'app-signature']) => ({
    gateways: { app: { kind: 'app', routes: [{ name: 'api', match: { path: { prefix: '/v1/' } }, stages }] } },
    fds: { store: 'memory' },
    ...extra,
  });
  const problems = (raw: unknown): string => {
    try {
      validateConfig(raw);
      return '';
    } catch (err) {
      return err instanceof ConfigError ? err.problems.join('\n') : String(err);
    }
  };

  it('refuses a route without fds before app-signature, unknown keys and bad values, naming the key', () => {
    assert.match(problems(base({}, ['app-signature'])), /gateways\.app\.routes\[0\].*fds stage before it/);
    assert.match(problems(base({ appSignature: { credentials: { ttl: '10s' } } })), /appSignature\.credentials\.ttl/);
    assert.match(problems(base({ appSignature: { registration: { authorities: { x: { level: 'basic' } } } } })), /appSignature\.registration\.authorities\.x.*exactly one of publicKey/);
    assert.match(problems(base({ appSignature: { credential: {} } })), /appSignature/);
    assert.match(problems(base({}, ['fds', { type: 'app-signature', algorithms: ['rsa-pss-sha512'] }])), /algorithms/);
    assert.equal(problems(base({ appSignature: {} })), '');
  });

  it('a start with an unreadable credential key or a taken registration port fails naming the key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'appsig-cfg-'));
    writeFileSync(join(dir, 'bad.pem'), 'not a key');
    const start = (appSignature: unknown) =>
      PassgateService.start({ config: validateConfig({ ...base({ appSignature }), server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' } } }), grpcPort: 0, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) });
    await assert.rejects(start({ credentials: { keyFile: join(dir, 'missing.pem') } }), (e: ConfigError) => /appSignature\.credentials\.keyFile: /.test(e.problems.join()));
    await assert.rejects(start({ credentials: { keyFile: join(dir, 'bad.pem') } }), (e: ConfigError) => /appSignature\.credentials\.keyFile: /.test(e.problems.join()));
    const port = await freePort();
    const first = await start({ registration: { listen: { host: '127.0.0.1', port } } });
    try {
      await assert.rejects(start({ registration: { listen: { host: '127.0.0.1', port } } }), (e: ConfigError) => /appSignature\.registration\.listen: cannot listen/.test(e.problems.join()));
    } finally {
      await first.stop(100);
    }
  });

  it('a config without the appSignature section opens no registration listener (even with FDS on)', async () => {
    const svc = await PassgateService.start({ config: validateConfig({ ...base({}), server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' } } }), grpcPort: 0, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) });
    try {
      const info = (await (await fetch(`http://127.0.0.1:${svc.adminPort}/admin/app-signature`)).json()) as { registration: unknown };
      assert.equal(info.registration, null);
    } finally {
      await svc.stop(100);
    }
  });

  it('a reload keeps the listener and the credential key when unchanged, and moves the listener when its port changes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'appsig-reload-'));
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyFile = join(dir, 'k.pem');
    writeFileSync(keyFile, ec.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const [p1, p2] = [await freePort(), await freePort()];
    const cfg = (port: number) => validateConfig({ ...base({ appSignature: { credentials: { keyFile }, registration: { listen: { host: '127.0.0.1', port } } } }), server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' } } });
    const svc = await PassgateService.start({ config: cfg(p1), grpcPort: 0, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) });
    const info = async () => (await (await fetch(`http://127.0.0.1:${svc.adminPort}/admin/app-signature`)).json()) as { registration: { port: number }; credentials: { kid: string } };
    try {
      const before = await info();
      assert.equal(before.registration.port, p1);
      await svc.applyConfig(cfg(p1));
      assert.deepEqual(await info(), before);
      assert.equal((await fetch(`http://127.0.0.1:${p1}/app/v1/devices`, { method: 'POST', body: '{}' })).status, 400);
      await svc.applyConfig(cfg(p2));
      const after = await info();
      assert.equal(after.registration.port, p2);
      assert.equal(after.credentials.kid, before.credentials.kid);
      await assert.rejects(fetch(`http://127.0.0.1:${p1}/app/v1/devices`, { method: 'POST', body: '{}' }));
      assert.equal((await fetch(`http://127.0.0.1:${p2}/app/v1/devices`, { method: 'POST', body: '{}' })).status, 400);
    } finally {
      await svc.stop(100);
    }
  });
});
