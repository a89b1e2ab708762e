/**
 * The JWS algorithms Passgate verifies, with node:crypto on cached
 * KeyObjects (no WebCrypto import per token). Only asymmetric algorithms:
 * HS* is never accepted, so a public key can never be used as an HMAC
 * secret, and `none` is not a name this table knows.
 */
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';

export const JWS_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA', 'Ed25519'] as const;
export type JwsAlgorithm = (typeof JWS_ALGORITHMS)[number];

interface AlgSpec {
  readonly hash: string | null;
  readonly keyType: 'ec' | 'rsa' | 'ed25519';
  readonly curve?: string;
  readonly pss?: boolean;
}

const SPECS: Record<JwsAlgorithm, AlgSpec> = {
  ES256: { hash: 'sha256', keyType: 'ec', curve: 'prime256v1' },
  ES384: { hash: 'sha384', keyType: 'ec', curve: 'secp384r1' },
  ES512: { hash: 'sha512', keyType: 'ec', curve: 'secp521r1' },
  RS256: { hash: 'sha256', keyType: 'rsa' },
  RS384: { hash: 'sha384', keyType: 'rsa' },
  RS512: { hash: 'sha512', keyType: 'rsa' },
  PS256: { hash: 'sha256', keyType: 'rsa', pss: true },
  PS384: { hash: 'sha384', keyType: 'rsa', pss: true },
  PS512: { hash: 'sha512', keyType: 'rsa', pss: true },
  EdDSA: { hash: null, keyType: 'ed25519' },
  Ed25519: { hash: null, keyType: 'ed25519' },
};

export function isJwsAlgorithm(v: unknown): v is JwsAlgorithm {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(SPECS, v);
}

/** Whether `key` is a public key of the type and curve `alg` needs (an RSA key must not verify ES256...). */
export function keyFits(alg: JwsAlgorithm, key: KeyObject): boolean {
  if (key.type !== 'public') return false;
  const spec = SPECS[alg];
  if (key.asymmetricKeyType !== spec.keyType) return false;
  if (spec.curve !== undefined && key.asymmetricKeyDetails?.namedCurve !== spec.curve) return false;
  if (spec.keyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return false;
  return true;
}

/** Verifies a JWS signature; false (never a throw) for a wrong key type or a malformed signature. */
export function verifySignature(alg: JwsAlgorithm, key: KeyObject, signingInput: string, signature: Buffer): boolean {
  const spec = SPECS[alg];
  try {
    const data = Buffer.from(signingInput, 'latin1');
    if (spec.keyType === 'ec') return cryptoVerify(spec.hash, data, { key, dsaEncoding: 'ieee-p1363' }, signature);
    if (spec.pss) return cryptoVerify(spec.hash, data, { key, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 + (spec.hash === 'sha384' ? 16 : spec.hash === 'sha512' ? 32 : 0) }, signature);
    return cryptoVerify(spec.hash, data, key, signature);
  } catch {
    return false;
  }
}
