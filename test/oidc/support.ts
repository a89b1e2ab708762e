/**
 * The oidc tests' parts: a scripted browser (fetch with redirect: 'manual',
 * its own cookie jar, redirects followed) and a Passgate stack (service,
 * echo upstream, local gateway with the Check carrying request bodies) in
 * front of a real OpenID Provider and a real Redis.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { pino } from 'pino';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { LocalGateway } from '../../local-gateway/src/gateway.js';
import { EchoUpstream } from '../../local-gateway/src/echo-upstream.js';
import { captureLogs, testConfig, type LogCapture } from '../support/service.js';
import { CLIENT, TestOpenIdProvider } from './provider.js';

export const REDIS_URL = process.env['PASSGATE_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

interface StoredCookie {
  name: string;
  value: string;
  path: string;
}

/** One response of a navigation, as the browser saw it. */
export interface Hop {
  readonly url: string;
  readonly status: number;
  readonly location: string | undefined;
  readonly setCookies: readonly string[];
}

export interface Page {
  readonly url: string;
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  readonly hops: readonly Hop[];
  json<T = Record<string, unknown>>(): T;
}

/**
 * A browser as far as cookies and redirects go. Cookies are kept per host
 * (as browsers do: ports share them); `Secure` is honoured by sending them
 * over the loopback http the tests use (browsers treat localhost as secure).
 */
export class Browser {
  readonly jar = new Map<string, Map<string, StoredCookie>>();
  private readonly agent = new http.Agent({ keepAlive: false });

  constructor(readonly user = 'alice') {}

  /** Cookies whose Path covers the request path (RFC 6265 §5.1.4), longer paths first. */
  cookieHeader(url: URL): string | undefined {
    const c = this.jar.get(url.hostname);
    if (c === undefined || c.size === 0) return undefined;
    const p = url.pathname;
    const list = [...c.values()].filter((v) => v.path === '/' || p === v.path || p.startsWith(v.path.endsWith('/') ? v.path : `${v.path}/`));
    if (list.length === 0) return undefined;
    return list
      .sort((x, y) => y.path.length - x.path.length)
      .map((v) => `${v.name}=${v.value}`)
      .join('; ');
  }

  cookie(host: string, name: string): string | undefined {
    return this.jar.get(host)?.get(`${name}\u0000/`)?.value;
  }

  cookieNames(host: string): string[] {
    return [...(this.jar.get(host)?.values() ?? [])].map((c) => c.name);
  }

  deleteCookie(host: string, name: string): void {
    this.jar.get(host)?.delete(`${name}\u0000/`);
  }

  setCookieValue(host: string, name: string, value: string): void {
    let c = this.jar.get(host);
    if (c === undefined) this.jar.set(host, (c = new Map()));
    c.set(`${name}\u0000/`, { name, value, path: '/' });
  }

  private store(url: URL, setCookies: readonly string[]): void {
    let c = this.jar.get(url.hostname);
    if (c === undefined) this.jar.set(url.hostname, (c = new Map()));
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const a = attrs.map((s) => s.trim().toLowerCase());
      const maxAge = a.find((s) => s.startsWith('max-age='));
      const expires = a.find((s) => s.startsWith('expires='));
      const gone = (maxAge !== undefined && Number(maxAge.slice(8)) <= 0) || (expires !== undefined && Date.parse(expires.slice(8)) <= Date.now());
      const pathAttr = attrs.map((x) => x.trim()).find((x) => x.toLowerCase().startsWith('path='));
      const path = pathAttr === undefined ? '/' : pathAttr.slice(5) || '/';
      const key = `${name}\u0000${path}`;
      if (gone) c.delete(key);
      else c.set(key, { name, value, path });
    }
  }

  /**
   * One request, no redirect following; cookies kept. node:http rather than
   * fetch: fetch (undici) always sends `sec-fetch-mode: cors`, so it cannot
   * say "top-level navigation" the way a browser tab does.
   */
  async request(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Response> {
    const u = new URL(url);
    const headers: Record<string, string> = { 'x-test-user': this.user, ...init.headers };
    const cookie = this.cookieHeader(u);
    if (cookie !== undefined && headers['cookie'] === undefined) headers['cookie'] = cookie;
    if (init.body !== undefined) headers['content-length'] = String(Buffer.byteLength(init.body));
    const res = await new Promise<Response>((resolve, reject) => {
      const req = http.request(u, { method: init.method ?? 'GET', headers, agent: this.agent }, (r) => {
        const parts: Buffer[] = [];
        r.on('data', (c: Buffer) => parts.push(c));
        r.on('end', () => {
          const h = new Headers();
          for (let i = 0; i + 1 < r.rawHeaders.length; i += 2) h.append(r.rawHeaders[i]!, r.rawHeaders[i + 1]!);
          const status = r.statusCode ?? 0;
          const body = status === 204 || status === 304 ? null : Buffer.concat(parts);
          resolve(new Response(body, { status, headers: h }));
        });
        r.on('error', reject);
      });
      req.on('error', reject);
      req.end(init.body);
    });
    this.store(u, res.headers.getSetCookie());
    return res;
  }

  /** A top-level navigation: follows redirects (as GET), like a browser tab. */
  async navigate(url: string, opts: { maxHops?: number; stopAt?: (u: URL) => boolean; headers?: Record<string, string> } = {}): Promise<Page> {
    const hops: Hop[] = [];
    let current = url;
    for (let i = 0; i <= (opts.maxHops ?? 20); i++) {
      const res = await this.request(current, { headers: { accept: 'text/html,application/xhtml+xml', 'sec-fetch-mode': 'navigate', ...opts.headers } });
      const location = res.headers.get('location') ?? undefined;
      hops.push({ url: current, status: res.status, location, setCookies: res.headers.getSetCookie() });
      if (res.status >= 300 && res.status < 400 && location !== undefined) {
        await res.arrayBuffer();
        const next = new URL(location, current);
        if (opts.stopAt?.(next)) return page(next.href, res, '', hops);
        current = next.href;
        continue;
      }
      return page(current, res, await res.text(), hops);
    }
    throw new Error(`too many redirects from ${url}: ${hops.map((h) => h.url).join(' -> ')}`);
  }
}

function page(url: string, res: Response, text: string, hops: Hop[]): Page {
  return {
    url,
    status: res.status,
    headers: res.headers,
    text,
    hops,
    json: <T>() => JSON.parse(text) as T,
  };
}

export interface SsoStack {
  readonly service: PassgateService;
  readonly gateway: LocalGateway;
  readonly echo: EchoUpstream;
  readonly logs: LogCapture;
  /** http://127.0.0.1:<port> */
  readonly origin: string;
  stop(): Promise<void>;
}

export interface StackSettings {
  readonly issuer: string;
  readonly keyPrefix: string;
  readonly session?: Record<string, unknown>;
  /** Port of the gateway listener (0: any); a second process reuses the first one's redirect origin by its own port. */
  readonly port?: number;
}

/** The tests' (and bench:oidc's) config: routes `bare` (allow only), `admin` (fds, oidc, group admins), `plain` (oidc, no fds), default (fds, oidc). */
export function ssoConfig(s: StackSettings): string {
  const oidcStage = { type: 'oidc', identityHeaders: { 'x-auth-request-user': 'sub', 'x-auth-request-email': 'email', 'x-auth-request-groups': 'groups' } };
  return JSON.stringify({
    server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, shutdownGraceMs: 200, defaultDeadlineMs: 3_000 },
    logging: { level: 'info', audit: true },
    headers: { internal: ['x-passport', 'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-groups'] },
    fds: { store: 'redis', redis: { url: REDIS_URL, keyPrefix: s.keyPrefix, commandTimeoutMs: 1_000 } },
    oidc: {
      providers: {
        corp: { issuer: s.issuer, clientId: CLIENT.id, clientSecret: CLIENT.secret, allowInsecureHttp: true, scopes: ['openid', 'email', 'profile', 'groups'], timeoutMs: 2_000, algorithms: ['RS256'] },
      },
      session: { refreshLockMs: 2_000, maxCookieHeaderBytes: 8_192, ...s.session },
    },
    gateways: {
      tools: {
        kind: 'internal',
        routes: [
          { name: 'bare', match: { path: { prefix: '/bare' } }, stages: [{ type: 'allow' }] },
          { name: 'admin', match: { path: { prefix: '/admin' } }, stages: [{ type: 'fds' }, oidcStage, { type: 'authorize', groups: ['admins'] }, { type: 'allow' }] },
          { name: 'plain', match: { path: { prefix: '/plain' } }, stages: [oidcStage, { type: 'allow' }] },
        ],
        defaultRoute: { stages: [{ type: 'fds' }, oidcStage, { type: 'allow' }] },
      },
    },
    defaultGateway: 'tools',
  });
}

export async function startSso(s: StackSettings): Promise<SsoStack> {
  const logs = captureLogs('info');
  const service = await PassgateService.start({ config: testConfig(ssoConfig(s)), logger: logs.logger, grpcPort: 0, adminPort: 0, processMetrics: false, watchConfig: false });
  const echo = await EchoUpstream.start({});
  const gateway = await LocalGateway.start({
    listeners: [{ name: 'sso', port: s.port ?? 0, contextExtensions: { gateway: 'tools' } }],
    upstream: { host: '127.0.0.1', port: echo.port },
    // A login's Check includes the code exchange at the provider: give it more than the 200 ms default.
    extAuthz: { target: `127.0.0.1:${service.grpcPort}`, timeoutMs: 4_000, statusOnError: 503, withRequestBody: { maxRequestBytes: 16_384 } },
    logger: pino({ level: 'silent' }),
  });
  return {
    service,
    gateway,
    echo,
    logs,
    origin: `http://127.0.0.1:${gateway.ports['sso']}`,
    async stop() {
      await gateway.stop();
      await echo.stop();
      await service.stop(500);
    },
  };
}

export function newKeyPrefix(): string {
  return `test:oidc:${randomBytes(4).toString('hex')}:`;
}

export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what} did not happen within ${ms} ms`);
}

export { TestOpenIdProvider, CLIENT };
