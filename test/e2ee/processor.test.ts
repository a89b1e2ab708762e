/**
 * The e2ee processor as Envoy drives it: a real PassgateService (ext_proc on
 * the Check port, FDS store in Redis for the single-use check), a real
 * grpc-js client sending headers → (mode_override) → body → mutation, and
 * bodies sealed by the independent app client (@hpke/core).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { E2eeClient, type SenderIdentity } from '../../ext-authz/src/e2ee/client.js';
import type { ExtProcClient, ProcessingResponse } from '../../ext-authz/src/e2ee/ext-proc-proto.js';
import { FACTS_HEADER, sealFacts } from '../../ext-authz/src/e2ee/facts.js';
import { e2eeCapability } from '../../ext-authz/src/e2ee/capability.js';
import { authzClient, check, httpCheck, type AuthzClient } from '../support/service.js';
import { cleanup, REDIS_URL, testPrefix } from '../fds/helpers.js';
import { drive, extProcClient, requestBody, requestHeaders, setHeaders } from './support.js';

const CT = 'application/vnd.passgate.e2ee';
const silent = pino({ level: 'silent' });

async function keyConfigs(adminPort: number): Promise<Uint8Array> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/e2ee/keys`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/ohttp-keys');
  return new Uint8Array(await res.arrayBuffer());
}

function encryptedHeaders(body: Uint8Array, extra: Record<string, string> = {}): Record<string, string> {
  return { ':method': 'POST', ':path': '/api/orders', ':authority': 'app.example.com', 'content-type': CT, 'content-length': String(body.length), 'x-request-id': 'rid-1', ...extra };
}

function immediate(answers: ProcessingResponse[]): { status: number; body: Record<string, unknown>; details: string } | undefined {
  const i = answers.at(-1)?.immediate_response;
  if (i === undefined) return undefined;
  return { status: i.status!.code!, body: JSON.parse(Buffer.from(i.body!).toString('utf8')) as Record<string, unknown>, details: i.details ?? '' };
}

describe('e2ee: ext_proc processor over loopback (real gRPC, real Redis)', function () {
  this.timeout(20_000);
  let svc: PassgateService;
  let proc: ExtProcClient;
  let authz: AuthzClient;
  let app: SenderIdentity;
  let stranger: SenderIdentity;
  let client: E2eeClient;
  let dir: string;
  let retiredKeyPem: string;
  const prefix = testPrefix();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'passgate-e2ee-'));
    const gen = await E2eeClient.generateSender('ios-7f3a');
    app = gen.sender;
    stranger = (await E2eeClient.generateSender('ios-unknown')).sender;
    retiredKeyPem = join(dir, 'k2.pem');
    writeFileSync(retiredKeyPem, generateKeyPairSync('x25519').privateKey.export({ format: 'pem', type: 'pkcs8' }));
    writeFileSync(join(dir, 'facts.key'), 'f'.repeat(48));
    const config = validateConfig({
      server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, shutdownGraceMs: 500 },
      logging: { level: 'silent', audit: false },
      gateways: {
        app: {
          kind: 'app',
          routes: [
            { name: 'orders', match: { path: { prefix: '/api/' } }, stages: [{ type: 'e2ee' }, 'passport'] },
            { name: 'open', stages: ['allow'] },
          ],
        },
      },
      defaultGateway: 'app',
      fds: { store: 'redis', redis: { mode: 'single', url: REDIS_URL, keyPrefix: prefix } },
      passport: {
        issuer: 'https://passgate.test',
        audience: 'orders',
        keys: { active: 'k1', entries: [{ id: 'k1', generate: true }] },
        source: { type: 'static', users: { 'app:ios': { id: 'app-ios', roles: ['app'] } } },
      },
      e2ee: {
        maxBodyBytes: 4096,
        replayTimeoutMs: 2000, // a loaded CI machine; the default (100 ms) fits message_timeout 200 ms
        encryptResponses: true,
        factsSecretFile: join(dir, 'facts.key'),
        keys: [
          { id: 1, generate: true },
          { id: 2, file: retiredKeyPem, publish: false, decryptUntil: '2020-01-01T00:00:00Z' },
        ],
        senders: [{ id: 'ios-7f3a', app: 'ios', publicKey: gen.publicKey }],
      },
    });
    svc = await PassgateService.start({ config, grpcPort: 0, adminPort: 0, processMetrics: false, logger: silent });
    proc = extProcClient(svc.grpcPort);
    authz = authzClient(svc.grpcPort);
    client = await E2eeClient.fromKeyConfigs(await keyConfigs(svc.adminPort), { sender: app });
  });

  after(async () => {
    proc?.close();
    authz?.close();
    await svc?.stop(500);
    await cleanup(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  it('publishes only the active key (RFC 9458 key config, both AEADs)', async () => {
    const res = await fetch(`http://127.0.0.1:${svc.adminPort}/e2ee/keys?format=json`);
    const json = (await res.json()) as { keys: Array<{ id: number; aeads: string[] }> };
    assert.deepEqual(json.keys.map((k) => k.id), [1]);
    assert.deepEqual(json.keys[0]!.aeads, ['aes-128-gcm', 'aes-256-gcm']);
  });

  it('headers → mode_override BUFFERED → body → plaintext, content-length, content-type and facts; Check issues one Passport for the app', async () => {
    const payload = Buffer.from(JSON.stringify({ item: 'book', qty: 2 }));
    const sealed = await client.seal('application/json', payload);
    const answers = await drive(proc, [requestHeaders(encryptedHeaders(sealed.body, { [FACTS_HEADER]: 'client-forged' })), requestBody(sealed.body)]);
    assert.equal(answers.length, 2, JSON.stringify(answers));
    const [h, b] = answers;
    assert.equal(b!.immediate_response, undefined, JSON.stringify(b!.immediate_response && Buffer.from(b!.immediate_response.body!).toString()));
    assert.deepEqual(h!.request_headers?.response?.header_mutation?.remove_headers, [FACTS_HEADER], 'a client copy of the facts header is stripped');
    assert.equal(h!.mode_override?.request_body_mode, 2, 'BUFFERED');
    assert.equal(h!.mode_override?.response_body_mode, 2, 'responses are encrypted: buffered too');
    assert.deepEqual(Buffer.from(b!.request_body!.response!.body_mutation!.body!), payload);
    const set = setHeaders(b, 'request_body');
    assert.equal(set['content-length'], String(payload.length));
    assert.equal(set['content-type'], 'application/json');
    assert.match(set[FACTS_HEADER]!, /^v1\./);

    // Envoy then calls Check with the mutated headers: the e2ee stage trusts the facts, passport issues.
    const res = await check(authz, httpCheck({ method: 'POST', path: '/api/orders', headers: { 'x-request-id': 'rid-1', [FACTS_HEADER]: set[FACTS_HEADER]! } }));
    assert.equal(res.status?.code, 0, JSON.stringify(res));
    const upstream = Object.fromEntries((res.ok_response?.headers ?? []).map((x) => [x.header!.key!, x.header!.value!]));
    assert.ok(upstream['x-passport'], 'a Passport for the decrypted request');
    const claims = JSON.parse(Buffer.from(upstream['x-passport']!.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(JSON.stringify(claims).includes('app-ios'), true, JSON.stringify(claims));
    assert.ok(res.ok_response?.headers_to_remove?.includes(FACTS_HEADER), 'the facts header never reaches the upstream');
  });

  it('Check refuses a forged or foreign facts header, and plaintext on an e2ee route', async () => {
    const forged = sealFacts(Buffer.alloc(48, 1), { app: 'ios', sender: 'ios-7f3a', key: 1, aead: 'aes-128-gcm', rid: 'rid-1', exp: Date.now() + 5000 });
    const r1 = await check(authz, httpCheck({ method: 'POST', path: '/api/orders', headers: { 'x-request-id': 'rid-1', [FACTS_HEADER]: forged } }));
    assert.equal(r1.denied_response?.status?.code, 401);
    assert.match(String(r1.denied_response?.body), /e2ee_facts_forged/);
    const r2 = await check(authz, httpCheck({ method: 'POST', path: '/api/orders', headers: { 'content-type': 'application/json' } }));
    assert.equal(r2.denied_response?.status?.code, 400);
    assert.match(String(r2.denied_response?.body), /e2ee_required/);
  });

  it('facts made for another request id are refused', async () => {
    const sealed = await client.seal('application/json', Buffer.from('{}'));
    const answers = await drive(proc, [requestHeaders(encryptedHeaders(sealed.body, { 'x-request-id': 'rid-A' })), requestBody(sealed.body)]);
    const facts = setHeaders(answers[1], 'request_body')[FACTS_HEADER]!;
    const res = await check(authz, httpCheck({ method: 'POST', path: '/api/orders', headers: { 'x-request-id': 'rid-B', [FACTS_HEADER]: facts } }));
    assert.match(String(res.denied_response?.body), /e2ee_facts_other_request/);
  });

  it('response encryption round trip: only the request context opens it', async () => {
    const sealed = await client.seal('application/json', Buffer.from('{"q":1}'));
    const reply = Buffer.from('{"ok":true,"total":42}');
    const answers = await drive(proc, [
      requestHeaders(encryptedHeaders(sealed.body)),
      requestBody(sealed.body),
      { response_headers: { headers: { headers: [{ key: ':status', raw_value: Buffer.from('200') }, { key: 'content-type', raw_value: Buffer.from('application/json') }] } } },
      { response_body: { body: reply, end_of_stream: true } },
    ]);
    assert.equal(answers.length, 4);
    const out = answers[3]!.response_body!.response!;
    const body = Buffer.from(out.body_mutation!.body!);
    const set = setHeaders(answers[3], 'response_body');
    assert.equal(set['content-type'], 'application/vnd.passgate.e2ee-response');
    assert.equal(set['content-length'], String(body.length));
    assert.ok(!body.includes(reply), 'the reply is not in clear');
    const opened = await sealed.openResponse(body);
    assert.equal(opened.contentType, 'application/json');
    assert.deepEqual(opened.payload, reply);
    const other = await client.seal('application/json', Buffer.from('{}'));
    await assert.rejects(other.openResponse(body), 'another request context cannot open it');
  });

  it('other content types pass untouched: no body requested, facts header still stripped', async () => {
    const answers = await drive(proc, [requestHeaders({ ':method': 'POST', ':path': '/x', 'content-type': 'application/json', 'content-length': '2' })]);
    assert.equal(answers.length, 1);
    assert.equal(answers[0]!.mode_override, undefined);
    assert.deepEqual(answers[0]!.request_headers?.response?.header_mutation?.remove_headers, [FACTS_HEADER]);
  });

  const bad: Array<[string, () => Promise<{ headers: Record<string, string>; body?: Uint8Array }>, number, string]> = [
    ['tampered ciphertext', async () => {
      const s = await client.seal('application/json', Buffer.from('{"a":1}'));
      const body = Buffer.from(s.body);
      body[body.length - 3]! ^= 0x01;
      return { headers: encryptedHeaders(body), body };
    }, 400, 'e2ee_decrypt_failed'],
    ['tampered header (aead id swapped to AES-256)', async () => {
      const s = await client.seal('application/json', Buffer.from('{"a":1}'));
      const body = Buffer.from(s.body);
      body.writeUInt16BE(2, 5);
      return { headers: encryptedHeaders(body), body };
    }, 400, 'e2ee_decrypt_failed'],
    ['wrong key id', async () => {
      const s = await client.seal('application/json', Buffer.from('{}'), { keyId: 9 });
      return { headers: encryptedHeaders(s.body), body: s.body };
    }, 400, 'e2ee_unknown_key'],
    ['rotated-out key (grace over)', async () => {
      const s = await client.seal('application/json', Buffer.from('{}'), { keyId: 2 });
      return { headers: encryptedHeaders(s.body), body: s.body };
    }, 400, 'e2ee_key_retired'],
    ['unknown algorithm id', async () => {
      const s = await client.seal('application/json', Buffer.from('{}'));
      const body = Buffer.from(s.body);
      body.writeUInt16BE(0x0003, 5); // ChaCha20-Poly1305: not pinned
      return { headers: encryptedHeaders(body), body };
    }, 400, 'e2ee_unsupported_algorithm'],
    ['unregistered sender key', async () => {
      const c = await E2eeClient.fromKeyConfigs(await keyConfigs(svc.adminPort), { sender: stranger });
      const s = await c.seal('application/json', Buffer.from('{}'));
      return { headers: encryptedHeaders(s.body), body: s.body };
    }, 401, 'e2ee_unknown_sender'],
    ['registered id, other key (auth mode fails)', async () => {
      const c = await E2eeClient.fromKeyConfigs(await keyConfigs(svc.adminPort), { sender: { id: 'ios-7f3a', keyPair: stranger.keyPair } });
      const s = await c.seal('application/json', Buffer.from('{}'));
      return { headers: encryptedHeaders(s.body), body: s.body };
    }, 400, 'e2ee_decrypt_failed'],
    ['anonymous envelope (allowAnonymous off)', async () => {
      const c = await E2eeClient.fromKeyConfigs(await keyConfigs(svc.adminPort));
      const s = await c.seal('application/json', Buffer.from('{}'));
      return { headers: encryptedHeaders(s.body), body: s.body };
    }, 401, 'e2ee_sender_required'],
    ['stale envelope (created an hour ago)', async () => {
      const s = await client.seal('application/json', Buffer.from('{}'), { now: Date.now() - 3_600_000 });
      return { headers: encryptedHeaders(s.body), body: s.body };
    }, 400, 'e2ee_stale'],
    ['truncated envelope', async () => {
      const s = await client.seal('application/json', Buffer.from('{}'));
      const body = Buffer.from(s.body.subarray(0, 40));
      return { headers: encryptedHeaders(body), body };
    }, 400, 'e2ee_truncated'],
    ['plaintext sent with the encrypted content type', async () => {
      const body = Buffer.from(JSON.stringify({ item: 'book', note: 'x'.repeat(80) }));
      return { headers: encryptedHeaders(body), body };
    }, 400, 'e2ee_unsupported_algorithm'],
    ['oversize by content-length (refused before buffering)', async () => ({ headers: encryptedHeaders(Buffer.alloc(5000)) }), 413, 'e2ee_too_large'],
    ['oversize body whose content-length lies', async () => {
      const body = Buffer.alloc(5000, 1);
      return { headers: encryptedHeaders(Buffer.alloc(100)), body };
    }, 413, 'e2ee_too_large'],
    ['a body shorter than its content-length says', async () => {
      const s = await client.seal('application/json', Buffer.from('{"a":1}'));
      return { headers: encryptedHeaders(s.body, { 'content-length': String(s.body.length + 10) }), body: s.body };
    }, 400, 'e2ee_content_length_mismatch'],
    ['non-numeric content-length', async () => ({ headers: encryptedHeaders(Buffer.alloc(1), { 'content-length': '12, 12' }) }), 400, 'e2ee_bad_content_length'],
  ];
  for (const [name, make, status, reason] of bad) {
    it(`refuses ${name}: ImmediateResponse ${status} ${reason} with the Check denial body`, async () => {
      const { headers, body } = await make();
      const answers = await drive(proc, [requestHeaders(headers), ...(body ? [requestBody(body)] : [])]);
      const imm = immediate(answers);
      assert.ok(imm, `expected an immediate response, got ${JSON.stringify(answers.at(-1))}`);
      assert.equal(imm.status, status);
      assert.equal(imm.body['error'] !== undefined, true);
      assert.equal(imm.body['reason'], reason);
      assert.equal(typeof imm.body['trace_id'], 'string');
      assert.equal(imm.details, `passgate_${reason}`);
    });
  }

  it('refuses a replayed enc (single use, in Redis)', async () => {
    const s = await client.seal('application/json', Buffer.from('{"pay":100}'));
    const first = await drive(proc, [requestHeaders(encryptedHeaders(s.body)), requestBody(s.body)]);
    assert.equal(immediate(first), undefined);
    const again = await drive(proc, [requestHeaders(encryptedHeaders(s.body)), requestBody(s.body)]);
    assert.equal(immediate(again)?.body['reason'], 'e2ee_replayed');
  });

  it('refuses a streamed chunk (not BUFFERED) and a headers-only encrypted request', async () => {
    const s = await client.seal('application/json', Buffer.from('{}'));
    const chunk = await drive(proc, [requestHeaders(encryptedHeaders(s.body)), { request_body: { body: Buffer.from(s.body.subarray(0, 30)), end_of_stream: false } }]);
    assert.equal(immediate(chunk)?.body['reason'], 'e2ee_body_not_buffered');
    const none = await drive(proc, [requestHeaders(encryptedHeaders(s.body), true)]);
    assert.equal(immediate(none)?.body['reason'], 'e2ee_body_missing');
  });

  it('survives garbage on the stream and answers the next stream', async () => {
    // An empty ProcessingRequest (no phase) gets a deny, not a stream error.
    const odd = await drive(proc, [{}]);
    assert.equal(immediate(odd)?.body['reason'], 'e2ee_bad_processing_request');
    // Bytes that are not a ProcessingRequest: grpc-js ends that stream; the process goes on.
    const grpc = await import('@grpc/grpc-js');
    const raw = new grpc.Client(`127.0.0.1:${svc.grpcPort}`, grpc.credentials.createInsecure());
    await new Promise<void>((resolve) => {
      const call = raw.makeBidiStreamRequest('/envoy.service.ext_proc.v3.ExternalProcessor/Process', (b: Buffer) => b, (b: Buffer) => b);
      call.on('error', () => resolve());
      call.on('data', () => {});
      call.on('end', () => resolve());
      call.write(Buffer.from([0x12, 0xff, 0xff, 0xff, 0x0f, 0x01]));
      call.end();
    });
    raw.close();
    const s = await client.seal('application/json', Buffer.from('{}'));
    const ok = await drive(proc, [requestHeaders(encryptedHeaders(s.body)), requestBody(s.body)]);
    assert.equal(immediate(ok), undefined);
    assert.equal(svc.stateOf(e2eeCapability)?.config?.maxBodyBytes, 4096);
  });
});
