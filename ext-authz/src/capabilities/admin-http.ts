/**
 * What a capability needs to serve admin endpoints, without depending on
 * the server that hosts them: the handler shape, a route, and a JSON reply.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

export type AdminHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

export interface AdminRoute {
  readonly method: string;
  /** Exact path, or a prefix (e.g. `/admin/fds/`) when `prefix` is true; prefixes are tried after exact paths. */
  readonly path: string;
  readonly prefix?: boolean;
  readonly handler: AdminHandler;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * `Authorization: Bearer <token>` against the expected token, in constant time: both sides are hashed
 * to 32 bytes first, so neither content nor length leaks through timing. The scheme is
 * case-insensitive (RFC 9110); the token is not.
 */
export function bearerMatches(expected: Buffer, header: string | undefined): boolean {
  if (header === undefined || header.length < 7 || header.slice(0, 7).toLowerCase() !== 'bearer ') return false;
  return timingSafeEqual(sha256(expected), sha256(Buffer.from(header.slice(7).trim())));
}

function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

export type BodyRead<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

/** The whole request body, refused once it passes `maxBytes` (the connection is dropped: no unbounded buffering). */
export function readBoundedBody(req: IncomingMessage, maxBytes: number): Promise<BodyRead<Buffer>> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        resolve({ ok: false, reason: `request body is larger than ${maxBytes} bytes` });
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve({ ok: true, value: Buffer.concat(chunks) }));
    req.on('error', () => resolve({ ok: false, reason: 'request body could not be read' }));
  });
}

/** A JSON request body of at most `maxBytes`; `hint` ends the message of an empty or malformed one (what to send). */
export async function readJsonBody(req: IncomingMessage, maxBytes: number, hint: string): Promise<BodyRead<unknown>> {
  const r = await readBoundedBody(req, maxBytes);
  if (!r.ok) return r;
  const text = r.value.toString('utf8');
  if (text.trim() === '') return { ok: false, reason: `request body is empty; ${hint}` };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, reason: `request body is not valid JSON; ${hint}` };
  }
}
