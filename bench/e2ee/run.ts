/**
 * `npm run bench:e2ee`, in one run:
 *  1. µs per request to decrypt (parse, HPKE auth-mode open, inner type) and
 *     re-encrypt the reply (exporter, AEAD) at 1 KB / 16 KB / 256 KB bodies:
 *     Passgate's node:crypto opener against the same work on @hpke/core +
 *     WebCrypto, as a ratio;
 *  2. ext_proc messages (each a processor round trip) per request, counted by
 *     the local gateway: plaintext, encrypted, encrypted with encrypted replies;
 *  3. requests per second through the local gateway (ext_proc + ext_authz +
 *     echo upstream, load from a separate process): encrypted 1 KB bodies as a
 *     ratio of the same chain with the same body in clear.
 * BENCH_SECONDS (4) per load row, BENCH_CONNECTIONS (8), BENCH_ITER scales part 1.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync, webcrypto } from 'node:crypto';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { pino } from 'pino';
import { Aes128Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { E2eeClient } from '../../ext-authz/src/e2ee/client.js';
import { e2eeConfigSchema } from '../../ext-authz/src/e2ee/config.js';
import { decodeInner, encodeInner, parseEnvelope, requestInfo, RESPONSE_LABEL } from '../../ext-authz/src/e2ee/envelope.js';
import { rawPublicKey, x25519PublicKey } from '../../ext-authz/src/e2ee/hpke.js';
import { Opener } from '../../ext-authz/src/e2ee/opener.js';
import type { ReplayClaims } from '../../ext-authz/src/e2ee/replay.js';
import { REPO_ROOT, startStack } from '../../local-gateway/src/stack.js';
import { makeCerts } from '../../test/e2e/support/harness.js';

const seconds = Number(process.env['BENCH_SECONDS'] ?? 4);
const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 8);
const iterScale = Number(process.env['BENCH_ITER'] ?? 1);
const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');

// --- 1. decrypt + re-encrypt, node:crypto vs @hpke/core --------------------------------------
const server = generateKeyPairSync('x25519');
const serverRaw = rawPublicKey(server.publicKey);
const appJwk = generateKeyPairSync('x25519').privateKey.export({ format: 'jwk' }) as { kty: string; crv: string; d: string; x: string };
const sender = await E2eeClient.senderFromJwk('bench-app', appJwk);
const keyConfig = (() => {
  // One RFC 9458 key config, length-prefixed as application/ohttp-keys.
  const cfg = Buffer.concat([Buffer.of(1, 0x00, 0x20), serverRaw, Buffer.of(0, 4, 0, 1, 0, 1)]);
  return Buffer.concat([Buffer.of(cfg.length >> 8, cfg.length & 0xff), cfg]);
})();
const client = await E2eeClient.fromKeyConfigs(keyConfig, { sender });
const settings = e2eeConfigSchema.parse({ maxBodyBytes: 1024 * 1024, keys: [{ id: 1, generate: true }] })!;
const fresh: ReplayClaims = { claim: () => Promise.resolve('fresh') };
const senders = new Map([['bench-app', { id: 'bench-app', app: 'bench', key: x25519PublicKey(Buffer.from(appJwk.x, 'base64url')), raw: Buffer.from(appJwk.x, 'base64url') }]]);
const opener = new Opener(settings, [{ id: 1, privateKey: server.privateKey, publicKey: serverRaw, publish: true, decryptUntil: Infinity }], senders, fresh);

const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
const recipientKey: CryptoKeyPair = {
  privateKey: await suite.kem.importKey('jwk', server.privateKey.export({ format: 'jwk' }) as JsonWebKey, false),
  publicKey: await suite.kem.importKey('raw', serverRaw.buffer.slice(serverRaw.byteOffset, serverRaw.byteOffset + 32) as ArrayBuffer, true),
};
const senderPublic = sender.keyPair.publicKey;
const ab = (b: Uint8Array) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

/** The same work as Opener.open + sealResponse, on @hpke/core and WebCrypto. */
async function hpkeCoreOpenAndReseal(body: Buffer, reply: Buffer): Promise<Buffer> {
  const env = parseEnvelope(body);
  if (typeof env === 'string') throw new Error(env);
  const ctx = await suite.createRecipientContext({ recipientKey, enc: ab(env.enc), info: ab(requestInfo(env.headerBytes)), senderPublicKey: senderPublic });
  const plain = Buffer.from(await ctx.open(ab(env.ciphertext)));
  if (decodeInner(plain) === undefined) throw new Error('inner');
  const secret = new Uint8Array(await ctx.export(ab(RESPONSE_LABEL), 16));
  const nonce = webcrypto.getRandomValues(new Uint8Array(16));
  const ikm = await webcrypto.subtle.importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  const salt = Buffer.concat([env.enc, nonce]);
  const derive = (info: string, bits: number) => webcrypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info: Buffer.from(info) }, ikm, bits);
  const key = await webcrypto.subtle.importKey('raw', await derive('key', 128), 'AES-GCM', false, ['encrypt']);
  const ct = await webcrypto.subtle.encrypt({ name: 'AES-GCM', iv: await derive('nonce', 96) }, key, encodeInner('application/json', reply));
  return Buffer.concat([nonce, Buffer.from(ct)]);
}

async function nodeOpenAndReseal(body: Buffer, reply: Buffer): Promise<Buffer> {
  const r = await opener.open(body);
  if (!r.ok) throw new Error(r.reason);
  return r.sealResponse('application/json', reply);
}

const sizes: Array<[string, number, number]> = [['1 KB', 1024, 400], ['16 KB', 16 * 1024, 300], ['256 KB', 256 * 1024, 60]];
const micro: Array<{ size: string; node: number; core: number }> = [];
process.stdout.write('bench:e2ee\n\n1. decrypt + re-encrypt the reply, per request (auth mode, AES-128-GCM, reply as large as the request)\n');
for (const [label, bytes, n0] of sizes) {
  const n = Math.max(10, Math.round(n0 * iterScale));
  const payload = Buffer.alloc(bytes, 0x61);
  const bodies: Buffer[] = [];
  for (let i = 0; i < 2 * n + 20; i++) bodies.push(Buffer.from((await client.seal('application/json', payload)).body));
  // Interleaved in rounds so machine noise hits both alike; the first 10 of each warm up.
  for (let i = 0; i < 10; i++) {
    await nodeOpenAndReseal(bodies.pop()!, payload);
    await hpkeCoreOpenAndReseal(bodies.pop()!, payload);
  }
  let tNode = 0n;
  let tCore = 0n;
  for (let i = 0; i < n; i++) {
    let t = process.hrtime.bigint();
    await nodeOpenAndReseal(bodies.pop()!, payload);
    tNode += process.hrtime.bigint() - t;
    t = process.hrtime.bigint();
    await hpkeCoreOpenAndReseal(bodies.pop()!, payload);
    tCore += process.hrtime.bigint() - t;
  }
  micro.push({ size: label, node: Number(tNode) / n / 1000, core: Number(tCore) / n / 1000 });
}
process.stdout.write(`   ${'body'.padEnd(8)} ${'node:crypto µs'.padStart(15)} ${'@hpke/core µs'.padStart(15)} ${'ratio'.padStart(8)}\n`);
for (const m of micro) process.stdout.write(`   ${m.size.padEnd(8)} ${f(m.node).padStart(15)} ${f(m.core).padStart(15)} ${`${f(m.core / m.node, 2)}x`.padStart(8)}\n`);

// --- 2 and 3: through the local gateway --------------------------------------------------------
const certs = await makeCerts();
const config = (encryptResponses: boolean) =>
  validateConfig({
    logging: { level: 'silent', audit: false },
    gateways: {
      app: {
        kind: 'app',
        routes: [
          { name: 'sealed', match: { path: { prefix: '/api/' } }, stages: ['fds', { type: 'e2ee' }] },
          { name: 'plain', match: { path: { prefix: '/plain/' } }, stages: ['fds', 'allow'] },
        ],
      },
      public: { kind: 'public', routes: [{ name: 'all', stages: ['allow'] }] },
      secure: { kind: 'secure', routes: [{ name: 'all', stages: ['allow'] }] },
    },
    defaultGateway: 'public',
    fds: { store: 'memory' },
    e2ee: { encryptResponses, keys: [{ id: 1, generate: true }], senders: [{ id: 'bench-app', app: 'bench', publicKey: appJwk.x }] },
  });

interface Load { requests: number; rps: number; p50: number; p99: number; statuses: Record<string, number>; errors: number; exhausted: boolean }
function load(job: object): Promise<Load> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench', 'e2ee', 'load.ts'), JSON.stringify(job)], { cwd: REPO_ROOT, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`load generator failed: ${stderr || err.message}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Load);
    });
  });
}

const rows: Array<{ name: string; load: Load; perRequest: number }> = [];
for (const encryptResponses of [true, false]) {
  const stack = await startStack({ config: config(encryptResponses), certs, filters: false, verifyPassports: false, gatewayLogger: pino({ level: 'silent' }) });
  try {
    const base = `http://127.0.0.1:${stack.appPort}`;
    const common = { seconds, connections, bodyBytes: 1024 };
    const run = async (name: string, job: object) => {
      const m0 = stack.gateway.extProcMessages;
      const s0 = stack.gateway.extProcStreams;
      const r = await load({ ...common, ...job });
      rows.push({ name, load: r, perRequest: (stack.gateway.extProcMessages - m0) / Math.max(1, stack.gateway.extProcStreams - s0) });
      process.stderr.write(`  done: ${name}\n`);
    };
    if (encryptResponses) await run('1 KB JSON in clear (same chain)', { url: `${base}/plain/x`, mode: 'plain' });
    await run(`1 KB sealed, reply ${encryptResponses ? 'sealed' : 'in clear'}`, {
      url: `${base}/api/x`,
      mode: 'sealed',
      keysUrl: `http://127.0.0.1:${stack.service.adminPort}/e2ee/keys`,
      senderJwk: appJwk,
      senderId: 'bench-app',
      pool: Math.round(seconds * 1500),
    });
  } finally {
    await stack.stop();
  }
}
rmSync(certs.dir, { recursive: true, force: true });

process.stdout.write(`\n2./3. through the local gateway (ext_proc + ext_authz [fds, e2ee | allow] + echo), ${seconds}s per row, ${connections} keep-alive connections, load from a separate process\n`);
process.stdout.write(`   ${'row'.padEnd(36)} ${'ext_proc msgs/req'.padStart(18)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'vs clear'.padStart(9)}  statuses\n`);
const clear = rows[0]!.load.rps;
for (const r of rows) {
  process.stdout.write(`   ${r.name.padEnd(36)} ${f(r.perRequest, 2).padStart(18)} ${f(r.load.rps, 0).padStart(8)} ${f(r.load.p50, 2).padStart(8)} ${f(r.load.p99, 2).padStart(8)} ${`${f(r.load.rps / clear, 2)}x`.padStart(9)}  ${JSON.stringify(r.load.statuses)}${r.load.errors ? ` errors=${r.load.errors}` : ''}${r.load.exhausted ? ' (envelope pool ran out)' : ''}\n`);
}
process.exit(0);
