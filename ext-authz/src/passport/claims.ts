/**
 * Builds the Passport claims set in one fixed shape, shared by the issuer
 * and by the worst-case size computation (so the size check at config load
 * measures exactly what the issuer would sign).
 */
import type { AuthLevel, PassportClaims, PassportDevice, PassportUser, RelayClaims } from './model.js';
import { PASSPORT_TYP } from './model.js';

/** Claim strings need no JSON escaping (printable ASCII without `"` and `\`), so sizes are exact. */
const CLAIM_VALUE = /^[\x20\x21\x23-\x5b\x5d-\x7e]+$/;

/** Why a value from a source or identity cannot go into a Passport, or undefined when it can. */
export function checkClaimValue(value: unknown, maxLength: number): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return 'must be a non-empty string';
  if (value.length > maxLength) return `is ${value.length} characters, over the limit of ${maxLength}`;
  if (!CLAIM_VALUE.test(value)) return 'may only contain printable ASCII without " and \\';
  return undefined;
}

export interface ClaimsInput {
  readonly issuer: string;
  readonly audience: string | readonly string[];
  readonly now: number;
  readonly exp: number;
  readonly jti: string;
  readonly user: PassportUser;
  readonly device?: PassportDevice | undefined;
  readonly relay?: RelayClaims | undefined;
  readonly relayMissing?: readonly string[] | undefined;
}

export function buildClaims(i: ClaimsInput): PassportClaims {
  const claims: {
    -readonly [K in keyof PassportClaims]: PassportClaims[K];
  } = { ver: 1, iss: i.issuer, aud: i.audience, sub: i.user.id, iat: i.now, exp: i.exp, jti: i.jti, user: i.user };
  if (i.device !== undefined) claims.device = i.device;
  if (i.relay !== undefined) claims.relay = i.relay;
  if (i.relayMissing !== undefined && i.relayMissing.length > 0) claims.relayMissing = i.relayMissing;
  return claims;
}

export function protectedHeader(alg: string, kid: string): { alg: string; typ: string; kid: string } {
  return { alg, typ: PASSPORT_TYP, kid };
}

const b64len = (bytes: number) => Math.ceil((bytes * 4) / 3);
/** Both EdDSA (Ed25519) and ES256 (P-256, IEEE P1363) signatures are 64 bytes. */
const SIGNATURE_BYTES = 64;

/** What the worst case depends on: the passport section's shape, declared here so config.ts can call this without an import cycle. */
export interface PassportSizeInputs {
  readonly issuer: string;
  readonly audience: Parameters<typeof buildClaims>[0]['audience'];
  readonly limits: { readonly maxValueLength: number; readonly maxRoles: number; readonly maxScopes: number };
  readonly relay: { readonly providers: Readonly<Record<string, { readonly maxValueLength: number }>> };
  readonly keys: { readonly entries: ReadonlyArray<{ readonly id: string }> };
}

/** The longest Passport header value this config can produce. */
export function worstCasePassportBytes(p: PassportSizeInputs): number {
  const L = p.limits.maxValueLength;
  const s = (n = L) => 'x'.repeat(n);
  const t = 9_999_999_999; // ten-digit NumericDate: good until 2286
  const kid = p.keys.entries.reduce((a, k) => (k.id.length > a.length ? k.id : a), '');
  const level: AuthLevel = 'HIGHEST';
  const relay: Record<string, string> = {};
  const names = Object.keys(p.relay.providers);
  for (const [n, prov] of Object.entries(p.relay.providers)) relay[n] = s(Math.max(prov.maxValueLength, 24));
  const claims = buildClaims({
    issuer: p.issuer,
    audience: p.audience,
    now: t,
    exp: t,
    jti: s(36),
    user: {
      id: s(),
      source: s(),
      authMethod: s(),
      authLevel: level,
      roles: Array.from({ length: p.limits.maxRoles }, () => s()),
      scopes: Array.from({ length: p.limits.maxScopes }, () => s()),
      created: t,
      expires: t,
    },
    device: { id: s(), type: s(), os: s(), appVersion: s(), platform: s(), attestation: s(), created: t, expires: t },
    relay: names.length > 0 ? relay : undefined,
    // A relay name can be in `relay` or in `relayMissing`, never both; counting both over-estimates slightly, safely.
    relayMissing: names.length > 0 ? names : undefined,
  });
  const header = JSON.stringify(protectedHeader('EdDSA', kid));
  const payload = JSON.stringify(claims);
  return b64len(Buffer.byteLength(header)) + 1 + b64len(Buffer.byteLength(payload)) + 1 + b64len(SIGNATURE_BYTES);
}
