/**
 * The Passport: a short-lived, signed statement of who is calling (user
 * block) and from what (device block), issued once at the edge and verified
 * by every service behind it, whatever credential the client presented.
 *
 * Types and a few constants, no imports: the consumer library
 * (`passgate/passport`) shares these without pulling in service internals.
 * All times are JWT NumericDate values (seconds since the epoch).
 */

/** How strongly the user was authenticated: LOW (e.g. remembered session), HIGH (e.g. mTLS, fresh MFA), HIGHEST (step-up, hardware key). */
export type AuthLevel = 'LOW' | 'HIGH' | 'HIGHEST';
export const AUTH_LEVELS: readonly AuthLevel[] = ['LOW', 'HIGH', 'HIGHEST'];

export interface PassportUser {
  /** Stable user id from the auth/user service (also the JWT `sub`). */
  readonly id: string;
  /** Which identity stage established the caller: `mtls`, `jwt`, ... */
  readonly source: string;
  /** How the user proved it: `mtls`, `password`, `webauthn`, ... (defaults to `source`). */
  readonly authMethod: string;
  readonly authLevel: AuthLevel;
  readonly roles: readonly string[];
  readonly scopes: readonly string[];
  /** When these user facts were established (auth service's session start, else when the gateway fetched them). */
  readonly created: number;
  /** Until when these user facts may be believed (never later than the Passport's `exp`). */
  readonly expires: number;
}

export interface PassportDevice {
  readonly id: string;
  /** `mobile`, `tv`, `browser`, `server`, ... or `unknown`. */
  readonly type: string;
  readonly os?: string;
  readonly appVersion?: string;
  /** Set when the device signed the request (app-signature): `ios`, `android`, `web`, `desktop`. */
  readonly platform?: string;
  /** The attestation level the device was registered with (app-signature), e.g. `basic`. */
  readonly attestation?: string;
  readonly created: number;
  readonly expires: number;
}

/** Facts fetched once at the gateway by relay providers (e.g. `terms: true`). */
export type RelayClaims = Readonly<Record<string, string | number | boolean>>;

/** The JWT claims set, exactly as signed. */
export interface PassportClaims {
  /** Schema version; bumped on incompatible changes. */
  readonly ver: 1;
  readonly iss: string;
  readonly aud: string | readonly string[];
  /** = user.id */
  readonly sub: string;
  readonly iat: number;
  readonly exp: number;
  /** Unique per issued Passport, for audit correlation (not a replay guard: Passports are reused while cached). */
  readonly jti: string;
  readonly user: PassportUser;
  readonly device?: PassportDevice;
  readonly relay?: RelayClaims;
  /** Relay providers that failed and were configured to be omitted (`onFailure: omit`). */
  readonly relayMissing?: readonly string[];
}

/** What a verifier returns: the claims plus the protected header facts. */
export interface Passport extends PassportClaims {
  /** Key id from the JWS header. */
  readonly kid: string;
  readonly alg: PassportAlgorithm;
}

/** The only JWS algorithms Passports are ever signed with. */
export type PassportAlgorithm = 'EdDSA' | 'ES256';
export const PASSPORT_ALGORITHMS: readonly PassportAlgorithm[] = ['EdDSA', 'ES256'];

/** JWS `typ` header value, so a Passport is never mistaken for another JWT. */
export const PASSPORT_TYP = 'passport+jwt';
