/**
 * The gRPC request headers the transport itself reads (`grpc-timeout`,
 * `grpc-encoding`) and the status trailers it writes. The formats are those
 * of https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md.
 */
import * as grpc from '@grpc/grpc-js';

const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };
const TIMEOUT = /^([0-9]{1,8})([HMSmun])$/;

/**
 * `grpc-timeout` as milliseconds; `undefined` when absent, `null` when it is not
 * the spec's "1 to 8 ASCII digits and a unit" (the call is then refused, as grpc-js does).
 */
export function parseTimeout(value: string | string[] | undefined): number | undefined | null {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') return null;
  const m = TIMEOUT.exec(value);
  if (m === null) return null;
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/**
 * `grpc-message` is percent-encoded: every byte outside printable ASCII (and `%`)
 * becomes %XX of its UTF-8 bytes, so no status text can add or break a header.
 */
export function encodeMessage(text: string): string {
  let plain = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return text;
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The error a handler passes to its callback (grpc-js' ServiceError shape, loosely). */
export interface StatusLike {
  readonly code?: number;
  readonly details?: string;
  readonly message?: string;
}

/** As grpc-js: any positive integer code is kept (an error with code 0 or none is UNKNOWN); details only when a string. */
export function statusOf(err: unknown): { code: number; details: string } {
  const e = (err ?? {}) as StatusLike;
  const code = typeof e.code === 'number' && Number.isInteger(e.code) && e.code > 0 ? e.code : grpc.status.UNKNOWN;
  const details = typeof e.details === 'string' ? e.details : typeof e.message === 'string' ? e.message : 'unknown error';
  return { code, details };
}
