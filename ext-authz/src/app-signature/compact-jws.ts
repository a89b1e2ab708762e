/**
 * The parts of a compact JWS (RFC 7515), parsed but not verified: the device credential and
 * the offline attestation both pin their algorithm and verify with node:crypto on a KeyObject
 * (synchronously, on the hot path for credentials), so they share this parse, not a library call.
 */
export interface CompactJws {
  readonly header: Record<string, unknown>;
  readonly claims: Record<string, unknown>;
  /** The signing input (`<header>.<payload>` bytes). */
  readonly input: Buffer;
  readonly signature: Buffer;
}

/** The parts, or what is wrong with `token` (for a detail after the caller's own name for it). */
export function parseCompactJws(token: string, maxBytes: number): CompactJws | string {
  if (token.length > maxBytes) return `is longer than ${maxBytes} bytes`;
  const parts = token.split('.');
  if (parts.length !== 3) return 'is not a compact JWS';
  let header: unknown;
  let claims: unknown;
  try {
    header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
  } catch {
    return 'header or payload is not base64url JSON';
  }
  if (!isObject(header) || !isObject(claims)) return 'header or payload is not a JSON object';
  return { header, claims, input: Buffer.from(`${parts[0]}.${parts[1]}`), signature: Buffer.from(parts[2]!, 'base64url') };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
