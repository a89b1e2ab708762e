/**
 * The whole encrypted chain as `npm start` runs it: the reference app client
 * (@hpke/core) → local gateway (sanitize/trace wasm filters, ext_proc as
 * Envoy drives it, ext_authz) → Passgate's e2ee processor and Check (FDS in
 * real Redis) → echo upstream, which sees the plaintext and a verified
 * Passport; the encrypted reply is readable by that request's client only.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { rmSync } from 'node:fs';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { E2eeClient, type SenderIdentity } from '../../ext-authz/src/e2ee/client.js';
import { e2eeCapability } from '../../ext-authz/src/e2ee/capability.js';
import { FACTS_HEADER } from '../../ext-authz/src/e2ee/facts.js';
import { EchoUpstream, type EchoBody } from '../../local-gateway/src/echo-upstream.js';
import { LocalGateway } from '../../local-gateway/src/gateway.js';
import { ensureWasmBuilt, startStack, type Stack } from '../../local-gateway/src/stack.js';
import { captureLogs } from '../support/service.js';
import { cleanup, REDIS_URL, testPrefix } from '../fds/helpers.js';
import { makeCerts, type TestCerts } from '../e2e/support/harness.js';

const CT = 'application/vnd.passgate.e2ee';
const RCT = 'application/vnd.passgate.e2ee-response';
const SECRET = 'TOP-SECRET-card-4111111111111111';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function post(port: number, path: string, body: Uint8Array, headers: Record<string, string>, chunked = false): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent: false, headers: chunked ? headers : { ...headers, 'content-length': String(body.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    if (chunked) {
      // Two writes without a content-length: node sends transfer-encoding: chunked.
      const half = Math.floor(body.length / 2);
      req.write(body.subarray(0, half));
      req.end(body.subarray(half));
    } else req.end(body);
  });
}

function reason(r: Reply): string {
  return (JSON.parse(r.body.toString('utf8')) as { reason: string }).reason;
}

describe('e2ee: the encrypted chain through the local gateway (ext_proc → Check → upstream)', function () {
  this.timeout(30_000);
  let certs: TestCerts;
  let stack: Stack;
  let app: SenderIdentity;
  let client: E2eeClient;
  const logs = captureLogs('debug');
  const prefix = testPrefix();

  before(async () => {
    ensureWasmBuilt();
    certs = await makeCerts();
    const gen = await E2eeClient.generateSender('android-1');
    app = gen.sender;
    const config = validateConfig({
      logging: { level: 'debug', audit: false },
      gateways: {
        app: {
          kind: 'app',
          routes: [
            { name: 'orders', match: { path: { prefix: '/api/' } }, failureMode: 'closed', stages: ['fds', { type: 'e2ee' }, 'passport'] },
            { name: 'open', stages: ['allow'] },
          ],
        },
        public: { kind: 'public', routes: [{ name: 'all', stages: ['allow'] }] },
        secure: { kind: 'secure', routes: [{ name: 'all', stages: ['allow'] }] },
      },
      defaultGateway: 'public',
      fds: {
        store: 'redis',
        redis: { mode: 'single', url: REDIS_URL, keyPrefix: prefix },
        rules: [{ name: 'e2ee-garbage', events: ['e2ee_refused'], subject: 'ip', threshold: 12, window: '1m', block: '1m' }],
      },
      passport: {
        issuer: 'https://passgate.test',
        audience: 'echo',
        keys: { active: 'k1', entries: [{ id: 'k1', generate: true }] },
        source: { type: 'static', users: { 'app:shop': { id: 'app-shop', roles: ['app'] } } },
      },
      e2ee: {
        maxBodyBytes: 4096,
        replayTimeoutMs: 2000,
        encryptResponses: true,
        keys: [{ id: 7, generate: true }],
        senders: [{ id: 'android-1', app: 'shop', publicKey: gen.publicKey }],
      },
    });
    stack = await startStack({
      config,
      certs,
      serviceLogger: logs.logger,
      // A loaded CI machine: the processor's Redis claim must fit; timings are for npm run bench:e2ee.
      extProc: { messageTimeoutMs: 3000, bufferLimitBytes: 8192 },
      extAuthz: { timeoutMs: 3000 },
    });
    const res = await fetch(`http://127.0.0.1:${stack.service.adminPort}/e2ee/keys`);
    client = await E2eeClient.fromKeyConfigs(new Uint8Array(await res.arrayBuffer()), { sender: app });
  });

  after(async () => {
    await stack?.stop();
    await cleanup(prefix);
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  it('decrypts before Check: the upstream sees the plaintext, its content-type and length, and a verified Passport for the app; the reply comes back encrypted', async () => {
    const payload = Buffer.from(JSON.stringify({ card: SECRET, amount: 42 }));
    const sealed = await client.seal('application/json', payload);
    const streams = stack.gateway.extProcStreams;
    const messages = stack.gateway.extProcMessages;
    const r = await post(stack.appPort, '/api/pay', sealed.body, { 'content-type': CT, [FACTS_HEADER]: 'v1.forged.x' });
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['content-type'], RCT);
    assert.equal(Number(r.headers['content-length']), r.body.length);
    assert.ok(!r.body.includes(Buffer.from('passport')), 'the reply is not in clear');
    const opened = await sealed.openResponse(r.body);
    assert.equal(opened.contentType, 'application/json');
    const echo = JSON.parse(opened.payload.toString('utf8')) as EchoBody;
    assert.equal(echo.bodyText, payload.toString('utf8'), 'the upstream got the plaintext');
    assert.equal(echo.headers['content-type'], 'application/json');
    assert.equal(echo.headers['content-length'], String(payload.length));
    assert.equal(echo.headers[FACTS_HEADER], undefined, 'the facts header never reaches the upstream');
    assert.equal(echo.passport?.verified, true, JSON.stringify(echo.passport));
    assert.match(JSON.stringify(echo.passport), /app-shop/);
    // Headers, body, response headers, response body: four messages on one stream.
    assert.equal(stack.gateway.extProcStreams - streams, 1);
    assert.equal(stack.gateway.extProcMessages - messages, 4);
    // Only the sealing request's context opens it.
    const other = await client.seal('application/json', Buffer.from('{}'));
    await assert.rejects(other.openResponse(r.body));
  });

  it('a chunked encrypted body (no content-length) is buffered whole and decrypted, as Envoy buffers it', async () => {
    const sealed = await client.seal('application/json', Buffer.from('{"chunked":true}'));
    const r = await post(stack.appPort, '/api/pay', sealed.body, { 'content-type': CT }, true);
    assert.equal(r.status, 200, r.body.toString());
    const echo = JSON.parse((await sealed.openResponse(r.body)).payload.toString('utf8')) as EchoBody;
    assert.equal(echo.bodyText, '{"chunked":true}');
  });

  it('other content types pass untouched: one ext_proc message, no body sent to the processor', async () => {
    const messages = stack.gateway.extProcMessages;
    const r = await post(stack.appPort, '/other', Buffer.from('{"plain":1}'), { 'content-type': 'application/json' });
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body.toString()) as EchoBody).bodyText, '{"plain":1}');
    assert.equal(stack.gateway.extProcMessages - messages, 1);
  });

  it('plaintext where ciphertext is required: Check answers 400 e2ee_required', async () => {
    const r = await post(stack.appPort, '/api/pay', Buffer.from(JSON.stringify({ card: SECRET })), { 'content-type': 'application/json' });
    assert.equal(r.status, 400);
    assert.equal(reason(r), 'e2ee_required');
  });

  const refusals: Array<[string, () => Promise<{ body: Uint8Array; headers?: Record<string, string>; chunked?: boolean }>, number, string]> = [
    ['a tag mismatch', async () => {
      const b = Buffer.from((await client.seal('application/json', Buffer.from(SECRET))).body);
      b[b.length - 1]! ^= 0x80;
      return { body: b };
    }, 400, 'e2ee_decrypt_failed'],
    ['a wrong key id', async () => ({ body: (await client.seal('application/json', Buffer.from(SECRET), { keyId: 3 })).body }), 400, 'e2ee_unknown_key'],
    ['an unknown algorithm id', async () => {
      const b = Buffer.from((await client.seal('application/json', Buffer.from(SECRET))).body);
      b.writeUInt16BE(0x0021, 1); // DHKEM(X448, HKDF-SHA512): not pinned
      return { body: b };
    }, 400, 'e2ee_unsupported_algorithm'],
    ['a truncated body', async () => ({ body: (await client.seal('application/json', Buffer.from(SECRET))).body.subarray(0, 30) }), 400, 'e2ee_truncated'],
    ['plaintext sent as ciphertext', async () => ({ body: Buffer.from(JSON.stringify({ card: SECRET, pad: 'x'.repeat(60) })) }), 400, 'e2ee_unsupported_algorithm'],
    ['a body over e2ee.maxBodyBytes (content-length)', async () => ({ body: Buffer.alloc(5000, 7) }), 413, 'e2ee_too_large'],
    ['a chunked body over e2ee.maxBodyBytes', async () => ({ body: Buffer.alloc(5000, 7), chunked: true }), 413, 'e2ee_too_large'],
  ];
  for (const [what, make, status, why] of refusals) {
    it(`refuses ${what}: ${status} ${why}, the Check denial body, nothing reaches the upstream`, async () => {
      const { body, headers, chunked } = await make();
      const r = await post(stack.appPort, '/api/pay', body, { 'content-type': CT, ...headers }, chunked);
      assert.equal(r.status, status, r.body.toString());
      assert.equal(r.headers['content-type'], 'application/json');
      const json = JSON.parse(r.body.toString()) as Record<string, unknown>;
      assert.equal(json['reason'], why);
      assert.equal(typeof json['trace_id'], 'string');
      assert.equal(r.headers['x-echo-upstream'], undefined);
    });
  }

  it('a body over the gateway buffer limit: 413 from the gateway, as Envoy answers, before the processor sees it', async () => {
    const r = await post(stack.appPort, '/api/pay', Buffer.alloc(9000, 1), { 'content-type': CT }, true);
    assert.equal(r.status, 413);
  });

  it('a replayed body: 400 e2ee_replayed', async () => {
    const sealed = await client.seal('application/json', Buffer.from('{"pay":1}'));
    assert.equal((await post(stack.appPort, '/api/pay', sealed.body, { 'content-type': CT })).status, 200);
    const again = await post(stack.appPort, '/api/pay', sealed.body, { 'content-type': CT });
    assert.equal(again.status, 400);
    assert.equal(reason(again), 'e2ee_replayed');
  });

  it('no log line holds the plaintext, the ciphertext, the server key or the facts header; refusals are logged with their reason', async () => {
    const text = logs.lines.map((l) => JSON.stringify(l)).join('\n');
    assert.ok(!text.includes(SECRET), 'plaintext in a log line');
    assert.ok(!text.includes('4111111111111111'));
    const key = stack.service.stateOf(e2eeCapability)!.keys[0]!;
    const jwk = key.privateKey.export({ format: 'jwk' }) as { d: string };
    assert.ok(!text.includes(jwk.d), 'the server private key in a log line');
    assert.ok(!text.includes(FACTS_HEADER + '":"v1.'), 'a facts header value in a log line');
    const refused = logs.lines.filter((l) => l['msg'] === 'e2ee: request refused').map((l) => l['e2ee']);
    for (const r of ['e2ee_decrypt_failed', 'e2ee_unknown_key', 'e2ee_unsupported_algorithm', 'e2ee_truncated', 'e2ee_too_large', 'e2ee_replayed']) assert.ok(refused.includes(r), `${r} not logged: ${refused.join(',')}`);
  });

  it('refusals are FDS events of the source IP: past the rule threshold the IP is blocked (403), before any decryption', async () => {
    let last: Reply | undefined;
    for (let i = 0; i < 12; i++) {
      last = await post(stack.appPort, '/api/pay', Buffer.from('garbage that is not an envelope at all, long enough'), { 'content-type': CT });
      if (last.status === 403) break;
    }
    // The counter write is not awaited by the refusal it counts: the next request finds the block.
    let blocked: Reply | undefined;
    for (let i = 0; i < 20 && blocked?.status !== 403; i++) {
      blocked = await post(stack.appPort, '/api/pay', (await client.seal('application/json', Buffer.from('{}'))).body, { 'content-type': CT });
      if (blocked.status !== 403) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(blocked?.status, 403, blocked?.body.toString());
    assert.equal(reason(blocked!), 'blocked');
    const rec = await fetch(`http://127.0.0.1:${stack.service.adminPort}/metrics`).then((r) => r.text());
    assert.match(rec, /passgate_e2ee_bodies_total\{result="blocked"\} [1-9]/);
  });
});

describe('e2ee: the local gateway fails closed when the processor fails (failure_mode_allow: false)', function () {
  this.timeout(15_000);
  it('processor unreachable: 500, the upstream never sees the request', async () => {
    const echo = await EchoUpstream.start();
    let hits = 0;
    echo.server.prependListener('request', () => hits++);
    const gw = await LocalGateway.start({
      listeners: [{ name: 'app', port: 0, extProc: true }],
      upstream: { host: '127.0.0.1', port: echo.port },
      extAuthz: null,
      extProc: { target: '127.0.0.1:1', messageTimeoutMs: 2000 },
      logger: captureLogs('silent').logger,
    });
    try {
      const r = await post(gw.ports['app']!, '/api/pay', Buffer.from('ciphertext'), { 'content-type': CT });
      assert.equal(r.status, 500);
      assert.match(r.body.toString(), /ext_proc/);
      assert.equal(hits, 0);
    } finally {
      await gw.stop();
      await echo.stop();
    }
  });
});
