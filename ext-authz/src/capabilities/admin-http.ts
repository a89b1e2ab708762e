/**
 * What a capability needs to serve admin endpoints, without depending on
 * the server that hosts them: the handler shape, a route, and a JSON reply.
 */
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
