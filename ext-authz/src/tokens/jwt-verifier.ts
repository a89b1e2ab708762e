/**
 * Bearer JWT verification, independent of the stage interface: a token
 * string and the issuers a route accepts in, a typed result out. Sync when
 * the signing key is cached; a Promise only when a JWKS must be fetched.
 *
 * The algorithm is never taken from the token alone: it must be one the
 * issuer's config pins, must fit the key's type (and the key's own `alg`),
 * and HS* / `none` are not known names (see algorithms.ts).
 */
import { isJwsAlgorithm, keyFits, verifySignature } from './algorithms.js';
import { parseCompactJws, type ParsedJws } from './jws.js';
import { audienceMatches, checkTimes, claimMatches } from './claims.js';
import type { IssuerConfig } from './config.js';
import type { KeyLookup, KeySet } from './key-set.js';
import type { VerifiedTokenCache } from './token-cache.js';

export interface IssuerRuntime {
  readonly name: string;
  readonly config: IssuerConfig;
  readonly keys: KeySet;
  readonly algorithms: ReadonlySet<string>;
}

export interface VerifiedJwt {
  readonly issuer: IssuerRuntime;
  readonly header: Readonly<Record<string, unknown>>;
  readonly claims: Readonly<Record<string, unknown>>;
}

export type JwtFailure = {
  readonly ok: false;
  /** 401 reason for the client and the metrics. */
  readonly reason: string;
  readonly detail: string;
  /** The keys could not be had at all (JWKS down, never fetched): the route's failure mode applies. */
  readonly unavailable?: boolean;
};
export type JwtResult = { readonly ok: true; readonly token: VerifiedJwt } | JwtFailure;

function no(reason: string, detail: string, unavailable = false): JwtFailure {
  return unavailable ? { ok: false, reason, detail, unavailable } : { ok: false, reason, detail };
}

export function verifyJwt(token: string, issuers: readonly IssuerRuntime[], now = Date.now(), cache?: VerifiedTokenCache<VerifiedJwt>): JwtResult | Promise<JwtResult> {
  // A bearer token is reused for many requests: its signature is verified once, its claims on every request.
  const hit = cache?.get(token);
  if (hit !== undefined && issuers.includes(hit.issuer)) return checkClaims(hit, now);
  const maxBytes = issuers.length === 1 ? issuers[0]!.config.maxTokenBytes : Math.max(...issuers.map((i) => i.config.maxTokenBytes));
  const parsed = parseCompactJws(token, maxBytes);
  if (!parsed.ok) return no(parsed.reason, parsed.detail);
  const jws = parsed.jws;
  // Picks the issuer config by the unverified `iss`; nothing is trusted until that issuer's key verifies it.
  const iss = jws.payload['iss'];
  const issuer = issuers.find((i) => i.config.issuer === iss);
  if (issuer === undefined) return no('unknown_issuer', `iss ${JSON.stringify(iss)} is not an issuer this route accepts`);
  if (token.length > issuer.config.maxTokenBytes) return no('token_too_large', `token is ${token.length} bytes, ${issuer.name} allows ${issuer.config.maxTokenBytes}`);
  const alg = jws.header['alg'];
  if (!isJwsAlgorithm(alg) || !issuer.algorithms.has(alg)) return no('alg_not_allowed', `alg ${JSON.stringify(alg)} is not pinned for issuer ${issuer.name}`);
  if (jws.header['crit'] !== undefined) return no('malformed_header', 'crit header parameters are not supported');
  const typ = jws.header['typ'];
  if (issuer.config.typ && !(typeof typ === 'string' && issuer.config.typ.includes(typ.toLowerCase()))) return no('wrong_typ', `typ ${JSON.stringify(typ)} is not one of ${issuer.config.typ.join(', ')}`);
  if (typeof typ === 'string' && typ.toLowerCase() === 'dpop+jwt') return no('wrong_typ', 'a DPoP proof is not an access token');
  const kid = jws.header['kid'];
  if (kid !== undefined && typeof kid !== 'string') return no('malformed_header', 'kid is not a string');
  const keys = issuer.keys.lookup(kid, now);
  if (Array.isArray(keys)) return finish(token, jws, issuer, alg, keys as KeyLookup, kid, now, cache);
  return (keys as Promise<KeyLookup>).then((k) => finish(token, jws, issuer, alg, k, kid, Date.now(), cache));
}

function finish(token: string, jws: ParsedJws, issuer: IssuerRuntime, alg: string & Parameters<typeof keyFits>[0], keys: KeyLookup, kid: string | undefined, now: number, cache: VerifiedTokenCache<VerifiedJwt> | undefined): JwtResult {
  if (keys.length === 0) {
    if (issuer.keys.size === 0 && issuer.keys.lastError !== undefined) return no('jwks_unavailable', `issuer ${issuer.name}: no keys (${issuer.keys.lastError})`, true);
    return no('unknown_key', `issuer ${issuer.name} has no key ${kid === undefined ? '(token names no kid)' : JSON.stringify(kid)}`);
  }
  let verified = false;
  for (const k of keys) {
    if (k.alg !== undefined && k.alg !== alg) continue;
    if (!keyFits(alg, k.key)) continue;
    if (verifySignature(alg, k.key, jws.signingInput, jws.signature)) {
      verified = true;
      break;
    }
  }
  if (!verified) return no('bad_signature', `signature does not verify with issuer ${issuer.name}'s ${alg} key ${kid ?? ''}`.trim());
  const v: VerifiedJwt = { issuer, header: jws.header, claims: jws.payload };
  const r = checkClaims(v, now);
  if (r.ok && cache) cache.set(token, v, now);
  return r;
}

/** Everything after the signature: checked on every request, cached or not (time moves). */
function checkClaims(v: VerifiedJwt, now: number): JwtResult {
  const c = v.issuer.config;
  const p = v.claims;
  const time = checkTimes(p, Math.floor(now / 1000), c.clockSkew / 1000, true);
  if (time) return no(time.reason, time.detail);
  if (!audienceMatches(p['aud'], c.audience)) return no('wrong_audience', `aud ${JSON.stringify(p['aud'])} names none of ${c.audience.join(', ')}`);
  for (const name of c.requiredClaims) if (p[name] === undefined) return no('missing_claim', `claim ${name} is required`);
  for (const name in c.claims) if (!claimMatches(p[name], c.claims[name]!)) return no('claim_mismatch', `claim ${name} has none of the accepted values`);
  return { ok: true, token: v };
}
