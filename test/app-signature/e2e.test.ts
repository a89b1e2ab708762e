/**
 * App requests end to end: a device registers through the real registration
 * listener (offline attestation by a registration authority), signs with the
 * reference SDK, and Checks go over real gRPC to a real PassgateService whose
 * FDS store (registry, nonces, counters, blocks) is real Redis.
 */
import assert from 'node:assert/strict';
import { startService, type Running } from '../support/service.js';
import { cleanup, freePort, testPrefix, TOKEN, REDIS_URL, commandCalls } from '../fds/helpers.js';
import { appConfig, registeredDevice, signedCheck, statusOf, reasonOf, HOST, PASSPORT } from './helpers.js';
import { AppDevice } from '../../ext-authz/src/app-signature/client.js';
import { buildCheckRequest } from '../../ext-authz/src/proto/check-request.js';

describe('app-signature: registration, signed requests, replay and FDS over gRPC', function () {
  this.timeout(60_000);
  let svc: Running;
  let regPort: number;
  const prefix = testPrefix();

  before(async () => {
    regPort = await freePort();
    svc = await startService(
      appConfig(prefix, regPort, [
        { name: 'bad-device', events: ['app_signature_invalid'], subject: 'device', threshold: 3, window: '1m', block: '10m' },
        { name: 'replays', events: ['app_signature_replay'], subject: 'ip', threshold: 1000, window: '1m', block: '1m' },
      ], [{ name: 'passport', match: { path: { prefix: '/p/' } }, stages: ['fds', 'app-signature', 'passport'] }], { passport: PASSPORT }),
    );
  });
  after(async () => {
    await svc?.stop();
    await cleanup(prefix);
  });

  function auditFor(reason: string): Record<string, unknown> | undefined {
    return svc.logs.lines.filter((l) => l['log'] === 'audit' && l['reason'] === reason).at(-1);
  }

  it('allows a signed GET, sets the device identity and strips the signature headers', async () => {
    const d = await registeredDevice(regPort);
    const r = await svc.check(signedCheck(d));
    assert.equal(statusOf(r), 200, reasonOf(r));
    const removed = r.ok_response?.headers_to_remove ?? [];
    for (const h of ['device-credential', 'signature', 'signature-input']) assert.ok(removed.includes(h), `${h} removed upstream`);
  });

  it('the Passport carries the verified device block (id, platform, attestation level)', async () => {
    const d = await registeredDevice(regPort, 'alice');
    const r = await svc.check(signedCheck(d, { path: '/p/orders' }));
    assert.equal(statusOf(r), 200, reasonOf(r));
    const token = r.ok_response?.headers?.find((h) => h.header?.key === 'x-passport')?.header?.value;
    assert.ok(token, 'a passport upstream');
    const claims = JSON.parse(Buffer.from(token!.split('.')[1]!, 'base64url').toString('utf8'));
    assert.equal(claims.user.id, 'u-alice');
    assert.equal(claims.user.source, 'app-signature');
    assert.deepEqual({ id: claims.device.id, type: claims.device.type, platform: claims.device.platform, attestation: claims.device.attestation }, { id: d.registration!.deviceId, type: 'mobile', platform: 'ios', attestation: 'basic' });
  });

  it('refuses the same signed request a second time (nonce burned in the fds round trip)', async () => {
    const d = await registeredDevice(regPort);
    const req = signedCheck(d);
    assert.equal(statusOf(await svc.check(req)), 200);
    const again = await svc.check(req);
    assert.equal(statusOf(again), 401);
    assert.equal(reasonOf(again), 'signature_replayed');
  });

  it('verifies a body against its Content-Digest; refuses a changed, missing or partial body', async () => {
    const d = await registeredDevice(regPort);
    const body = '{"amount":10}';
    assert.equal(statusOf(await svc.check(signedCheck(d, { method: 'POST', body }))), 200);
    // A fresh device per refusal: the auto-disable rule of this suite blocks a device after 3.
    const changed = await svc.check(signedCheck(await registeredDevice(regPort), { method: 'POST', body, forwarded: Buffer.from('{"amount":99}') }));
    assert.equal(reasonOf(changed), 'digest_mismatch');
    const missing = await svc.check(signedCheck(await registeredDevice(regPort), { method: 'POST', body, forwarded: null }));
    assert.equal(reasonOf(missing), 'body_unavailable');
    const partial = await svc.check(signedCheck(await registeredDevice(regPort), { method: 'POST', body, tamper: (h) => (h['x-envoy-auth-partial-body'] = 'true') }));
    assert.equal(reasonOf(partial), 'body_truncated');
    const cut = await svc.check(signedCheck(await registeredDevice(regPort), { method: 'POST', body, forwarded: Buffer.from(body.slice(0, 5)) }));
    assert.equal(reasonOf(cut), 'body_truncated');
    assert.ok(auditFor('digest_mismatch'), 'audit line for the digest mismatch');
  });

  it('refuses bad input with precise reasons', async () => {
    const d = await registeredDevice(regPort);
    const cases: Array<[string, Parameters<typeof signedCheck>[1]]> = [
      ['signature_invalid', { tamper: (h) => (h['signature'] = h['signature']!.replace(/:(.)/, (_m, c) => `:${c === 'A' ? 'B' : 'A'}`)) }],
      ['signature_params_duplicated', { tamper: (h) => (h['signature-input'] = h['signature-input']!.replace(';created=', ';created=1;created=')) }],
      ['signature_params_duplicated', { tamper: (h) => (h['signature-input'] = `${h['signature-input']}, ${h['signature-input']}`) }],
      ['signature_input_syntax', { tamper: (h) => (h['signature-input'] = h['signature-input']!.replace('(', '((')) }],
      ['signature_syntax', { tamper: (h) => (h['signature'] = 'app=not base64') }],
      ['signature_params_missing', { tamper: (h) => (h['signature-input'] = h['signature-input']!.replace(/;nonce="[^"]*"/, '')) }],
      ['signature_alg_mismatch', { tamper: (h) => (h['signature-input'] = h['signature-input']!.replace('alg="ecdsa-p256-sha256"', 'alg="ed25519"')) }],
      ['signature_label_missing', { tamper: (h) => (h['signature-input'] = h['signature-input']!.replace(/^app=/, 'other=')) }],
      ['signature_missing', { tamper: (h) => delete h['signature'] }],
      ['credential_invalid', { tamper: (h) => (h['device-credential'] = `${h['device-credential']!.slice(0, -4)}AAAA`) }],
      ['credential_missing', { tamper: (h) => delete h['device-credential'] }],
    ];
    // The untouched request passes: the list below refuses for its own reasons, not because everything fails.
    assert.equal(statusOf(await svc.check(signedCheck(d))), 200);
    for (const [reason, opts] of cases) {
      const r = await svc.check(signedCheck(await registeredDevice(regPort), opts));
      assert.equal(statusOf(r), 401, `${reason}: got ${statusOf(r)} ${reasonOf(r)}`);
      assert.equal(reasonOf(r), reason);
      assert.ok(auditFor(reason), `audit line for ${reason}`);
    }
  });

  it('refuses wrong covered components, clock skew and a stale signature', async () => {
    const fresh = () => registeredDevice(regPort, 'bob');
    const noMethod = await svc.check(signedWith(await fresh(), { components: ['@target-uri', 'device-credential'] }));
    assert.equal(reasonOf(noMethod), 'component_missing');
    const noCred = await svc.check(signedWith(await fresh(), { components: ['@method', '@target-uri'] }));
    assert.equal(reasonOf(noCred), 'component_missing');
    const params = await svc.check(signedWith(await fresh(), { components: ['@method', '@target-uri', 'device-credential', '@status'] }));
    assert.equal(reasonOf(params), 'component_unsupported');
    const future = await svc.check(signedCheckAt(await fresh(), Date.now() + 120_000));
    assert.equal(reasonOf(future), 'signature_created_future');
    const old = await svc.check(signedCheckAt(await fresh(), Date.now() - 300_000));
    assert.equal(reasonOf(old), 'signature_expired');
  });

  it('a signature from another device key (same credential) does not verify', async () => {
    const d = await registeredDevice(regPort);
    const other = AppDevice.generate();
    other.registration = d.registration;
    const r = await svc.check(signedCheck(other));
    assert.equal(reasonOf(r), 'signature_keyid_mismatch');
  });

  it('auto-disables a device after repeated bad signatures (FDS rule), then refuses it with 403 before any crypto', async () => {
    const d = await registeredDevice(regPort, 'carol');
    const bad = { tamper: (h: Record<string, string>) => (h['signature'] = h['signature']!.replace(/:(.)/, (_m, c: string) => `:${c === 'A' ? 'B' : 'A'}`)) };
    for (let i = 0; i < 3; i++) assert.equal(statusOf(await svc.check(signedCheck(d, bad))), 401);
    const blocked = await svc.check(signedCheck(d));
    assert.equal(statusOf(blocked), 403);
    assert.equal(reasonOf(blocked), 'blocked');
    // Now in the blocked cache: refused in the stage, before the signature is even parsed.
    const again = await svc.check(signedCheck(d, { tamper: (h) => (h['signature-input'] = 'garbage((') }));
    assert.equal(statusOf(again), 403);
    const inspect = await fetch(`http://127.0.0.1:${svc.svc.adminPort}/admin/fds/inspect?kind=device&subject=${d.registration!.deviceId}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const found = (await inspect.json()) as { blocked: { createdBy: string } | null };
    assert.equal(found.blocked?.createdBy, 'rule:bad-device');
  });

  it('an admin block of the device refuses its requests with 403', async () => {
    const d = await registeredDevice(regPort);
    assert.equal(statusOf(await svc.check(signedCheck(d))), 200);
    const res = await fetch(`http://127.0.0.1:${svc.svc.adminPort}/admin/fds/blocks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'device', subject: d.registration!.deviceId, reason: 'lost phone', ttl: '1h' }),
    });
    assert.equal(res.status, 201, await res.text());
    const r = await svc.check(signedCheck(d));
    assert.equal(statusOf(r), 403);
    assert.equal(reasonOf(r), 'blocked');
  });

  it('a user blocked in FDS registers no new device', async () => {
    const res = await fetch(`http://127.0.0.1:${svc.svc.adminPort}/admin/fds/blocks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'user', subject: 'frank', reason: 'fraud', ttl: '1h' }),
    });
    assert.equal(res.status, 201);
    await assert.rejects(registeredDevice(regPort, 'frank'), /403 blocked/);
  });

  it('rotation re-issues the credential with the registered key; a replayed rotation is refused', async () => {
    const d = await registeredDevice(regPort, 'dave', 'ed25519');
    const first = d.registration!.credential;
    await d.rotate(`http://127.0.0.1:${regPort}`);
    assert.notEqual(d.registration!.credential, first);
    assert.equal(statusOf(await svc.check(signedCheck(d))), 200);
    const url = `http://127.0.0.1:${regPort}/app/v1/devices/${d.registration!.deviceId}/credential`;
    const headers = d.sign({ method: 'POST', url, withCredential: false });
    assert.equal((await fetch(url, { method: 'POST', headers })).status, 200);
    const replay = await fetch(url, { method: 'POST', headers });
    assert.equal(replay.status, 401);
    assert.equal(((await replay.json()) as { reason: string }).reason, 'signature_replayed');
  });

  it('registration refuses a bad attestation and needs no admin credential', async () => {
    const d = AppDevice.generate();
    await assert.rejects(d.register(`http://127.0.0.1:${regPort}/app/v1/devices`, 'ios', { format: 'offline', authority: 'backend', token: 'a.b.c' }), /403 attestation_invalid/);
    await assert.rejects(d.register(`http://127.0.0.1:${regPort}/app/v1/devices`, 'ios', { format: 'play-integrity' }), /400/);
  });

  it('one Redis round trip per signed Check with FDS on the route', async () => {
    const d = await registeredDevice(regPort);
    const before = await commandCalls(REDIS_URL);
    const n = 5;
    for (let i = 0; i < n; i++) assert.equal(statusOf(await svc.check(signedCheck(d))), 200);
    const after = await commandCalls(REDIS_URL);
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    assert.equal(delta('evalsha') + delta('eval'), n);
  });
});

/** A request signed over chosen components (raw, bypassing the SDK's choice) with the device's key. */
function signedWith(d: AppDevice, o: { components: string[] }) {
  const path = '/v1/items';
  const headers: Record<string, string> = { 'device-credential': d.registration!.credential };
  const signed = signRaw(d, 'GET', `https://${HOST}${path}`, headers, o.components, Math.floor(Date.now() / 1000));
  return buildCheckRequest({ method: 'GET', host: HOST, path, headers: { ...headers, ...signed }, gateway: 'app', sourceAddress: '198.51.100.21' });
}

function signedCheckAt(d: AppDevice, nowMs: number) {
  const path = '/v1/items';
  const h = d.sign({ method: 'GET', url: `https://${HOST}${path}`, nowMs });
  return buildCheckRequest({ method: 'GET', host: HOST, path, headers: h, gateway: 'app', sourceAddress: '198.51.100.22' });
}

import { serializeSignatureParams, signatureBase } from '../../ext-authz/src/app-signature/message-signature.js';
import { randomBytes } from 'node:crypto';
function signRaw(d: AppDevice, method: string, url: string, headers: Record<string, string>, components: string[], created: number): Record<string, string> {
  const u = new URL(url);
  const params = serializeSignatureParams(components, { created, nonce: randomBytes(12).toString('base64url'), keyid: d.jkt });
  const base = signatureBase({ components, signatureParams: params }, { method, scheme: 'https', authority: u.host, target: `${u.pathname}${u.search}`, headers });
  const sig = d.signBase(typeof base === 'string' ? base : 'no base for this component list');
  return { 'signature-input': `app=${params}`, signature: `app=:${sig.toString('base64')}:` };
}
