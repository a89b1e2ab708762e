/**
 * Stateless DPoP nonces (RFC 9449 §8): the HMAC of a time window, so every
 * replica that shares the secret accepts every other's nonce with no shared
 * state. Valid for the current and the previous window.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export class NonceMint {
  private readonly secret: Buffer;
  private cached: { window: number; nonce: string } | undefined;

  constructor(secret: string | undefined, private readonly windowMs: number) {
    // Without a configured secret each process has its own: fine for one replica, documented for many.
    this.secret = secret && secret.length >= 16 ? Buffer.from(secret) : randomBytes(32);
  }

  private make(window: number): string {
    const w = Buffer.alloc(4);
    w.writeUInt32BE(window >>> 0);
    const mac = createHmac('sha256', this.secret).update(w).digest().subarray(0, 16);
    return Buffer.concat([w, mac]).toString('base64url');
  }

  /** The nonce to hand out now (the same string for a whole window). */
  current(now = Date.now()): string {
    const window = Math.floor(now / this.windowMs);
    if (this.cached?.window !== window) this.cached = { window, nonce: this.make(window) };
    return this.cached.nonce;
  }

  valid(nonce: unknown, now = Date.now()): boolean {
    if (typeof nonce !== 'string' || nonce.length !== 27) return false;
    const bytes = Buffer.from(nonce, 'base64url');
    if (bytes.length !== 20) return false;
    const window = bytes.readUInt32BE(0);
    const cur = Math.floor(now / this.windowMs) >>> 0;
    if (window !== cur && window !== ((cur - 1) >>> 0)) return false;
    return timingSafeEqual(Buffer.from(this.make(window)), Buffer.from(nonce));
  }
}
