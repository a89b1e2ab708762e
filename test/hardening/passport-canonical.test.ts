/** Issue 12 item 7: the consumer library refuses non-canonical base64url in any JWS part. */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { CompactSign } from 'jose';
import { createPassportVerifier } from '../../ext-authz/src/passport/consumer/index.js';
import { buildClaims } from '../../ext-authz/src/passport/claims.js';

const ISS = 'https://passgate.test';
const ed = generateKeyPairSync('ed25519');
const JWKS = { keys: [{ ...(ed.publicKey.export({ format: 'jwk' }) as object), kid: 'ed1', alg: 'EdDSA', use: 'sig' }] };
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

async function token(key: KeyObject = ed.privateKey): Promise<string> {
  const t = Math.floor(Date.now() / 1000);
  const claims = buildClaims({
    issuer: ISS,
    audience: 'orders',
    now: t,
    exp: t + 300,
    jti: 'j-1',
    user: { id: 'u1', source: 'mtls', authMethod: 'mtls', authLevel: 'HIGH', roles: [], scopes: [], created: t, expires: t + 300 },
  });
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader({ alg: 'EdDSA', typ: 'passport+jwt', kid: 'ed1' }).sign(key);
}

/** Same bytes, different spelling: set unused low bits of the last character (when the part has any). */
function respell(part: string): string | undefined {
  const unused = [0, 0, 4, 2][part.length % 4]!;
  if (unused === 0) return undefined;
  const last = ALPHABET.indexOf(part[part.length - 1]!);
  const alt = ALPHABET[last | 1]!;
  return alt === part[part.length - 1] ? ALPHABET[last & ~1] : part.slice(0, -1) + alt;
}

describe('passport consumer: canonical base64url (issue 12 item 7)', () => {
  it('a token whose parts do not re-encode identically is malformed, though its bytes are the same', async () => {
    const verifier = createPassportVerifier({ keys: JWKS, issuer: ISS, audience: 'orders', cacheSize: 0 });
    const good = await token();
    const r0 = await verifier.verify(good);
    assert.ok(r0.ok, JSON.stringify(r0));
    const parts = good.split('.');
    let tried = 0;
    for (let i = 0; i < 3; i++) {
      const alt = respell(parts[i]!);
      if (alt === undefined) continue;
      const variant = [...parts];
      variant[i] = alt.length === parts[i]!.length ? alt : parts[i]!.slice(0, -1) + alt;
      assert.notEqual(variant.join('.'), good);
      assert.deepEqual(Buffer.from(variant[i]!, 'base64url'), Buffer.from(parts[i]!, 'base64url'), 'same decoded bytes');
      const r = await verifier.verify(variant.join('.'));
      assert.equal(r.ok, false, `part ${i} respelled was accepted`);
      if (!r.ok) assert.equal(r.error.code, 'malformed');
      tried++;
    }
    assert.ok(tried >= 1, 'the signature part (64 bytes) always has unused bits');
    // Padding is not base64url either.
    const padded = `${parts[0]}.${parts[1]}.${parts[2]}==`;
    const rp = await verifier.verify(padded);
    assert.equal(rp.ok, false);
  });
});
