/**
 * Memory-bounds review: every cache and every collection that grows with traffic must be bounded by bytes,
 * and a hostile client must not be able to make the process hold unbounded memory. Each case feeds one
 * long-lived collection what a client controls (distinct names, subjects, tokens, keys, certificates,
 * Checks whose Redis calls hang) and asserts a bound on what stays held: the collection's own count, or
 * the heap (heapUsed + arrayBuffers after a full GC) against the configured budget (RSS in a fresh process
 * for native memory). Every failing case here is a real gap in the source; they are left failing.
 *
 *   node --expose-gc --import tsx ./node_modules/mocha/bin/mocha.js test/hardening/memory-bounds-review.test.ts
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { httpCheck, startService, testConfig } from '../support/service.js';
import { createCa, issueCertificate, urlEncodePem } from '../../ext-authz/src/devcerts/generate.js';
import { parseCertificateDer } from '../../ext-authz/src/identity/der-certificate.js';
import { MemoryStore } from '../../ext-authz/src/fds/store/memory-store.js';
import { RedisStore } from '../../ext-authz/src/fds/store/redis-store.js';
import { fdsConfigSchema } from '../../ext-authz/src/fds/config.js';
import type { CounterOp } from '../../ext-authz/src/fds/store/store.js';
import { TokensRuntime } from '../../ext-authz/src/tokens/runtime.js';
import { verifyJwt } from '../../ext-authz/src/tokens/jwt-verifier.js';
import { STRING_TABLE_BOUND_BYTES } from '../../ext-authz/src/proto/check-decoder.js';

const MB = 1024 * 1024;
/** global.gc when run with --expose-gc; otherwise (mocha re-spawns node with .mocharc's options only) the same function, exposed at run time. */
const gc: (() => void) | undefined =
  (globalThis as { gc?: () => void }).gc ??
  (() => {
    try {
      v8.setFlagsFromString('--expose-gc');
      return vm.runInNewContext('gc') as () => void;
    } catch {
      return undefined;
    }
  })();

/** Live JS heap plus ArrayBuffer/Buffer backing stores, after full collections. */
function held(): number {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const mb = (n: number) => `${(n / MB).toFixed(1)} MB`;

function needsGc(this: Mocha.Context): void {
  if (gc === undefined) this.skip();
}

/** A gRPC length-prefixed message holding one string field 1 (HealthCheckRequest.service). */
function healthRequest(service: string): Buffer {
  const body = Buffer.from(service);
  const len: number[] = [];
  for (let n = body.length; ; n >>>= 7) {
    if (n < 128) {
      len.push(n);
      break;
    }
    len.push((n & 127) | 128);
  }
  const msg = Buffer.concat([Buffer.from([0x0a, ...len]), body]);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

const ALLOW_ALL = `
gateways:
  public:
    kind: public
    select: { hosts: [www.example.com] }
    routes: [{ name: all, stages: [allow] }]
`;

describe('memory bounds review: long-lived collections under hostile input', function () {
  this.timeout(120_000);

  describe('grpc.health.v1 Watch (grpc-health-check HealthImplementation.watchers, on the Check port)', () => {
    it('Watch calls for distinct service names leave nothing behind once their streams are gone', async function () {
      needsGc.call(this);
      const run = await startService(ALLOW_ALL);
      try {
        const watchers = (run.svc.grpc.health as unknown as { watchers: Map<string, Set<unknown>> }).watchers;
        // Each batch is one client connection that opens Watch streams, reads the first status, and goes away.
        const batch = async (names: string[]) => {
          const session = http2.connect(`http://127.0.0.1:${run.svc.grpcPort}`);
          session.on('error', () => undefined);
          await Promise.all(
            names.map(
              (name) =>
                new Promise<void>((resolve) => {
                  const s = session.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Watch', 'content-type': 'application/grpc', te: 'trailers' });
                  s.on('data', () => resolve());
                  s.on('close', () => resolve());
                  s.on('error', () => resolve());
                  s.end(healthRequest(name));
                }),
            ),
          );
          session.destroy();
        };
        await batch(['warm-up']);
        await new Promise((r) => setTimeout(r, 50));
        const entriesBefore = watchers.size;
        const before = held();
        for (let i = 0; i < 2000; i += 100) await batch(Array.from({ length: 100 }, (_, j) => `svc-${i + j}-${'x'.repeat(8192)}`));
        await new Promise((r) => setTimeout(r, 200));
        const growth = held() - before;
        const open = [...watchers.values()].reduce((n, s) => n + s.size, 0);
        assert.equal(open, 0, 'every Watch stream is closed: no watcher callback should remain');
        assert.ok(growth < 4 * MB, `2,000 closed Watch calls with 8 KB service names left ${mb(growth)} held and ${watchers.size - entriesBefore} new entries in HealthImplementation.watchers (an empty Set per name is never deleted)`);
        assert.ok(watchers.size - entriesBefore < 100, `HealthImplementation.watchers grew by ${watchers.size - entriesBefore} entries for closed streams`);
      } finally {
        await run.stop();
      }
    });
  });

  describe('fds memory store (fds/store/memory-store.ts)', () => {
    const op = (subject: string): CounterOp => ({ rule: 'per-ip', kind: 'ip', subject, increment: 1, windowMs: 3_600_000, threshold: 100, ttls: [60_000], memoryMs: 86_400_000, reason: 'too many requests' });

    it('counters of distinct subjects are bounded by bytes, not only by their window (50,000 addresses of one IPv6 /64)', async function () {
      needsGc.call(this);
      // The store's byte budgets (claims, sessions, counters) are 1 MB each here.
      const store = new MemoryStore(Date.now, MB, MB, MB);
      try {
        const before = held();
        // What the fds stage sends for a `request` rule by ip, one Check per source address the client rotates to.
        for (let i = 0; i < 50_000; i++) await store.evaluate([], [op(`2001:db8:1:2:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}:0:1`)]);
        const growth = held() - before;
        assert.ok(growth < 8 * MB, `50,000 one-request counters hold ${mb(growth)} for the whole 1 h window (no entry or byte bound on MemoryStore.counters)`);
      } finally {
        await store.close();
      }
    });

    it('the periodic sweep drops expired device records (memoryDevices is swept by nobody)', async function () {
      needsGc.call(this);
      let now = 1_700_000_000_000;
      const store = new MemoryStore(() => now, MB, MB);
      try {
        const before = held();
        for (let i = 0; i < 20_000; i++) {
          const jwk = JSON.stringify({ kty: 'EC', crv: 'P-256', x: `${i}`.padStart(43, 'x'), y: 'y'.repeat(43) });
          await store.devices.put({ id: `dev_${`${i}`.padStart(22, '0')}`, jwk, jkt: `${i}`.padStart(43, 'j'), platform: 'ios', attestation: 'basic', attestedBy: 'offline:backend', user: `user-${i}`, status: 'active', counter: 0, createdAt: now, rotatedAt: now }, 60_000);
        }
        now += 86_400_000; // every record is long expired
        (store as unknown as { sweep(): void }).sweep(); // what the store's 30 s timer runs
        assert.equal(await store.devices.get(`dev_${'0'.padStart(22, '0')}`), undefined, 'an expired record reads as gone');
        const growth = held() - before;
        assert.ok(growth < 2 * MB, `20,000 expired device records still hold ${mb(growth)} after the sweep`);
      } finally {
        await store.close();
      }
    });

    it("a subject's session index does not keep the ids of sessions that ended", async () => {
      let now = 1_700_000_000_000;
      const store = new MemoryStore(() => now, MB, 64 * MB);
      try {
        // One user logging in again and again (each login a new session, the old one ended or idled out).
        for (let i = 0; i < 5_000; i++) {
          const id = `${i}`.padStart(43, 's');
          await store.putSession(id, { version: 'v1', sealed: 'x'.repeat(64), absoluteExpiresAt: now + 86_400_000 }, 60_000, ['sub-index-of-alice']);
          assert.equal(await store.deleteSession(id), true);
          now += 1_000;
        }
        const listed = await store.indexedSessions('sub-index-of-alice');
        assert.ok(listed.length <= 1, `no session of the subject is live, yet its index lists ${listed.length} ids (MemoryStore.index is outside maxSessionBytes and never pruned)`);
      } finally {
        await store.close();
      }
    });
  });

  describe('verified bearer tokens (tokens/token-cache.ts)', () => {
    it('the parsed claims of cached tokens count against verifiedTokens.maxBytes', async function () {
      needsGc.call(this);
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'k1' };
      const config = testConfig(`
tokens:
  issuers:
    id: { issuer: "https://id.example", keys: [${JSON.stringify(jwk)}], algorithms: [ES256], audience: [api], maxTokenBytes: 16384 }
  verifiedTokens: { maxEntries: 100000, maxBytes: ${MB} }
${ALLOW_ALL}`);
      const runtime = new TokensRuntime();
      const tokensConfig = config.tokens!;
      const issuer = runtime.issuer(tokensConfig, 'id');
      const cache = runtime.verifiedTokens(tokensConfig)!;
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const exp = Math.floor(Date.now() / 1000) + 3600;
      // Claims an issuer signs (a profile with many small entries); 3 bytes of JSON per empty object.
      const tokens = Array.from({ length: 300 }, (_, i) => {
        const input = `${b64({ alg: 'ES256', kid: 'k1', typ: 'JWT' })}.${b64({ iss: 'https://id.example', aud: 'api', sub: `u${i}`, exp, prefs: Array.from({ length: 3900 }, () => ({})) })}`;
        return `${input}.${sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
      });
      const before = held();
      for (const t of tokens) {
        const r = (await verifyJwt(t, [issuer], Date.now(), cache)) as { ok: boolean };
        assert.equal(r.ok, true);
      }
      const growth = held() - before; // the token strings existed before: this is what the cache added
      assert.ok(growth < 2 * MB, `a ${mb(MB)} verified-token cache (${cache.size} entries) holds ${mb(growth)} of parsed claims (sizeCalculation is 2 × token length + 512)`);
    });
  });

  describe('DPoP proof keys (tokens/key-cache.ts)', () => {
    it("imported keys' native memory counts against proofKeys.maxBytes", async function () {
      // KeyObjects live in OpenSSL's (native) memory, so this is measured as RSS, in a fresh process: in this
      // one, memory the earlier cases freed would be reused and hide the growth.
      const maxBytes = 8 * MB;
      const script = `
        import { generateKeyPairSync } from 'node:crypto';
        import { ProofKeyCache } from ${JSON.stringify(new URL('../../ext-authz/src/tokens/key-cache.ts', import.meta.url).href)};
        const cache = new ProofKeyCache(1000000, ${maxBytes});
        const fresh = (n) => Array.from({ length: n }, () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }));
        // One client key, a distinct harmless member per proof: one entry, not a new KeyObject each time.
        const jwk = fresh(1)[0];
        for (let i = 0; i < 12000; i++) if (!cache.get({ ...jwk, kid: 'k' + i }).ok) throw new Error('not imported');
        const oneKey = cache.size;
        // Distinct keys: what the cache holds must fit its byte bound, native memory included. The first
        // pass warms the allocator and the code, so the second measures what is retained.
        const rss = () => { gc(); gc(); return process.memoryUsage().rss; };
        for (const j of fresh(3000)) cache.get(j);
        const keys = fresh(12000);
        const before = rss();
        for (const j of keys) if (!cache.get(j).ok) throw new Error('not imported');
        console.log(JSON.stringify({ growth: rss() - before, size: cache.size, oneKey }));`;
      const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
      const { growth, size, oneKey } = JSON.parse(out.trim().split('\n').pop()!) as { growth: number; size: number; oneKey: number };
      assert.equal(oneKey, 1, 'one key sent with 12,000 different kids is one entry');
      assert.ok(growth < 2 * maxBytes, `a ${mb(maxBytes)} proof key cache (${size} keys) grew the process by ${mb(growth)} (an EC key's EVP_PKEY is native memory keyBytes must count)`);
    });
  });

  describe('FDS Redis store on a Redis that stops answering (fds/store/redis-store.ts)', () => {
    let proxy: net.Server;
    const sockets: net.Socket[] = [];
    let frozen = false;
    before(async () => {
      // A TCP relay to the real Redis that can go silent (a paused or black-holed Redis: the connection stays up).
      proxy = net.createServer((c) => {
        const up = net.connect(6379, '127.0.0.1');
        sockets.push(c, up);
        c.on('data', (d) => void (frozen || up.write(d)));
        up.on('data', (d) => void (frozen || c.write(d)));
        for (const s of [c, up]) s.on('error', () => undefined);
        c.on('close', () => up.destroy());
        up.on('close', () => c.destroy());
      });
      await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    });
    after(async () => {
      for (const s of sockets) s.destroy();
      proxy.close();
      const r = new Redis(6379, '127.0.0.1', { lazyConnect: true });
      await r.connect();
      const keys = await r.keys('review:mem:*');
      if (keys.length > 0) await r.del(...keys);
      r.disconnect();
    });

    it('session reads that timed out are not kept (one per Check with a session cookie, no breaker in front)', async function () {
      needsGc.call(this);
      const port = (proxy.address() as net.AddressInfo).port;
      const settings = fdsConfigSchema.parse({ store: 'redis', redis: { url: `redis://127.0.0.1:${port}`, keyPrefix: 'review:mem:', commandTimeoutMs: 20 } })!.redis!;
      const store = new RedisStore(settings, pino({ level: 'silent' }), { onError: () => undefined });
      try {
        assert.equal(await store.ready(2_000), true);
        assert.equal(await store.readSession('a'.repeat(43), 1_000), undefined);
        frozen = true;
        const before = held();
        let refused = 0;
        // What the oidc stage does for every Check whose cookie names a session this replica has not cached.
        for (let i = 0; i < 20_000; i += 500) {
          await Promise.all(Array.from({ length: 500 }, (_, j) => store.readSession(`${i + j}`.padStart(43, 'r'), 1_000).catch(() => void refused++)));
        }
        assert.equal(refused, 20_000, 'every read gave up at commandTimeoutMs');
        const growth = held() - before;
        const queued = (store as unknown as { client: { commandQueue: { length: number } } }).client.commandQueue.length;
        assert.ok(growth < 8 * MB, `20,000 reads that already failed still hold ${mb(growth)} (${queued} commands left in ioredis' commandQueue)`);
      } finally {
        frozen = false;
        await store.close();
      }
    });
  });

  describe('mtls verified-XFCC cache (identity/mtls-stage.ts)', () => {
    it('the certificates its entries keep alive count against its byte bound', async function () {
      needsGc.call(this);
      const root = await createCa();
      const leaf = await issueCertificate({ ca: root, sans: { uri: ['spiffe://acme/alice'] } });
      const der = Buffer.from(leaf.pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
      const serial = parseCertificateDer(der).serial;
      const at = der.indexOf(Buffer.from(serial.length % 2 === 1 ? `0${serial}` : serial, 'hex'));
      assert.ok(at > 0);
      // Distinct certificates (another serial each; no CA bundle, so the proxy in front is trusted to have verified them).
      const xfcc = (i: number) => {
        const d = Buffer.from(der);
        d.writeUInt32BE(i, at + 2);
        const pem = `-----BEGIN CERTIFICATE-----\n${d.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
        return `Hash=${createHash('sha256').update(d).digest('hex')};Cert="${urlEncodePem(pem)}";URI=spiffe://acme/alice`;
      };
      const certCacheBytes = MB;
      const verifiedBytes = 8 * MB; // VERIFIED_XFCC_BYTES, per mtls stage
      const run = await startService(`
identity:
  mtls:
    cacheSize: 16
    cacheBytes: ${certCacheBytes}
    rules: [{ uri: { prefix: "spiffe://acme/" }, identity: { subject: "{rest}", kind: user } }]
gateways:
  secure:
    kind: secure
    select: { ports: [8443] }
    routes: [{ name: edge, stages: [mtls] }]
`);
      try {
        const ask = (h: string) => run.check(httpCheck({ destinationPort: 8443, headers: { 'x-forwarded-client-cert': h } }));
        const headers = Array.from({ length: 4096 }, (_, i) => xfcc(i + 1));
        assert.equal((await ask(xfcc(0))).status?.code ?? 0, 0, 'a well-formed XFCC is allowed');
        const before = held();
        for (let i = 0; i < headers.length; i += 64) await Promise.all(headers.slice(i, i + 64).map(ask));
        const growth = held() - before;
        const bound = 2 * (certCacheBytes + verifiedBytes) + STRING_TABLE_BOUND_BYTES;
        assert.ok(growth < bound, `4,096 distinct client certificates hold ${mb(growth)}; the certificate cache (${mb(certCacheBytes)}) and the verified-XFCC cache (${mb(verifiedBytes)}, sizeOf () => 256) allow ${mb(bound)} even doubled`);
      } finally {
        await run.stop();
      }
    });
  });
});
