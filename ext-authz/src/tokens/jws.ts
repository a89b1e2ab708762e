/**
 * Compact JWS parsing with the strictness a gateway needs: exactly three
 * canonical base64url segments (no padding, no '+' '/', no trailing bits that
 * decode to the same bytes: one token has one spelling), JSON objects for
 * header and payload, and a byte limit checked before any work. Pure: no
 * keys, no clock.
 */

export type JwsFailure =
  | 'token_too_large'
  | 'malformed_token'
  | 'malformed_header'
  | 'malformed_payload';

export interface ParsedJws {
  readonly header: Readonly<Record<string, unknown>>;
  readonly payload: Readonly<Record<string, unknown>>;
  /** `base64url(header) "." base64url(payload)`, the bytes the signature covers. */
  readonly signingInput: string;
  readonly signature: Buffer;
}

export type ParseResult = { readonly ok: true; readonly jws: ParsedJws } | { readonly ok: false; readonly reason: JwsFailure; readonly detail: string };

const B64URL = /^[A-Za-z0-9_-]*$/;
/** Last-character sets whose unused low bits are zero, by length mod 4 (2 → 4 bits unused, 3 → 2 bits). */
const LAST_2 = /[AQgw]$/;
const LAST_3 = /[AEIMQUYcgkosw048]$/;

/** Decodes base64url only when it is the one canonical spelling of its bytes; undefined otherwise. */
export function decodeCanonical(s: string): Buffer | undefined {
  if (!B64URL.test(s)) return undefined;
  const rem = s.length % 4;
  if (rem === 1) return undefined;
  if (rem === 2 && !LAST_2.test(s)) return undefined;
  if (rem === 3 && !LAST_3.test(s)) return undefined;
  return Buffer.from(s, 'base64url');
}

function jsonObject(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(bytes.toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function failure(reason: JwsFailure, detail: string): ParseResult {
  return { ok: false, reason, detail };
}

export function parseCompactJws(token: string, maxBytes: number): ParseResult {
  if (token.length > maxBytes) return failure('token_too_large', `token is ${token.length} bytes, the limit is ${maxBytes}`);
  const a = token.indexOf('.');
  const b = a === -1 ? -1 : token.indexOf('.', a + 1);
  if (a <= 0 || b === -1 || token.indexOf('.', b + 1) !== -1) return failure('malformed_token', 'a compact JWS has exactly three dot-separated segments');
  const h = decodeCanonical(token.slice(0, a));
  if (h === undefined) return failure('malformed_token', 'header segment is not canonical base64url');
  const p = decodeCanonical(token.slice(a + 1, b));
  if (p === undefined) return failure('malformed_token', 'payload segment is not canonical base64url');
  const s = decodeCanonical(token.slice(b + 1));
  if (s === undefined || s.length === 0) return failure('malformed_token', 'signature segment is empty or not canonical base64url');
  const header = jsonObject(h);
  if (header === undefined) return failure('malformed_header', 'JOSE header is not a JSON object');
  const payload = jsonObject(p);
  if (payload === undefined) return failure('malformed_payload', 'payload is not a JSON object');
  return { ok: true, jws: { header, payload, signingInput: token.slice(0, b), signature: s } };
}
