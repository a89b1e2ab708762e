/**
 * `passgate/passport`: verify Passports in the services behind the gateway.
 *
 *   const verifier = createPassportVerifier({ jwksUrl, issuer, audience });
 *   const r = await verifier.verify(req.headers['x-passport']);
 *   if (!r.ok) return reply(401, r.error.code);
 *   r.passport.user.roles ...
 *
 * Security choices: only EdDSA and ES256 are accepted, and each key only with
 * its own `alg` (no `none`, no HS/RS confusion); `typ`, `iss`, `aud`, `exp`
 * and `iat` are checked; the JWKS is cached and refetched on an unknown `kid`
 * at most once per `minRefetchIntervalMs`, so forged kids cannot turn the
 * verifier into a JWKS flood. Imports nothing from the service but the model.
 */
import { createPublicKey, verify as verifySignature, type KeyObject } from 'node:crypto';
import { PASSPORT_ALGORITHMS, PASSPORT_TYP, type Passport, type PassportAlgorithm, type PassportClaims } from '../model.js';

export type { Passport, PassportClaims, PassportUser, PassportDevice, PassportAlgorithm, AuthLevel, RelayClaims } from '../model.js';

export type PassportErrorCode =
  | 'missing'
  | 'malformed'
  | 'algorithm_not_allowed'
  | 'unknown_kid'
  | 'bad_signature'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'jwks_unavailable';

export class PassportError extends Error {
  constructor(
    readonly code: PassportErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PassportError';
  }
}

export type VerifyResult = { readonly ok: true; readonly passport: Passport } | { readonly ok: false; readonly error: PassportError };

export interface PublicJwkInput {
  readonly kty?: string;
  readonly crv?: string;
  readonly x?: string;
  readonly y?: string;
  readonly kid?: string;
  readonly alg?: string;
  readonly use?: string;
  readonly [k: string]: unknown;
}

export interface PassportVerifierOptions {
  /** The gateway's JWKS, e.g. http://passgate-admin.passgate:9090/.well-known/jwks.json */
  readonly jwksUrl?: string;
  /** Fixed public keys (a JWKS object or an array of JWKs) instead of a URL. */
  readonly keys?: readonly PublicJwkInput[] | { readonly keys: readonly PublicJwkInput[] };
  readonly issuer: string;
  /** This service's name, as listed in the gateway's passport.audience. */
  readonly audience: string;
  /** Seconds of clock skew allowed on exp/iat (default 5). */
  readonly clockTolerance?: number;
  /** Least time between JWKS refetches caused by an unknown kid (default 30 000 ms). */
  readonly minRefetchIntervalMs?: number;
  /** JWKS request timeout (default 2 000 ms). */
  readonly jwksTimeoutMs?: number;
  /** Verified tokens remembered (by exact token string, until exp); 0 disables (default 1 000). */
  readonly cacheSize?: number;
  /** Bytes of verified tokens (and their claims) remembered at most (default 4 MiB). */
  readonly cacheBytes?: number;
  /** Clock for tests (epoch ms). */
  readonly now?: () => number;
}

export interface PassportVerifier {
  verify(token: string | string[] | undefined | null): Promise<VerifyResult>;
  /** Same, but throws PassportError. */
  verifyOrThrow(token: string | string[] | undefined | null): Promise<Passport>;
  /** JWKS downloads so far (for tests and metrics). */
  readonly jwksFetches: number;
}

const ALLOWED: ReadonlySet<string> = new Set<string>(PASSPORT_ALGORITHMS);
const B64URL = /^[A-Za-z0-9_-]+$/;

/**
 * A base64url part is canonical when decoding and re-encoding gives it back:
 * no padding, no length that cannot occur, no stray bits in the last
 * character. Otherwise two different strings would carry the same token and
 * a cache or a log keyed by the string would be fooled.
 */
function canonicalB64url(part: string): boolean {
  return B64URL.test(part) && Buffer.from(part, 'base64url').toString('base64url') === part;
}
const MAX_TOKEN = 65_536;

interface VerifyKey {
  readonly alg: PassportAlgorithm;
  readonly key: KeyObject;
}

const err = (code: PassportErrorCode, message: string): VerifyResult => ({ ok: false, error: new PassportError(code, message) });

/** A JWK is usable only as a public EdDSA/Ed25519 or ES256/P-256 signing key with a kid and an alg. */
function importJwk(jwk: PublicJwkInput): [string, VerifyKey] | undefined {
  if (typeof jwk.kid !== 'string' || jwk.kid === '' || 'd' in jwk) return undefined;
  if (jwk.use !== undefined && jwk.use !== 'sig') return undefined;
  const alg = jwk.alg;
  if (alg === 'EdDSA' && !(jwk.kty === 'OKP' && jwk.crv === 'Ed25519')) return undefined;
  if (alg === 'ES256' && !(jwk.kty === 'EC' && jwk.crv === 'P-256')) return undefined;
  if (alg !== 'EdDSA' && alg !== 'ES256') return undefined;
  try {
    const key = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, ...(jwk.y !== undefined ? { y: jwk.y } : {}) } as never, format: 'jwk' });
    return [jwk.kid, { alg, key }];
  } catch {
    return undefined;
  }
}

function keyMap(input: readonly PublicJwkInput[]): Map<string, VerifyKey> {
  const map = new Map<string, VerifyKey>();
  for (const jwk of input) {
    const k = typeof jwk === 'object' && jwk !== null ? importJwk(jwk) : undefined;
    if (k) map.set(k[0], k[1]);
  }
  return map;
}

function decodeJson(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === 'string' && v !== '';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStrArr = (v: unknown) => Array.isArray(v) && v.every(isStr);

/** Shape check of the signed claims: a Passport from a buggy or foreign issuer is `malformed`, never half-trusted. */
function claimsProblem(c: Record<string, unknown>): string | undefined {
  if (c['ver'] !== 1) return 'ver must be 1';
  if (!isStr(c['iss']) || !isStr(c['sub']) || !isStr(c['jti'])) return 'iss, sub and jti must be strings';
  if (!(isStr(c['aud']) || (isStrArr(c['aud']) && (c['aud'] as string[]).length > 0))) return 'aud must be a string or a list of strings';
  if (!isNum(c['iat']) || !isNum(c['exp'])) return 'iat and exp must be numbers';
  const u = c['user'];
  if (!isObj(u)) return 'user must be an object';
  if (!isStr(u['id']) || u['id'] !== c['sub'] || !isStr(u['source']) || !isStr(u['authMethod'])) return 'user.id (= sub), user.source and user.authMethod are required';
  if (u['authLevel'] !== 'LOW' && u['authLevel'] !== 'HIGH' && u['authLevel'] !== 'HIGHEST') return 'user.authLevel must be LOW, HIGH or HIGHEST';
  if (!isStrArr(u['roles']) || !isStrArr(u['scopes'])) return 'user.roles and user.scopes must be string lists';
  if (!isNum(u['created']) || !isNum(u['expires'])) return 'user.created and user.expires must be numbers';
  const d = c['device'];
  if (d !== undefined) {
    if (!isObj(d) || !isStr(d['id']) || !isStr(d['type']) || !isNum(d['created']) || !isNum(d['expires'])) return 'device needs id, type, created, expires';
    if ((d['os'] !== undefined && !isStr(d['os'])) || (d['appVersion'] !== undefined && !isStr(d['appVersion']))) return 'device.os and device.appVersion must be strings';
    if ((d['platform'] !== undefined && !isStr(d['platform'])) || (d['attestation'] !== undefined && !isStr(d['attestation']))) return 'device.platform and device.attestation must be strings';
  }
  const r = c['relay'];
  if (r !== undefined && (!isObj(r) || !Object.values(r).every((v) => typeof v === 'string' || typeof v === 'boolean' || isNum(v)))) return 'relay must map names to strings, numbers or booleans';
  if (c['relayMissing'] !== undefined && !isStrArr(c['relayMissing'])) return 'relayMissing must be a string list';
  return undefined;
}

class Verifier implements PassportVerifier {
  private keys: Map<string, VerifyKey> | undefined;
  private etag: string | undefined;
  private jwksText = '';
  private jwksExpiresAt = 0;
  private lastKidRefetch = -Infinity;
  private nextAttemptAt = 0;
  private inflight: Promise<void> | undefined;
  private readonly verified = new Map<string, Passport>();
  jwksFetches = 0;
  private readonly tolerance: number;
  private readonly minRefetch: number;
  private readonly now: () => number;
  private readonly cacheSize: number;
  private readonly cacheBytes: number;
  private cachedBytes = 0;

  constructor(private readonly o: PassportVerifierOptions) {
    if ((o.jwksUrl === undefined) === (o.keys === undefined)) throw new TypeError('createPassportVerifier: pass exactly one of jwksUrl or keys');
    if (!isStr(o.issuer) || !isStr(o.audience)) throw new TypeError('createPassportVerifier: issuer and audience are required');
    this.tolerance = o.clockTolerance ?? 5;
    this.minRefetch = o.minRefetchIntervalMs ?? 30_000;
    this.now = o.now ?? Date.now;
    this.cacheSize = o.cacheSize ?? 1_000;
    this.cacheBytes = o.cacheBytes ?? 4 * 1024 * 1024;
    if (o.keys !== undefined) {
      const list = Array.isArray(o.keys) ? o.keys : (o.keys as { keys: readonly PublicJwkInput[] }).keys;
      this.keys = keyMap(list);
      this.jwksExpiresAt = Infinity;
    }
  }

  async verifyOrThrow(token: string | string[] | undefined | null): Promise<Passport> {
    const r = await this.verify(token);
    if (!r.ok) throw r.error;
    return r.passport;
  }

  async verify(input: string | string[] | undefined | null): Promise<VerifyResult> {
    const token = Array.isArray(input) ? (input.length === 1 ? input[0] : undefined) : input;
    if (token === undefined || token === null || token === '') return err('missing', 'no Passport (or more than one)');
    if (typeof token !== 'string' || token.length > MAX_TOKEN) return err('malformed', 'not a compact JWS string');
    const nowS = this.now() / 1000;
    const cached = this.verified.get(token);
    if (cached !== undefined) {
      if (nowS <= cached.exp + this.tolerance) return { ok: true, passport: cached };
      this.forget(token);
    }
    const parts = token.split('.');
    if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) return err('malformed', 'not a compact JWS (three base64url parts)');
    if (!parts.every(canonicalB64url)) return err('malformed', 'a JWS part is not canonical base64url (it does not re-encode to itself)');
    const header = decodeJson(parts[0]!);
    if (!isObj(header)) return err('malformed', 'JWS header is not a JSON object');
    if (typeof header['alg'] !== 'string' || !ALLOWED.has(header['alg'])) return err('algorithm_not_allowed', `alg ${JSON.stringify(header['alg'])} is not EdDSA or ES256`);
    if (header['crit'] !== undefined) return err('malformed', 'crit header parameters are not supported');
    if (header['typ'] !== PASSPORT_TYP) return err('malformed', `typ must be ${PASSPORT_TYP}`);
    const kid = header['kid'];
    if (!isStr(kid)) return err('malformed', 'JWS header has no kid');

    let key: VerifyKey | undefined;
    try {
      key = await this.keyFor(kid);
    } catch (e) {
      return err('jwks_unavailable', (e as Error).message);
    }
    if (key === undefined) return err('unknown_kid', `no key "${kid}" in the JWKS`);
    if (key.alg !== header['alg']) return err('algorithm_not_allowed', `key "${kid}" is for ${key.alg}, token says ${String(header['alg'])}`);
    // node:crypto directly (synchronous, ~3x faster than WebCrypto); the algorithm comes from the key, never the token.
    const signature = Buffer.from(parts[2]!, 'base64url');
    const signed = Buffer.from(token.slice(0, parts[0]!.length + parts[1]!.length + 1));
    let valid = false;
    if (signature.length === 64) {
      try {
        valid =
          key.alg === 'EdDSA'
            ? verifySignature(null, signed, key.key, signature)
            : verifySignature('sha256', signed, { key: key.key, dsaEncoding: 'ieee-p1363' }, signature);
      } catch {
        valid = false;
      }
    }
    if (!valid) return err('bad_signature', 'signature does not verify');
    let claims: unknown;
    try {
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    } catch {
      return err('malformed', 'payload is not JSON');
    }
    if (!isObj(claims)) return err('malformed', 'payload is not a JSON object');
    const problem = claimsProblem(claims);
    if (problem !== undefined) return err('malformed', problem);
    const c = claims as unknown as PassportClaims;
    if (c.iss !== this.o.issuer) return err('wrong_issuer', `iss is ${c.iss}, expected ${this.o.issuer}`);
    const aud = typeof c.aud === 'string' ? [c.aud] : c.aud;
    if (!aud.includes(this.o.audience)) return err('wrong_audience', `aud ${JSON.stringify(c.aud)} does not include ${this.o.audience}`);
    if (nowS > c.exp + this.tolerance) return err('expired', `expired at ${new Date(c.exp * 1000).toISOString()}`);
    if (c.iat > nowS + this.tolerance) return err('not_yet_valid', `issued in the future (${new Date(c.iat * 1000).toISOString()})`);
    const passport: Passport = { ...c, kid, alg: key.alg };
    if (this.cacheSize > 0) {
      // Bounded by entries and bytes (oldest first out): the token string plus about as much again for the claims.
      const bytes = 4 * token.length + 256;
      while (this.verified.size > 0 && (this.verified.size >= this.cacheSize || this.cachedBytes + bytes > this.cacheBytes)) {
        this.forget(this.verified.keys().next().value!);
      }
      if (bytes <= this.cacheBytes) {
        this.verified.set(token, passport);
        this.cachedBytes += bytes;
      }
    }
    return { ok: true, passport };
  }

  private forget(token: string): void {
    if (this.verified.delete(token)) this.cachedBytes -= 4 * token.length + 256;
  }

  private async keyFor(kid: string): Promise<VerifyKey | undefined> {
    if (this.o.jwksUrl === undefined) return this.keys!.get(kid);
    const now = this.now();
    if (this.keys === undefined) {
      await this.load(now, true);
      return this.keys!.get(kid);
    }
    // Expired per cache-control: refresh in the background, keep verifying with what we have.
    if (now >= this.jwksExpiresAt && now >= this.nextAttemptAt) void this.load(now, false).catch(() => undefined);
    const key = this.keys.get(kid);
    if (key !== undefined) return key;
    if (this.inflight) {
      await this.inflight.catch(() => undefined);
      return this.keys.get(kid);
    }
    if (now - this.lastKidRefetch < this.minRefetch) return undefined;
    this.lastKidRefetch = now;
    await this.load(now, false).catch(() => undefined);
    return this.keys.get(kid);
  }

  /** One download at a time; `must` = no keys yet, so a failure is an error for the caller. */
  private load(now: number, must: boolean): Promise<void> {
    if (this.inflight) return this.inflight;
    if (must && now < this.nextAttemptAt) return Promise.reject(new Error(`JWKS unavailable (retrying after ${new Date(this.nextAttemptAt).toISOString()})`));
    const p = this.download().finally(() => {
      this.inflight = undefined;
    });
    this.inflight = p;
    return p;
  }

  private async download(): Promise<void> {
    this.jwksFetches++;
    const url = this.o.jwksUrl!;
    try {
      const res = await fetch(url, {
        headers: { accept: 'application/json', ...(this.etag && this.keys ? { 'if-none-match': this.etag } : {}) },
        signal: AbortSignal.timeout(this.o.jwksTimeoutMs ?? 2_000),
      });
      const maxAge = /max-age=(\d+)/.exec(res.headers.get('cache-control') ?? '')?.[1];
      const ageMs = Math.min(Math.max(maxAge === undefined ? 300_000 : Number(maxAge) * 1000, 5_000), 3_600_000);
      if (res.status === 304 && this.keys) {
        this.jwksExpiresAt = this.now() + ageMs;
        return;
      }
      if (res.status !== 200) throw new Error(`JWKS ${url} answered HTTP ${res.status}`);
      const body = (await res.json()) as unknown;
      if (!isObj(body) || !Array.isArray(body['keys'])) throw new Error(`JWKS ${url} is not a {"keys": [...]} document`);
      const text = JSON.stringify(body['keys']);
      const changed = text !== this.jwksText;
      this.keys = keyMap(body['keys'] as PublicJwkInput[]);
      this.jwksText = text;
      this.etag = res.headers.get('etag') ?? undefined;
      this.jwksExpiresAt = this.now() + ageMs;
      // A key that left the JWKS must stop vouching for tokens verified with it.
      if (changed) this.verified.clear();
    } catch (e) {
      this.nextAttemptAt = this.now() + 1_000;
      throw e instanceof Error && e.message.startsWith('JWKS') ? e : new Error(`JWKS ${url} unreachable: ${(e as Error).message}`);
    }
  }
}

export function createPassportVerifier(options: PassportVerifierOptions): PassportVerifier {
  return new Verifier(options);
}

/** The Passport header value from a Node request's headers (`x-passport` unless configured otherwise). */
export function passportFromHeaders(headers: Readonly<Record<string, string | string[] | undefined>>, name = 'x-passport'): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v;
}
