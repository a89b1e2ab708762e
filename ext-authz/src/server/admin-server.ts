/**
 * The admin HTTP port: Prometheus metrics, liveness and readiness. Later
 * capabilities mount their own endpoints (JWKS, FDS admin) with `route`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.js';

export type AdminHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

export class AdminServer {
  private readonly server: Server;
  private readonly routes = new Map<string, AdminHandler>();
  private readonly prefixRoutes: Array<{ prefix: string; handler: AdminHandler }> = [];

  constructor(
    private readonly metrics: Metrics,
    private readonly isReady: () => { ready: boolean; why?: string },
    private readonly logger: Logger,
  ) {
    this.route('GET', '/metrics', async (_req, res) => {
      const body = await this.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      res.end(body);
    });
    this.route('GET', '/healthz', (_req, res) => sendJson(res, 200, { status: 'ok' }));
    this.route('GET', '/readyz', (_req, res) => {
      const r = this.isReady();
      sendJson(res, r.ready ? 200 : 503, r.ready ? { status: 'ready' } : { status: 'not_ready', reason: r.why });
    });
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  /** Exact-path route. */
  route(method: string, path: string, handler: AdminHandler): void {
    this.routes.set(`${method} ${path}`, handler);
  }

  /** Prefix route (e.g. `/admin/fds/`), checked after exact routes. */
  routePrefix(prefix: string, handler: AdminHandler): void {
    this.prefixRoutes.push({ prefix, handler });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://admin.local');
      const exact = this.routes.get(`${req.method} ${url.pathname}`);
      if (exact) return await exact(req, res, url);
      for (const r of this.prefixRoutes) if (url.pathname.startsWith(r.prefix)) return await r.handler(req, res, url);
      sendJson(res, 404, { error: 'not_found', reason: `no admin endpoint ${req.method} ${url.pathname}` });
    } catch (err) {
      this.logger.error({ err: (err as Error).message, path: req.url }, 'admin request failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal_error' });
      else res.end();
    }
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
