/**
 * Device credentials: a short-lived JWT Passgate signs at registration (and
 * re-issues on rotation) that carries everything the hot path needs, so a
 * signed request costs no key lookup: the device's public key (`cnf.jwk`) and
 * its RFC 7638 thumbprint (`cnf.jkt`), the device id, platform, attestation
 * level, the user it was registered for, and the expiry. The algorithm is
 * pinned (ES256); the header's `alg` is compared, never obeyed.
 *
 * Verified credentials are cached (by the credential text) with their
 * imported KeyObject, bounded by entries and bytes: a device's second
 * request costs one map lookup and one signature verification.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { LRUCache } from 'lru-cache';
import { byteLru, stringBytes } from '../resilience/byte-lru.js';
import { algorithmOfKey, type SignatureAlgorithm } from './message-signature.js';
import { parseCompactJws } from './compact-jws.js';

export const CREDENTIAL_TYP = 'device-credential+jwt';
const HEADER_ALG = 'ES256';

export interface DeviceClaims {
  readonly deviceId: string;
  readonly platform: string;
  readonly attestation: string;
  /** The user the device was registered for, when the authority named one. */
  readonly user: string | undefined;
  readonly jwk: JsonWebKey;
  readonly jkt: string;
}

export interface VerifiedCredential extends DeviceClaims {
  readonly key: KeyObject;
  readonly alg: SignatureAlgorithm;
  /** Epoch seconds. */
  readonly iat: number;
  readonly exp: number;
}

export type CredentialResult =
  | { readonly ok: true; readonly credential: VerifiedCredential }
  | { readonly ok: false; readonly reason: string; readonly detail: string; readonly expired?: VerifiedCredential };

/** RFC 7638 thumbprint of a public EC (P-256) or OKP (Ed25519) JWK; undefined for anything else. */
export function jwkThumbprint(jwk: JsonWebKey): string | undefined {
  let canonical: string;
  if (jwk.kty === 'EC' && jwk.crv === 'P-256' && typeof jwk.x === 'string' && typeof jwk.y === 'string') canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  else if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519' && typeof jwk.x === 'string') canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
  else return undefined;
  return createHash('sha256').update(canonical).digest('base64url');
}

/** Imports a device's public JWK (P-256 or Ed25519 only; a private member is refused). */
export function importDeviceKey(jwk: unknown): { ok: true; key: KeyObject; jwk: JsonWebKey; jkt: string; alg: SignatureAlgorithm } | { ok: false; detail: string } {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return { ok: false, detail: 'publicKey must be a JWK object' };
  const j = jwk as JsonWebKey;
  if (j.d !== undefined) return { ok: false, detail: 'publicKey carries a private part (d); send the public key only' };
  const pub: JsonWebKey = j.kty === 'EC' ? { kty: 'EC', crv: j.crv, x: j.x, y: j.y } : { kty: j.kty, crv: j.crv, x: j.x };
  const jkt = jwkThumbprint(pub);
  if (jkt === undefined) return { ok: false, detail: 'publicKey must be an EC P-256 or OKP Ed25519 JWK' };
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pub, format: 'jwk' });
  } catch (err) {
    return { ok: false, detail: `publicKey does not import: ${(err as Error).message}` };
  }
  const alg = algorithmOfKey(key);
  if (alg === undefined) return { ok: false, detail: 'publicKey is not P-256 or Ed25519' };
  // One key, one jkt: Node also imports padded base64url or other trailing bits, each a new thumbprint.
  const canonical = key.export({ format: 'jwk' });
  if (canonical.x !== pub.x || canonical.y !== pub.y) return { ok: false, detail: 'publicKey x/y are not in canonical form (unpadded base64url of the fixed-length coordinates, RFC 7518 §6)' };
  return { ok: true, key, jwk: pub, jkt, alg };
}

const b64json = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** Signs and verifies device credentials with one ES256 key; `kid` is the key's thumbprint so a rotation of it is visible. */
export class CredentialAuthority {
  readonly kid: string;
  private readonly publicKey: KeyObject;
  private readonly cache: LRUCache<string, VerifiedCredential>;

  constructor(
    private readonly privateKey: KeyObject,
    readonly issuer: string,
    readonly ttlSec: number,
    cache: { maxEntries: number; maxBytes: number },
  ) {
    if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new Error('the credential key must be a P-256 (ES256) private key');
    this.publicKey = createPublicKey(privateKey);
    this.kid = jwkThumbprint(this.publicKey.export({ format: 'jwk' }))!;
    this.cache = byteLru<string, VerifiedCredential>({ max: cache.maxEntries, maxBytes: cache.maxBytes, sizeOf: (v) => 600 + stringBytes(v.deviceId) + stringBytes(v.user ?? '') });
  }

  static fromPem(pem: string, issuer: string, ttlSec: number, cache: { maxEntries: number; maxBytes: number }): CredentialAuthority {
    return new CredentialAuthority(createPrivateKey(pem), issuer, ttlSec, cache);
  }

  /** A key of this process only (development: credentials die with the process and no other replica accepts them). */
  static ephemeral(issuer: string, ttlSec: number, cache: { maxEntries: number; maxBytes: number }): CredentialAuthority {
    return new CredentialAuthority(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, issuer, ttlSec, cache);
  }

  issue(d: DeviceClaims, nowMs = Date.now()): { token: string; expiresAt: number } {
    const iat = Math.floor(nowMs / 1000);
    const exp = iat + this.ttlSec;
    const header = b64json({ alg: HEADER_ALG, typ: CREDENTIAL_TYP, kid: this.kid });
    const payload = b64json({
      iss: this.issuer,
      ...(d.user !== undefined ? { sub: d.user } : {}),
      dev: d.deviceId,
      plt: d.platform,
      att: d.attestation,
      cnf: { jkt: d.jkt, jwk: d.jwk },
      iat,
      exp,
    });
    const input = `${header}.${payload}`;
    const sig = cryptoSign('sha256', Buffer.from(input), { key: this.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
    return { token: `${input}.${sig}`, expiresAt: exp * 1000 };
  }

  /** Verifies (or finds cached) a credential; an expired one is reported with its claims, so FDS can count it against the device. */
  verify(token: string | undefined, nowMs = Date.now(), skewSec = 0): CredentialResult {
    if (token === undefined || token === '') return { ok: false, reason: 'credential_missing', detail: 'no device credential header' };
    let c = this.cache.get(token);
    if (c === undefined) {
      const r = this.verifyUncached(token);
      if (!r.ok) return r;
      c = r.credential;
      this.cache.set(token, c);
    }
    if (c.exp + skewSec <= nowMs / 1000) return { ok: false, reason: 'credential_expired', detail: `device credential expired at ${c.exp} (now ${Math.floor(nowMs / 1000)}); rotate it`, expired: c };
    return { ok: true, credential: c };
  }

  private verifyUncached(token: string): CredentialResult {
    const bad = (detail: string): CredentialResult => ({ ok: false, reason: 'credential_invalid', detail });
    const jws = parseCompactJws(token, 4096);
    if (typeof jws === 'string') return bad(`device credential ${jws}`);
    const { header, claims } = jws;
    if (header['alg'] !== HEADER_ALG || header['typ'] !== CREDENTIAL_TYP) return bad(`device credential must be alg ${HEADER_ALG}, typ ${CREDENTIAL_TYP}`);
    if (header['kid'] !== this.kid) return { ok: false, reason: 'credential_unknown_key', detail: 'device credential was signed by another key (rotated credential key, or another deployment): register again' };
    const ok = cryptoVerify('sha256', jws.input, { key: this.publicKey, dsaEncoding: 'ieee-p1363' }, jws.signature);
    if (!ok) return bad('device credential signature does not verify');
    const cnf = claims['cnf'] as { jkt?: unknown; jwk?: unknown } | undefined;
    const { dev, plt, att, sub, iat, exp, iss } = claims as Record<string, unknown>;
    if (iss !== this.issuer || typeof dev !== 'string' || typeof plt !== 'string' || typeof att !== 'string' || typeof iat !== 'number' || typeof exp !== 'number' || (sub !== undefined && typeof sub !== 'string') || typeof cnf !== 'object' || cnf === null)
      return bad('device credential claims are incomplete');
    const imported = importDeviceKey(cnf.jwk);
    if (!imported.ok || imported.jkt !== cnf.jkt) return bad('device credential cnf.jwk does not match cnf.jkt');
    return {
      ok: true,
      credential: { deviceId: dev, platform: plt, attestation: att, user: sub as string | undefined, jwk: imported.jwk, jkt: imported.jkt, key: imported.key, alg: imported.alg, iat, exp },
    };
  }

  get cached(): number {
    return this.cache.size;
  }
}
