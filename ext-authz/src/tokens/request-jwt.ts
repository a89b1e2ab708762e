/**
 * Request JWTs (the SSR/web flow): a fresh JWT per request, signed by a
 * client key registered in `tokens.clients` (looked up by `kid`), short-lived
 * (`exp - iat` at most `maxLifetimeSec`) and bound to the method and URL
 * like DPoP (`htm`, `htu`). Independent of the stage interface.
 */
import { isJwsAlgorithm, keyFits, verifySignature } from './algorithms.js';
import { parseCompactJws, type ParsedJws } from './jws.js';
import { normaliseHtu } from './htu.js';
import { audienceMatches } from './claims.js';
import type { ClientConfig } from './config.js';
import type { KeyLookup, KeySet } from './key-set.js';
import { proofFailure, type ProofResult } from './proof-result.js';

export interface ClientRuntime {
  readonly name: string;
  readonly issuer: string;
  readonly config: ClientConfig;
  readonly keys: KeySet;
  readonly algorithms: ReadonlySet<string>;
}

export interface RequestJwtOptions {
  readonly typ: string;
  readonly maxLifetimeSec: number;
  readonly skewSec: number;
  readonly maxBytes: number;
  readonly maxJtiLength: number;
}

export interface RequestJwtRequest {
  readonly token: string | undefined;
  readonly method: string;
  readonly htu: string;
}

export function verifyRequestJwt(req: RequestJwtRequest, clients: readonly ClientRuntime[], o: RequestJwtOptions, now = Date.now()): ProofResult | Promise<ProofResult> {
  const raw = req.token;
  if (raw === undefined || raw === '') return proofFailure('proof_missing', 'no request JWT', 'invalid_request');
  if (raw.includes(',')) return proofFailure('proof_multiple', 'more than one request JWT header');
  const parsed = parseCompactJws(raw, o.maxBytes);
  if (!parsed.ok) return proofFailure(parsed.reason === 'token_too_large' ? 'proof_too_large' : 'proof_malformed', parsed.detail);
  const { header, payload } = parsed.jws;
  const typ = header['typ'];
  if (typeof typ !== 'string' || typ.toLowerCase() !== o.typ) return proofFailure('proof_wrong_typ', `typ ${JSON.stringify(typ)} is not ${o.typ}`);
  if (header['jwk'] !== undefined || header['jku'] !== undefined || header['x5u'] !== undefined || header['x5c'] !== undefined) {
    return proofFailure('proof_malformed', 'a request JWT must not carry its own key (jwk/jku/x5u/x5c): keys come from tokens.clients');
  }
  const client = clients.find((c) => c.issuer === payload['iss']);
  if (client === undefined) return proofFailure('proof_unknown_client', `iss ${JSON.stringify(payload['iss'])} is not a client this route accepts`);
  const alg = header['alg'];
  if (!isJwsAlgorithm(alg) || !client.algorithms.has(alg)) return proofFailure('proof_alg_not_allowed', `alg ${JSON.stringify(alg)} is not pinned for client ${client.name}`);
  const kid = header['kid'];
  if (typeof kid !== 'string' || kid === '') return proofFailure('proof_malformed', 'a request JWT names its key with kid');
  const keys = client.keys.lookup(kid, now);
  if (Array.isArray(keys)) return finish(req, parsed.jws, client, alg, keys as KeyLookup, o, now);
  return (keys as Promise<KeyLookup>).then((k) => finish(req, parsed.jws, client, alg, k, o, Date.now()));
}

function finish(req: RequestJwtRequest, jws: ParsedJws, client: ClientRuntime, alg: Parameters<typeof keyFits>[0], keys: KeyLookup, o: RequestJwtOptions, now: number): ProofResult {
  if (keys.length === 0) {
    if (client.keys.size === 0 && client.keys.lastError !== undefined) return { ...proofFailure('jwks_unavailable', `client ${client.name}: no keys (${client.keys.lastError})`), unavailable: true };
    return proofFailure('proof_unknown_key', `client ${client.name} has no key ${JSON.stringify(jws.header['kid'])}`);
  }
  if (!keys.some((k) => (k.alg === undefined || k.alg === alg) && keyFits(alg, k.key) && verifySignature(alg, k.key, jws.signingInput, jws.signature))) {
    return proofFailure('proof_bad_signature', `signature does not verify with client ${client.name}'s key ${String(jws.header['kid'])}`);
  }
  const p = jws.payload;
  const iat = p['iat'];
  const exp = p['exp'];
  if (typeof iat !== 'number' || !Number.isFinite(iat) || typeof exp !== 'number' || !Number.isFinite(exp)) return proofFailure('proof_malformed', 'a request JWT needs numeric iat and exp');
  if (exp <= iat || exp - iat > o.maxLifetimeSec) return proofFailure('proof_lifetime_too_long', `exp - iat is ${exp - iat}s; at most ${o.maxLifetimeSec}s is allowed`);
  const nowSec = now / 1000;
  if (iat > nowSec + o.skewSec) return proofFailure('proof_iat_future', `iat ${iat} is ahead of the server clock by more than ${o.skewSec}s`);
  if (nowSec - o.skewSec >= exp) return proofFailure('proof_expired', `request JWT expired at ${exp}`);
  const jti = p['jti'];
  if (typeof jti !== 'string' || jti === '') return proofFailure('proof_missing_jti', 'request JWT has no jti');
  if (jti.length > o.maxJtiLength) return proofFailure('proof_malformed', `jti is longer than ${o.maxJtiLength} characters`);
  if (p['htm'] !== req.method) return proofFailure('proof_wrong_method', `htm ${JSON.stringify(p['htm'])} is not ${req.method}`);
  const htu = typeof p['htu'] === 'string' ? normaliseHtu(p['htu']) : undefined;
  if (htu === undefined || htu !== req.htu) return proofFailure('proof_wrong_url', `htu ${JSON.stringify(p['htu'])} does not name ${req.htu}`);
  if (client.config.audience && !audienceMatches(p['aud'], client.config.audience)) return proofFailure('proof_wrong_audience', `aud names none of ${client.config.audience.join(', ')}`);
  return { ok: true, proof: { scope: `client:${client.name}`, keyId: client.name, jti, expiresAt: Math.ceil((exp + o.skewSec) * 1000), claims: p } };
}
