/**
 * Text that leaves the process as bytes (Redis keys, digests, header values) must keep every distinction
 * the JS string makes. UTF-8 cannot encode a lone UTF-16 surrogate: Node and ioredis write U+FFFD for it,
 * so "\ud800", "\udc00" and "\ufffd" would become one key, one digest, one header value. Such strings come
 * only from JSON a client or an issuer wrote (a JWT claim, a proof's jti, a nonce) or from a certificate.
 */
import { createHash, type BinaryToTextEncoding } from 'node:crypto';

/** Whether `s` holds no lone surrogate (String#isWellFormed, Node 20; not yet in TypeScript's ES2022 lib). */
export function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** Marks the UTF-16 form below: 0xFF never occurs in UTF-8, so the two forms never give the same bytes. */
const UTF16_MARK = Buffer.from([0xff]);

/**
 * sha256 of `s`, one digest per distinct string: well-formed text by its UTF-8 (what other systems hash),
 * text with a lone surrogate by a mark byte and its UTF-16 code units.
 */
export function digestText(s: string, encoding: BinaryToTextEncoding): string {
  const hash = createHash('sha256');
  if (isWellFormed(s)) hash.update(s, 'utf8');
  else hash.update(UTF16_MARK).update(s, 'utf16le');
  return hash.digest(encoding);
}

/** CR, LF, NUL and the other controls but HTAB, which no HTTP field value may hold (RFC 9110 §5.5). */
const FIELD_CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;

/**
 * Whether `value` can go out as an HTTP header value as it is: no control character (an LF in a claim
 * copied into a header would start another header on an HTTP/1 upstream) and no lone surrogate (two
 * identities would arrive as one U+FFFD).
 */
export function isSafeFieldValue(value: string): boolean {
  return !FIELD_CONTROL.test(value) && isWellFormed(value);
}

const ASCII_UPPER = /[A-Z]/;
const ASCII_UPPER_ALL = /[A-Z]+/g;

/**
 * Lowercases ASCII letters only. String#toLowerCase also folds other characters into ASCII (the Kelvin
 * sign U+212A becomes "k"), so a host or header name spelled with one would match a name it is not.
 */
export function asciiLower(s: string): string {
  return ASCII_UPPER.test(s) ? s.replace(ASCII_UPPER_ALL, (m) => m.toLowerCase()) : s;
}
