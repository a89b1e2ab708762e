/**
 * The session ticket and the sealing of what is stored.
 *
 * The cookie holds `<id>.<secret>`: a random session id (the store key) and
 * a random per-session secret the store never sees. The tokens and claims
 * are sealed with AES-256-GCM under a key derived from the secret with HKDF
 * (salt: the id), the id as additional data, so a dump of the store reveals
 * no token, a blob cannot be moved to another session, and a tampered cookie
 * or blob fails authentication instead of decrypting to garbage.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { digestText } from '../pipeline/text.js';

const ID_BYTES = 16;
const SECRET_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const INFO = Buffer.from('passgate/oidc/session/v1');
/** base64url of 16 and 32 bytes. */
const TICKET = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;
const ID = /^[A-Za-z0-9_-]{22}$/;

export interface Ticket {
  readonly id: string;
  readonly secret: string;
}

export function newTicket(): Ticket {
  return { id: randomBytes(ID_BYTES).toString('base64url'), secret: randomBytes(SECRET_BYTES).toString('base64url') };
}

export function ticketText(t: Ticket): string {
  return `${t.id}.${t.secret}`;
}

/** The ticket in a cookie value, or undefined when it is not one we could have written. */
export function parseTicket(value: string): Ticket | undefined {
  const m = TICKET.exec(value);
  return m === null ? undefined : { id: m[1]!, secret: m[2]! };
}

/** A random id of the same shape (login flows). */
export function newId(): string {
  return randomBytes(ID_BYTES).toString('base64url');
}

export function isId(s: string): boolean {
  return ID.test(s);
}

export function randomToken(): string {
  return randomBytes(SECRET_BYTES).toString('base64url');
}

/** What the cache keeps to recognise the secret again without keeping the secret itself. */
export function secretDigest(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Constant-time comparison of a presented secret against a kept digest. */
export function secretMatches(secret: string, digest: Buffer): boolean {
  return timingSafeEqual(secretDigest(secret), digest);
}

/** Index keys from provider text (sid, sub): one digest per distinct string (pipeline/text.ts). */
export function hashText(s: string): string {
  return digestText(s, 'base64url');
}

export function sessionKey(t: Ticket): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(t.secret, 'base64url'), Buffer.from(t.id), INFO, 32));
}

export function seal(key: Buffer, id: string, plaintext: string): string {
  const iv = randomBytes(IV_BYTES);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(id));
  const body = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), body]).toString('base64url');
}

/** The plaintext, or undefined when the blob was not sealed with this key for this id. */
export function unseal(key: Buffer, id: string, sealed: string): string | undefined {
  const raw = Buffer.from(sealed, 'base64url');
  if (raw.length < IV_BYTES + TAG_BYTES) return undefined;
  try {
    const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
    d.setAAD(Buffer.from(id));
    d.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([d.update(raw.subarray(IV_BYTES + TAG_BYTES)), d.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}
