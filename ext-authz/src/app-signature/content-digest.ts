/**
 * RFC 9530 Content-Digest, checked against the body Envoy forwarded (never
 * trusted as sent): a structured dictionary of algorithm -> byte sequence.
 * sha-256 and sha-512 are accepted; every accepted algorithm present must
 * match, at least one must be present. Signing `content-digest` binds the
 * body to the signature; checking it here is what makes that binding real.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { parseDictionary } from 'structured-headers';
import type { Failure } from './message-signature.js';

const ALGORITHMS: Readonly<Record<string, string>> = { 'sha-256': 'sha256', 'sha-512': 'sha512' };

export function checkContentDigest(header: string | undefined, body: Uint8Array): Failure | undefined {
  if (header === undefined || header === '') return { ok: false, reason: 'digest_missing', detail: 'the request has a body but no Content-Digest header' };
  let dict;
  try {
    dict = parseDictionary(header);
  } catch (err) {
    return { ok: false, reason: 'digest_syntax', detail: `Content-Digest is not a structured dictionary: ${(err as Error).message}` };
  }
  let checked = 0;
  for (const [name, member] of dict) {
    const alg = ALGORITHMS[name];
    if (alg === undefined) continue;
    const value = member[0];
    if (Array.isArray(value) || !(value instanceof ArrayBuffer)) return { ok: false, reason: 'digest_syntax', detail: `Content-Digest ${name} must be a byte sequence` };
    const want = createHash(alg).update(body).digest();
    const got = Buffer.from(value);
    if (got.length !== want.length || !timingSafeEqual(got, want)) return { ok: false, reason: 'digest_mismatch', detail: `Content-Digest ${name} does not match the body (${body.length} bytes)` };
    checked++;
  }
  if (checked === 0) return { ok: false, reason: 'digest_unsupported', detail: `Content-Digest names no accepted algorithm (sha-256, sha-512); got ${[...dict.keys()].join(', ') || 'none'}` };
  return undefined;
}

/** `sha-256=:<base64>:` for a body (the SDK's side). */
export function contentDigest(body: Uint8Array): string {
  return `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
}
