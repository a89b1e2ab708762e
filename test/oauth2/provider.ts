/**
 * A real OAuth 2.0 authorization server (`oidc-provider` from npm) on
 * loopback for the oauth2 tests: client_credentials, introspection (RFC
 * 7662) and revocation (RFC 7009), opaque access tokens whose audience is
 * the requested resource. `mode` makes it misbehave as a real one does:
 * down (connections reset), slow, or answering garbage to introspection.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import Provider from 'oidc-provider';

export const RESOURCE = 'https://api.partner.example';
export const OTHER_RESOURCE = 'https://other.example';
export const GATEWAY = { id: 'passgate-gw', secret: 'gateway-secret-0123456789abcdef' };
export const PARTNER_A = { id: 'partner-a', secret: 'partner-a-secret-0123456789' };
export const PARTNER_B = { id: 'partner-b', secret: 'partner-b-secret-0123456789' };
/** Its tokens live three seconds (expiry tests; exp has whole-second granularity). */
export const SHORT = { id: 'partner-short', secret: 'partner-short-secret-0123456789' };

export type Mode = 'ok' | 'down' | 'slow' | 'garbage';

export class TestAuthServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private provider: { callback(): (req: IncomingMessage, res: ServerResponse) => void } | undefined;
  private handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  issuer = '';
  mode: Mode = 'ok';
  slowMs = 1_500;
  /** Introspection and token requests seen (what the gateway cost the server). */
  introspections = 0;
  tokenRequests = 0;

  constructor() {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? '';
    if (path.startsWith('/token/introspection')) this.introspections++;
    else if (path === '/token') this.tokenRequests++;
    if (this.mode === 'down') {
      req.socket.destroy();
      return;
    }
    if (this.mode === 'garbage' && path.startsWith('/token/introspection')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ active: 'yes', scope: 42 }));
      return;
    }
    if (this.mode === 'slow') {
      setTimeout(() => this.handler!(req, res), this.slowMs).unref();
      return;
    }
    this.handler!(req, res);
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.issuer = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    const client = (c: { id: string; secret: string }, scope: string) => ({
      client_id: c.id,
      client_secret: c.secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      ...(scope === '' ? {} : { scope }),
    });
    const p = new Provider(this.issuer, {
      clients: [
        client(GATEWAY, ''),
        client(PARTNER_A, 'orders:read orders:write'),
        client(PARTNER_B, 'orders:read reports:read'),
        client(SHORT, 'orders:read'),
      ],
      scopes: ['orders:read', 'orders:write', 'reports:read'],
      ttl: { ClientCredentials: (_ctx: unknown, _token: unknown, c: { clientId: string }) => (c.clientId === SHORT.id ? 3 : 300) },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        // Only the gateway may introspect tokens it did not get itself.
        introspection: { enabled: true, allowedPolicy: (_ctx: unknown, c: { clientId: string }, t: { clientId: string }) => c.clientId === GATEWAY.id || c.clientId === t.clientId },
        revocation: { enabled: true, allowedPolicy: (_ctx: unknown, c: { clientId: string }, t: { clientId: string }) => c.clientId === GATEWAY.id || c.clientId === t.clientId },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => RESOURCE,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx: unknown, resource: string, c: { clientId: string }) => ({
            scope: 'orders:read orders:write reports:read',
            audience: resource,
            accessTokenFormat: 'opaque',
            accessTokenTTL: c.clientId === SHORT.id ? 3 : 300,
          }),
        },
      },
    });
    p.proxy = false;
    this.provider = p;
    this.handler = p.callback();
    return this;
  }

  private basic(c: { id: string; secret: string }): string {
    return `Basic ${Buffer.from(`${encodeURIComponent(c.id)}:${encodeURIComponent(c.secret)}`).toString('base64')}`;
  }

  /** A client_credentials access token for `c`, as a partner would get one. */
  async token(c: { id: string; secret: string }, scope: string, resource = RESOURCE): Promise<string> {
    const res = await fetch(`${this.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: this.basic(c) },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource }),
    });
    const body = (await res.json()) as Record<string, unknown>;
    if (!res.ok) throw new Error(`token endpoint: ${res.status} ${JSON.stringify(body)}`);
    return body['access_token'] as string;
  }

  /** RFC 7009 revocation by the client that owns the token. */
  async revoke(c: { id: string; secret: string }, token: string): Promise<void> {
    const res = await fetch(`${this.issuer}/token/revocation`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: this.basic(c) },
      body: new URLSearchParams({ token }),
    });
    if (!res.ok) throw new Error(`revocation endpoint: ${res.status} ${await res.text()}`);
  }

  /** What the server itself says about a token (asked as the gateway). */
  async active(token: string): Promise<boolean> {
    const res = await fetch(`${this.issuer}/token/introspection`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: this.basic(GATEWAY) },
      body: new URLSearchParams({ token }),
    });
    return ((await res.json()) as { active: boolean }).active;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}
