/** The pure token modules and the claims section of both FDS stores (real Redis). */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { importDeviceKey } from '../../ext-authz/src/app-signature/credential.js';
import { Redis } from 'ioredis';
import pino from 'pino';
import { decodeCanonical, parseCompactJws } from '../../ext-authz/src/tokens/jws.js';
import { normaliseHtu, requestHtu } from '../../ext-authz/src/tokens/htu.js';
import { importPublicJwk, jwkThumbprint } from '../../ext-authz/src/tokens/jwk.js';
import { NonceMint } from '../../ext-authz/src/tokens/nonce.js';
import { MemoryStore } from '../../ext-authz/src/fds/store/memory-store.js';
import { RedisStore } from '../../ext-authz/src/fds/store/redis-store.js';
import type { CounterOp, FdsStore } from '../../ext-authz/src/fds/store/store.js';
import { fdsConfigSchema } from '../../ext-authz/src/fds/config.js';
import { cleanup, REDIS_URL, testPrefix } from '../fds/helpers.js';
import { ecKey, signEs256 } from './helpers.js';
import { verifyJwt, type JwtResult, type VerifiedJwt } from '../../ext-authz/src/tokens/jwt-verifier.js';
import { VerifiedTokenCache } from '../../ext-authz/src/tokens/token-cache.js';
import { TokensRuntime } from '../../ext-authz/src/tokens/runtime.js';
import { validateConfig } from '../../ext-authz/src/config/load.js';

describe('tokens: pure parts', () => {
  it('decodes only canonical base64url', () => {
    assert.deepEqual(decodeCanonical('AQ'), Buffer.from([1]));
    assert.equal(decodeCanonical('AR'), undefined, 'unused bits set');
    assert.equal(decodeCanonical('AQ=='), undefined, 'padding');
    assert.equal(decodeCanonical('A+/B'), undefined, 'base64, not base64url');
    assert.equal(decodeCanonical('A'), undefined, 'impossible length');
  });

  it('parses compact JWS strictly, checking the size first', () => {
    const h = Buffer.from('{"alg":"ES256"}').toString('base64url');
    const p = Buffer.from('{"a":1}').toString('base64url');
    assert.equal(parseCompactJws(`${h}.${p}.AQ`, 1000).ok, true);
    for (const [t, reason] of [
      [`${h}.${p}`, 'malformed_token'],
      [`${h}.${p}.AQ.AQ`, 'malformed_token'],
      [`${h}.${p}.`, 'malformed_token'],
      [`${Buffer.from('[1]').toString('base64url')}.${p}.AQ`, 'malformed_header'],
      [`${h}.${Buffer.from('"x"').toString('base64url')}.AQ`, 'malformed_payload'],
      [`${h}.${p}.${'A'.repeat(2000)}`, 'token_too_large'],
    ] as const) {
      const r = parseCompactJws(t, 1000);
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.reason, reason, t.slice(0, 40));
    }
  });

  it('normalises htu as RFC 9449 §4.3 asks', () => {
    assert.equal(normaliseHtu('HTTPS://Api.Example.COM:443/a/../b/%7e?q#f'), 'https://api.example.com/b/~');
    assert.equal(normaliseHtu('https://api.example.com'), 'https://api.example.com/');
    assert.equal(normaliseHtu('https://api.example.com:8443/x'), 'https://api.example.com:8443/x');
    assert.equal(normaliseHtu('https://u:p@api.example.com/x'), undefined);
    assert.equal(normaliseHtu('ftp://api.example.com/x'), undefined);
    assert.equal(requestHtu('https', 'api.example.com:443', '/x'), 'https://api.example.com/x');
    assert.equal(requestHtu('', 'api.example.com', 'x'), undefined);
  });

  it('computes RFC 7638 thumbprints and refuses private or symmetric JWKs', () => {
    // RFC 7638 §3.1 example key and thumbprint.
    const n =
      '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw';
    assert.equal(jwkThumbprint({ kty: 'RSA', n, e: 'AQAB', alg: 'RS256', kid: '2011-04-29' }), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
    const k = ecKey();
    assert.equal(importPublicJwk(k.jwk).ok, true);
    const priv = importPublicJwk(k.privateKey.export({ format: 'jwk' }));
    assert.equal(!priv.ok && priv.reason, 'private_jwk');
    const sym = importPublicJwk({ kty: 'oct', k: 'c2VjcmV0' });
    assert.equal(!sym.ok && sym.reason, 'private_jwk');
  });

  it('one key, one thumbprint: a JWK member in another base64url spelling of the same key is refused (proof keys and device keys)', () => {
    const cases: Array<[string, Record<string, unknown>]> = [];
    for (const [type, options] of [['ec', { namedCurve: 'P-256' }], ['rsa', { modulusLength: 2048 }], ['ed25519', {}]] as const) {
      const jwk = generateKeyPairSync(type as 'ec', options as { namedCurve: string }).publicKey.export({ format: 'jwk' }) as Record<string, string>;
      assert.equal(importPublicJwk(jwk).ok, true, type);
      const member = jwk['n'] !== undefined ? 'n' : 'x';
      const v = jwk[member]!;
      cases.push([`${type} ${member} padded`, { ...jwk, [member]: `${v}=` }]);
      // The last character's unused low bits set: another string, the same bytes to a lenient decoder.
      const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(v.at(-1)!);
      cases.push([`${type} ${member} trailing bits`, { ...jwk, [member]: v.slice(0, -1) + 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[last | (v.length % 4 === 2 ? 0x0f : 0x03)] }]);
      if (type === 'rsa') cases.push(['rsa n with a leading zero octet', { ...jwk, n: Buffer.concat([Buffer.from([0]), Buffer.from(v, 'base64url')]).toString('base64url') }]);
    }
    for (const [what, jwk] of cases) {
      if (importPublicJwk(jwk).ok === false && jwkThumbprint(jwk) !== undefined) {
        const r = importPublicJwk(jwk);
        assert.ok(!r.ok && r.reason === 'invalid_jwk', what);
        continue;
      }
      assert.fail(`${what}: imported`);
    }
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }) as Record<string, string>;
    assert.equal(importDeviceKey(ec).ok, true);
    const padded = importDeviceKey({ ...ec, y: `${ec['y']}=` });
    assert.ok(!padded.ok && padded.detail.includes('canonical form'));
  });

  it('the verified-token cache skips only the signature: expiry and claims are checked on every use', () => {
    const k = ecKey();
    const cfg = validateConfig({ gateways: { g: { kind: 'public', routes: [] } }, tokens: { issuers: { i: { issuer: 'https://i', keys: [{ ...k.jwk, kid: 'a' }], algorithms: ['ES256'], audience: ['x'] } } } });
    const issuer = new TokensRuntime().issuer(cfg.tokens!, 'i');
    const cache = new VerifiedTokenCache<VerifiedJwt>(100, 1 << 20, 60_000);
    const now = 1_800_000_000_000;
    const t = signEs256({ alg: 'ES256', kid: 'a' }, { iss: 'https://i', aud: 'x', sub: 's', exp: now / 1000 + 10 }, k.privateKey);
    assert.equal((verifyJwt(t, [issuer], now, cache) as JwtResult).ok, true);
    assert.equal(cache.size, 1);
    const late = verifyJwt(t, [issuer], now + 60_000, cache) as JwtResult;
    assert.equal(!late.ok && late.reason, 'token_expired');
    const forged = `${t.slice(0, -2)}${t.endsWith('AA') ? 'BA' : 'AA'}`;
    const f = verifyJwt(forged, [issuer], now, cache) as JwtResult;
    assert.equal(f.ok, false, 'a changed byte is a cache miss and fails verification');
  });

  it('keeps key sets across reloads while their source is unchanged, and drops the ones a new config no longer names', () => {
    const k = ecKey();
    const section = (audience: string, extra: Record<string, unknown> = {}) =>
      validateConfig({ gateways: { g: { kind: 'public', routes: [] } }, tokens: { issuers: { i: { issuer: 'https://i', keys: [{ ...k.jwk, kid: 'a' }], algorithms: ['ES256'], audience: [audience] }, ...extra } } }).tokens!;
    const rt = new TokensRuntime();
    const other = { j: { issuer: 'https://j', keys: [{ ...k.jwk, kid: 'b' }], algorithms: ['ES256'], audience: ['x'] } };
    const first = section('x', other);
    const a = rt.issuer(first, 'i').keys;
    const j = rt.issuer(first, 'j').keys;
    const second = section('y');
    assert.equal(rt.issuer(second, 'i').keys, a, 'an audience change keeps the fetched keys');
    assert.notEqual(rt.issuer(section('x', other), 'j').keys, j, 'j was dropped when a config stopped naming it');
  });

  it('mints nonces valid for this and the previous window only', () => {
    const m = new NonceMint('a-shared-secret-of-16+', 60_000);
    const t = 1_800_000_000_000;
    const n = m.current(t);
    assert.equal(m.valid(n, t + 59_000), true);
    assert.equal(m.valid(n, t + 60_000 * 2), false);
    assert.equal(new NonceMint('another-secret-16+chars', 60_000).valid(n, t), false);
    assert.equal(m.valid(`${n.slice(0, 10)}${n[10] === 'A' ? 'B' : 'A'}${n.slice(11)}`, t), false, 'tampered MAC');
  });
});

const op = (subject: string, when?: 'fresh' | 'replay'): CounterOp => ({
  rule: 'r',
  kind: 'ip',
  subject,
  increment: 1,
  windowMs: 60_000,
  threshold: 100,
  ttls: [60_000],
  memoryMs: 60_000,
  reason: 'test',
  ...(when ? { when } : {}),
});

for (const kind of ['memory', 'redis'] as const) {
  describe(`fds ${kind} store: single-use claims`, () => {
    let store: FdsStore;
    const prefix = testPrefix();
    before(async () => {
      store =
        kind === 'memory'
          ? new MemoryStore()
          : new RedisStore(fdsConfigSchema.parse({ store: 'redis', redis: { url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 1000 } })!.redis!, pino({ level: 'silent' }), { onError: () => undefined });
      assert.equal(await store.ready(5000), true, 'store connects');
    });
    after(async () => {
      await store.close();
      await cleanup(prefix);
    });

    it('claims once; a second claim of the same key is a replay and sets nothing else', async () => {
      const k = randomBytes(6).toString('hex');
      const exp = Date.now() + 30_000;
      assert.equal((await store.evaluate([], [], [{ key: `a${k}`, expiresAt: exp, minTtlMs: 1000 }])).replayed, undefined);
      const again = await store.evaluate([], [], [{ key: `b${k}`, expiresAt: exp, minTtlMs: 1000 }, { key: `a${k}`, expiresAt: exp, minTtlMs: 1000 }]);
      assert.equal(again.replayed, true);
      // b was not burned by the replayed call.
      assert.equal((await store.evaluate([], [], [{ key: `b${k}`, expiresAt: exp, minTtlMs: 1000 }])).replayed, undefined);
    });

    it('applies fresh-only and replay-only counter ops by the outcome', async () => {
      const ip = `203.0.113.${1 + (randomBytes(1)[0]! % 250)}`;
      const k = randomBytes(6).toString('hex');
      const claims = [{ key: k, expiresAt: Date.now() + 30_000, minTtlMs: 1000 }];
      await store.evaluate([], [op(`${ip}f`, 'fresh'), op(`${ip}r`, 'replay')], claims);
      await store.evaluate([], [op(`${ip}f`, 'fresh'), op(`${ip}r`, 'replay')], claims);
      const rules = [{ name: 'r', windowMs: 60_000 }];
      assert.equal((await store.inspect('ip', `${ip}f`, rules)).counters[0]!.count, 1);
      assert.equal((await store.inspect('ip', `${ip}r`, rules)).counters[0]!.count, 1);
    });

    it('burns nothing for a blocked subject', async () => {
      const ip = `198.18.0.${1 + (randomBytes(1)[0]! % 250)}`;
      await store.block({ kind: 'ip', subject: ip, reason: 't', createdBy: 'admin:t', createdAt: Date.now(), ttlMs: 60_000, expiresAt: Date.now() + 60_000 });
      const k = randomBytes(6).toString('hex');
      const claims = [{ key: k, expiresAt: Date.now() + 30_000, minTtlMs: 1000 }];
      assert.ok((await store.evaluate([{ kind: 'ip', subject: ip }], [], claims)).blocked);
      assert.equal((await store.evaluate([], [], claims)).replayed, undefined, 'still unused');
    });

    if (kind === 'redis') {
      it('sets the TTL by the Redis clock, never below the minimum (an already past expiry still records)', async () => {
        const k = randomBytes(6).toString('hex');
        await store.evaluate([], [], [{ key: k, expiresAt: Date.now() - 60_000, minTtlMs: 5000 }]);
        const r = new Redis(REDIS_URL);
        const ttl = await r.pttl(`${prefix}{fds}:j:${k}`);
        r.disconnect();
        assert.ok(ttl > 0 && ttl <= 5000, `ttl ${ttl}`);
      });
    } else {
      it('refuses new claims when full instead of evicting (which would allow a replay)', async () => {
        const small = new MemoryStore(Date.now, 1000);
        const exp = Date.now() + 30_000;
        let refused = false;
        for (let i = 0; i < 20 && !refused; i++) {
          refused = await small.evaluate([], [], [{ key: `k${i}`, expiresAt: exp, minTtlMs: 1000 }]).then(
            () => false,
            () => true,
          );
        }
        assert.equal(refused, true);
        assert.equal((await small.evaluate([], [], [{ key: 'k0', expiresAt: exp, minTtlMs: 1000 }])).replayed, true, 'old claims kept');
        await small.close();
      });
    }
  });
}
