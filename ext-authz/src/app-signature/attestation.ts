/**
 * Attestation at registration: who vouches that a device key belongs to a
 * genuine, untampered app instance. Pluggable: a verifier handles one
 * `format` and answers a level (carried into credentials and Passports) or
 * a precise refusal. Shipped:
 *
 * - `offline`: a JWT signed by a configured registration authority (your own
 *   backend, after it has checked the app by whatever means it trusts)
 *   naming the device key's thumbprint. Works with no call to a vendor.
 *
 * Designed, not shipped (docs/app-gateway.md says what each would check):
 * - `apple-app-attest`: the attestation object (CBOR, x5c chain to Apple's
 *   App Attest root, nonce = SHA-256(authData || clientDataHash), rpIdHash =
 *   SHA-256(appId), counter 0, aaguid), the key id = SHA-256 of the
 *   credential public key; later assertions carry a counter that must grow
 *   (checked by app-attest.ts).
 * - `play-integrity`: the integrity token decrypted/verified by Google's
 *   server API (quota-bound: at registration only, never per request), with
 *   requestDetails.nonce = the key thumbprint and the device/app verdicts
 *   mapped to levels.
 */
import { createPublicKey, verify as cryptoVerify, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AppSignatureConfig } from './config.js';
import { parseCompactJws } from './compact-jws.js';

export interface AttestationInput {
  /** The `attestation` object of the registration request. */
  readonly attestation: Readonly<Record<string, unknown>>;
  readonly platform: string;
  /** RFC 7638 thumbprint of the device key being registered. */
  readonly jkt: string;
  readonly jwk: JsonWebKey;
  readonly nowMs: number;
}

export type AttestationResult =
  | {
      readonly ok: true;
      /** Level granted (e.g. `basic`, `strong`). */
      readonly level: string;
      /** Which verifier and authority granted it, for the registry and audit. */
      readonly attestedBy: string;
      /** The user the device is registered for, when the attestation names one. */
      readonly user: string | undefined;
      /** Initial signature counter (App Attest style), 0 when the format has none. */
      readonly counter: number;
    }
  | { readonly ok: false; readonly reason: string; readonly detail: string };

/** The plug-in point: one verifier per attestation `format`. */
export interface AttestationVerifier {
  readonly format: string;
  verify(input: AttestationInput): AttestationResult | Promise<AttestationResult>;
}

interface Authority {
  readonly name: string;
  readonly key: KeyObject;
  readonly alg: 'ES256' | 'EdDSA';
  readonly level: string;
  readonly platforms: ReadonlySet<string>;
  readonly maxAgeSec: number;
}

export const ATTESTATION_TYP = 'device-attestation+jwt';

/** Loads the configured authorities (a bad key is a config error naming the key). */
export function loadAuthorities(config: AppSignatureConfig, path = 'appSignature.registration.authorities'): Map<string, Authority> {
  const out = new Map<string, Authority>();
  for (const [name, a] of Object.entries(config.registration.authorities)) {
    let key: KeyObject;
    try {
      key = createPublicKey(a.publicKey ?? readFileSync(a.publicKeyFile!, 'utf8'));
    } catch (err) {
      throw new Error(`${path}.${name}: the public key does not load (${(err as Error).message}); give an SPKI PEM of a P-256 or Ed25519 key`);
    }
    const alg = key.asymmetricKeyType === 'ed25519' ? 'EdDSA' : key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? 'ES256' : undefined;
    if (alg === undefined) throw new Error(`${path}.${name}: the public key must be P-256 or Ed25519`);
    out.set(name, { name, key, alg, level: a.level, platforms: new Set(a.platforms), maxAgeSec: a.maxAge / 1000 });
  }
  return out;
}

const refuse = (reason: string, detail: string): AttestationResult => ({ ok: false, reason, detail });

/** `offline`: `{ format: "offline", authority: "<name>", token: "<JWT>" }`, the JWT's alg pinned by the authority's key type. */
export function offlineVerifier(authorities: ReadonlyMap<string, Authority>): AttestationVerifier {
  return {
    format: 'offline',
    verify({ attestation, platform, jkt, nowMs }) {
      const name = attestation['authority'];
      const token = attestation['token'];
      const a = typeof name === 'string' ? authorities.get(name) : undefined;
      if (a === undefined) return refuse('attestation_unknown_authority', `attestation.authority ${JSON.stringify(name)} is not a configured registration authority`);
      if (typeof token !== 'string') return refuse('attestation_invalid', 'attestation.token must be a JWT of at most 4096 bytes');
      const jws = parseCompactJws(token, 4096);
      if (typeof jws === 'string') return refuse('attestation_invalid', `attestation.token ${jws}`);
      const { header, claims } = jws;
      if (header['alg'] !== a.alg || header['typ'] !== ATTESTATION_TYP) return refuse('attestation_invalid', `attestation.token must be alg ${a.alg}, typ ${ATTESTATION_TYP} for authority ${a.name}`);
      const ok = a.alg === 'EdDSA' ? cryptoVerify(null, jws.input, a.key, jws.signature) : cryptoVerify('sha256', jws.input, { key: a.key, dsaEncoding: 'ieee-p1363' }, jws.signature);
      if (!ok) return refuse('attestation_bad_signature', `attestation.token is not signed by authority ${a.name}`);
      if (claims['jkt'] !== jkt) return refuse('attestation_key_mismatch', 'attestation.token jkt is not the thumbprint of the key being registered');
      if (claims['platform'] !== platform) return refuse('attestation_platform_mismatch', `attestation.token platform ${JSON.stringify(claims['platform'])} is not ${platform}`);
      if (!a.platforms.has(platform)) return refuse('attestation_platform_not_allowed', `authority ${a.name} may not vouch for ${platform}`);
      const iat = claims['iat'];
      const now = nowMs / 1000;
      if (typeof iat !== 'number' || iat > now + 5 || iat < now - a.maxAgeSec) return refuse('attestation_stale', `attestation.token iat must be within the last ${a.maxAgeSec}s`);
      const sub = claims['sub'];
      if (sub !== undefined && (typeof sub !== 'string' || sub === '' || sub.length > 256)) return refuse('attestation_invalid', 'attestation.token sub must be a user id string');
      return { ok: true, level: a.level, attestedBy: `offline:${a.name}`, user: sub as string | undefined, counter: 0 };
    },
  };
}
