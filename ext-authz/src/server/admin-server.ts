/**
 * The admin HTTP port: Prometheus metrics, liveness and readiness, plus the
 * endpoints of the committed capability states (JWKS, FDS admin), swapped
 * as one table with each committed config.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.js';
import { sendJson, type AdminHandler, type AdminRoute } from '../capabilities/admin-http.js';

export { sendJson, type AdminHandler };

export class AdminServer {
  private readonly server: Server;
  private readonly routes = new Map<string, AdminHandler>();
  private readonly prefixRoutes: Array<{ prefix: string; handler: AdminHandler }> = [];
  /** The committed capabilities' routes; replaced whole, never edited. */
  private capabilityRoutes: { exact: Map<string, AdminHandler>; prefix: readonly AdminRoute[] } = { exact: new Map(), prefix: [] };

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

  /** Replaces the capabilities' endpoints (one assignment, at commit). */
  setCapabilityRoutes(routes: readonly AdminRoute[]): void {
    const exact = new Map<string, AdminHandler>();
    for (const r of routes) if (!r.prefix) exact.set(`${r.method} ${r.path}`, r.handler);
    this.capabilityRoutes = { exact, prefix: routes.filter((r) => r.prefix) };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://admin.local');
      const key = `${req.method} ${url.pathname}`;
      const caps = this.capabilityRoutes;
      const exact = this.routes.get(key) ?? caps.exact.get(key) ?? caps.exact.get(`* ${url.pathname}`);
      if (exact) return await exact(req, res, url);
      for (const r of this.prefixRoutes) if (url.pathname.startsWith(r.prefix)) return await r.handler(req, res, url);
      for (const r of caps.prefix) if ((r.method === '*' || r.method === req.method) && url.pathname.startsWith(r.path)) return await r.handler(req, res, url);
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
