/**
 * DPoP proof verification per RFC 9449 §4.3
 * (https://www.rfc-editor.org/rfc/rfc9449#section-4.3), independent of the
 * stage interface. The replay check is not here: the caller burns the
 * returned jti once every other check of the route has passed.
 */
import { createHash } from 'node:crypto';
import { isJwsAlgorithm, keyFits, verifySignature } from './algorithms.js';
import { parseCompactJws } from './jws.js';
import { normaliseHtu } from './htu.js';
import type { ProofKeyCache } from './key-cache.js';
import type { NonceMint } from './nonce.js';
import { proofFailure, type ProofResult } from './proof-result.js';

export interface DpopOptions {
  readonly algorithms: ReadonlySet<string>;
  /** How far iat may lie in the past (s). */
  readonly maxAgeSec: number;
  /** Allowed clock difference for iat in the future, and slack on the age (s). */
  readonly skewSec: number;
  readonly maxBytes: number;
  readonly maxJtiLength: number;
  /** Set when the route requires server nonces. */
  readonly nonce: NonceMint | undefined;
}

export interface DpopRequest {
  /** The DPoP header value (undefined when absent). */
  readonly proof: string | undefined;
  readonly method: string;
  /** Normalised request URL (see htu.ts). */
  readonly htu: string;
  /** The access token presented with the proof, and its `cnf.jkt` when bound. */
  readonly accessToken?: string;
  readonly boundJkt?: string;
}

/** base64url(SHA-256(token)), the `ath` a proof carries for its access token. */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

export function verifyDpop(req: DpopRequest, o: DpopOptions, keys: ProofKeyCache, now = Date.now()): ProofResult {
  const raw = req.proof;
  if (raw === undefined || raw === '') return proofFailure('proof_missing', 'no DPoP header', 'invalid_request');
  // Envoy joins repeated headers with commas; a JWS has none, so a comma means two proofs (§4.3 check 1).
  if (raw.includes(',')) return proofFailure('proof_multiple', 'more than one DPoP header');
  const parsed = parseCompactJws(raw, o.maxBytes);
  if (!parsed.ok) return proofFailure(parsed.reason === 'token_too_large' ? 'proof_too_large' : 'proof_malformed', parsed.detail);
  const { header, payload } = parsed.jws;
  const typ = header['typ'];
  if (typeof typ !== 'string' || typ.toLowerCase() !== 'dpop+jwt') return proofFailure('proof_wrong_typ', `typ ${JSON.stringify(typ)} is not dpop+jwt`);
  const alg = header['alg'];
  if (!isJwsAlgorithm(alg) || !o.algorithms.has(alg)) return proofFailure('proof_alg_not_allowed', `alg ${JSON.stringify(alg)} is not one of ${[...o.algorithms].join(' ')}`);
  const jwk = keys.get(header['jwk']);
  if (!jwk.ok) return proofFailure(jwk.reason === 'private_jwk' ? 'proof_private_jwk' : 'proof_invalid_jwk', jwk.detail);
  if (!keyFits(alg, jwk.key)) return proofFailure('proof_invalid_jwk', `jwk does not fit alg ${alg}`);
  if (!verifySignature(alg, jwk.key, parsed.jws.signingInput, parsed.jws.signature)) return proofFailure('proof_bad_signature', 'proof signature does not verify with its jwk');
  const jti = payload['jti'];
  if (typeof jti !== 'string' || jti === '') return proofFailure('proof_missing_jti', 'proof has no jti');
  if (jti.length > o.maxJtiLength) return proofFailure('proof_malformed', `jti is longer than ${o.maxJtiLength} characters`);
  if (payload['htm'] !== req.method) return proofFailure('proof_wrong_method', `htm ${JSON.stringify(payload['htm'])} is not ${req.method}`);
  const htu = typeof payload['htu'] === 'string' ? normaliseHtu(payload['htu']) : undefined;
  if (htu === undefined || htu !== req.htu) return proofFailure('proof_wrong_url', `htu ${JSON.stringify(payload['htu'])} does not name ${req.htu}`);
  const iat = payload['iat'];
  if (typeof iat !== 'number' || !Number.isFinite(iat)) return proofFailure('proof_malformed', 'proof has no numeric iat');
  const nowSec = now / 1000;
  if (iat > nowSec + o.skewSec) return proofFailure('proof_iat_future', `iat ${iat} is ahead of the server clock (${Math.floor(nowSec)}) by more than ${o.skewSec}s`);
  if (iat < nowSec - o.maxAgeSec - o.skewSec) return proofFailure('proof_iat_expired', `iat ${iat} is older than ${o.maxAgeSec}s (+${o.skewSec}s skew)`);
  if (o.nonce !== undefined && !o.nonce.valid(payload['nonce'], now)) {
    return proofFailure('use_dpop_nonce', payload['nonce'] === undefined ? 'proof carries no nonce' : 'proof nonce is unknown or stale', 'use_dpop_nonce');
  }
  if (req.accessToken !== undefined) {
    if (payload['ath'] !== accessTokenHash(req.accessToken)) return proofFailure('proof_ath_mismatch', 'ath does not hash the presented access token');
    if (req.boundJkt !== undefined && req.boundJkt !== jwk.thumbprint) return proofFailure('proof_key_mismatch', 'proof key is not the one the access token is bound to (cnf.jkt)', 'invalid_token');
  }
  return {
    ok: true,
    proof: { scope: jwk.thumbprint, keyId: jwk.thumbprint, jti, expiresAt: Math.ceil((iat + o.maxAgeSec + o.skewSec) * 1000), claims: payload },
  };
}
