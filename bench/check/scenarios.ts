/**
 * Benchmark scenarios for `npm run bench:check --scenario <name>`.
 *
 * A scenario is a config generator plus a weighted request mix. To add one
 * (mtls, passport, fds, ...): write a `BenchScenario`, add it to `SCENARIOS`
 * at the bottom. `prepare` may start helpers (keys, Redis data) and return a
 * `teardown`; every mix entry states the decision it must get, and the runner
 * verifies that against the live service before measuring, so a bench never
 * reports speed for requests that were answered wrongly.
 */
import { Redis } from 'ioredis';
import { deleteKeys } from '../common/redis-keys.js';
import type { CheckRequest } from '../../ext-authz/src/proto/types.js';
import { PARTNER_ORGS, certPool, mtlsIdentityConfig, type CertPool, type PoolCert } from './certpool.js';

/** What the runner lets a scenario control in the service's config. */
export interface ServiceKnobs {
  readonly grpcPort: number;
  readonly adminPort: number;
  readonly audit: boolean;
  readonly level: 'warn' | 'info';
  /** server.transport (absent: the service's default). */
  readonly transport?: 'h2' | 'grpc-js';
}

export type Expectation =
  | { readonly allow: true }
  | { readonly deny: number; readonly reason: string };

export interface MixEntry {
  /** Short label, shown when verification fails. */
  readonly name: string;
  /** Relative share of traffic. */
  readonly weight: number;
  readonly request: CheckRequest;
  readonly expect: Expectation;
}

export interface PreparedScenario {
  /** The full Passgate config object (serialized to YAML by the runner). */
  config(knobs: ServiceKnobs): Record<string, unknown>;
  readonly mix: readonly MixEntry[];
  /** Name of the mix entry h2load replays (h2load sends one body). */
  readonly h2loadEntry: string;
  /** Facts printed under the table (route counts, ...). */
  readonly facts: Readonly<Record<string, string | number>>;
  /** Environment for the service process (e.g. secrets a scenario generated). */
  readonly env?: Readonly<Record<string, string>>;
  teardown?(): Promise<void>;
}

export interface BenchScenario {
  readonly name: string;
  readonly description: string;
  /** `workDir` is a scratch folder under .bench-out for files the scenario needs (keys, certs). */
  prepare(ctx: { workDir: string }): PreparedScenario | Promise<PreparedScenario>;
}

// ---------------------------------------------------------------------------
// Realistic Envoy CheckRequests
// ---------------------------------------------------------------------------

export interface EnvoyRequestSpec {
  method: string;
  /** :authority as the client sent it (may carry a port). */
  authority: string;
  /** Path including the query string, as Envoy sends it. */
  path: string;
  scheme?: 'https' | 'http';
  protocol?: 'HTTP/2' | 'HTTP/1.1';
  /** Extra / overriding headers (lowercase names). */
  headers?: Record<string, string>;
  /** Headers to leave out of the default browser/API set. */
  without?: readonly string[];
  sourceIp?: string;
  sourcePort?: number;
  destinationPort?: number;
  /** Envoy's peer principal (mTLS gateways only). */
  principal?: string;
  contextExtensions?: Record<string, string>;
  bodySize?: number;
}

let seq = 0;
function hex(n: number, len: number): string {
  // Deterministic pseudo-random hex so runs are repeatable.
  let out = '';
  let x = (n * 2654435761) >>> 0;
  while (out.length < len) {
    x = (x * 1103515245 + 12345) >>> 0;
    out += (x >>> 8).toString(16).padStart(6, '0');
  }
  return out.slice(0, len);
}

/**
 * Builds a CheckRequest shaped like what an Istio ingress gateway sends:
 * lowercased headers including pseudo-headers, Envoy/Istio-added headers,
 * socket addresses and, when given, principal, SNI and context_extensions.
 */
export function envoyRequest(spec: EnvoyRequestSpec): CheckRequest {
  const n = ++seq;
  const scheme = spec.scheme ?? 'https';
  const requestId = `${hex(n, 8)}-${hex(n + 1, 4)}-4${hex(n + 2, 3)}-a${hex(n + 3, 3)}-${hex(n + 4, 12)}`;
  const traceId = hex(n + 5, 32);
  const clientIp = spec.sourceIp ?? `203.0.113.${(n * 37) % 250 + 1}`;
  const headers: Record<string, string> = {
    ':authority': spec.authority,
    ':method': spec.method,
    ':path': spec.path,
    ':scheme': scheme,
    'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
    accept: 'application/json, text/plain, */*',
    'accept-encoding': 'gzip, deflate, br',
    'accept-language': 'en-US,en;q=0.9,de;q=0.8',
    'x-forwarded-for': clientIp,
    'x-forwarded-proto': scheme,
    'x-envoy-external-address': clientIp,
    'x-envoy-attempt-count': '1',
    'x-request-id': requestId,
    traceparent: `00-${traceId}-${hex(n + 6, 16)}-01`,
    'x-b3-traceid': traceId,
    'x-b3-spanid': hex(n + 7, 16),
    'x-b3-sampled': '0',
    cookie: `session=${hex(n + 8, 32)}; _ga=GA1.2.${(n * 7919) % 1_000_000}.1718000000; consent=analytics`,
    'sec-fetch-mode': 'cors',
    'x-envoy-decorator-operation': `${spec.authority.split(':')[0]}:443/*`,
  };
  for (const h of spec.without ?? []) delete headers[h];
  Object.assign(headers, spec.headers);
  const qIndex = spec.path.indexOf('?');
  const destinationPort = spec.destinationPort ?? 8080;
  return {
    attributes: {
      source: {
        address: { socket_address: { address: clientIp, port_value: spec.sourcePort ?? 40_000 + (n % 20_000) } },
        ...(spec.principal ? { principal: spec.principal } : {}),
      },
      destination: {
        address: { socket_address: { address: '10.42.0.17', port_value: destinationPort } },
        principal: 'spiffe://cluster.local/ns/istio-ingress/sa/istio-ingressgateway',
      },
      request: {
        time: { seconds: 1_764_320_000 + n, nanos: (n * 1_000_003) % 1_000_000_000 },
        http: {
          id: String(1_000_000_000_000 + n * 7_919),
          method: spec.method,
          headers,
          path: spec.path,
          host: spec.authority,
          scheme,
          ...(qIndex === -1 ? {} : { query: '' }),
          size: String(spec.bodySize ?? 0),
          protocol: spec.protocol ?? 'HTTP/2',
        },
      },
      ...(spec.contextExtensions ? { context_extensions: spec.contextExtensions } : {}),
      ...(scheme === 'https' ? { tls_session: { sni: spec.authority.split(':')[0]! } } : {}),
    },
  } as CheckRequest;
}

// ---------------------------------------------------------------------------
// Scenario "core": 50 routes over 3 gateways, core stages only
// ---------------------------------------------------------------------------

const BEARER = 'Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1LTQ4MjEiLCJleHAiOjE3NjQzMjM2MDB9.c2lnbmF0dXJlLW5vdC1jaGVja2VkLWJ5LWNvcmU';

type Route = Record<string, unknown>;
const auth = (extra: Array<Record<string, string>> = []) => ({
  type: 'require-headers',
  status: 401,
  headers: [{ name: 'authorization', pattern: 'Bearer [A-Za-z0-9._~+/-]+=*' }, { name: 'x-request-id' }, ...extra],
});

function publicRoutes(): Route[] {
  const api = (name: string, methods: string[], extra: Partial<Route> = {}): Route => ({
    name: `api-${name}`,
    match: {
      hosts: ['api.shop.example'],
      path: { prefix: `/api/v1/${name}` },
      methods,
      headers: [{ name: 'x-api-version', regex: '^v1(\\.[0-9]+)?$' }],
    },
    stages: [auth(), { type: 'allow' }],
    ...extra,
  });
  return [
    { name: 'health', match: { path: { exact: '/healthz' }, methods: ['GET', 'HEAD'] }, stages: ['allow'] },
    { name: 'ready', match: { path: { exact: '/readyz' }, methods: ['GET'] }, stages: ['allow'] },
    { name: 'robots', match: { hosts: ['www.shop.example', 'shop.example'], path: { exact: '/robots.txt' } }, stages: ['allow'] },
    { name: 'static', match: { hosts: ['*.cdn.shop.example', 'www.shop.example'], path: { prefix: '/static' }, methods: ['GET', 'HEAD'] }, stages: ['allow'] },
    {
      name: 'hashed-assets',
      match: { path: { regex: '^/assets/[a-z0-9-]+\\.[0-9a-f]{8}\\.(js|css|woff2)$' }, methods: ['GET', 'HEAD'] },
      stages: ['allow'],
    },
    { name: 'admin-blocked', match: { path: { prefix: '/admin' } }, stages: [{ type: 'deny', status: 403, reason: 'admin_only_on_internal' }] },
    { name: 'legacy', match: { path: { prefix: '/legacy' } }, stages: [{ type: 'deny', status: 404, reason: 'retired_endpoint' }] },
    {
      name: 'login',
      match: { hosts: ['www.shop.example', 'api.shop.example'], path: { exact: '/auth/login' }, methods: ['POST'] },
      stages: [{ type: 'require-headers', headers: [{ name: 'content-type', pattern: 'application/json(;.*)?' }, { name: 'origin' }] }, { type: 'allow' }],
    },
    { name: 'logout', match: { path: { exact: '/auth/logout' }, methods: ['POST'] }, stages: [auth(), { type: 'allow' }] },
    { name: 'cors-preflight', match: { hosts: ['api.shop.example'], methods: ['OPTIONS'], headers: [{ name: 'access-control-request-method', present: true }] }, stages: ['allow'] },
    api('users', ['GET', 'PUT', 'PATCH']),
    api('accounts', ['GET', 'PUT']),
    api('orders', ['GET', 'POST']),
    api('carts', ['GET', 'POST', 'PUT', 'DELETE']),
    api('products', ['GET']),
    api('catalog', ['GET']),
    api('payments', ['POST'], { stages: [auth([{ name: 'idempotency-key', pattern: '[0-9a-f-]{36}' }]), { type: 'allow' }] }),
    api('invoices', ['GET']),
    api('shipments', ['GET', 'POST']),
    api('reviews', ['GET', 'POST', 'DELETE']),
    {
      name: 'api-v2-order-items',
      match: { hosts: ['api.shop.example'], path: { regex: '^/api/v2/orders/[0-9]+/items(/[0-9]+)?$' }, methods: ['GET', 'PUT'] },
      stages: [auth(), { type: 'allow' }],
    },
    {
      name: 'api-v2-canary',
      match: { hosts: ['api.shop.example'], path: { prefix: '/api/v2' }, headers: [{ name: 'x-canary', exact: 'true' }] },
      stages: [auth([{ name: 'x-api-version', pattern: 'v2(\\.[0-9]+)?' }]), { type: 'allow' }],
    },
  ];
}

const PARTNER_APIS = ['orders', 'inventory', 'pricing', 'settlements', 'reports', 'webhooks', 'catalog-feed', 'returns', 'shipments', 'invoices', 'disputes'];

/**
 * `chain` replaces the stages of the 12 partner routes (the mTLS scenarios
 * run their identity chain there); without it they check headers as in core.
 */
function secureRoutes(chain?: readonly unknown[]): Route[] {
  const partner = { type: 'require-headers', status: 403, headers: [{ name: 'x-partner-id', pattern: '[A-Z]{2}[0-9]{6}' }, { name: 'x-request-id' }] };
  return [
    { name: 'health', match: { path: { exact: '/healthz' } }, stages: ['allow'] },
    ...PARTNER_APIS.map((api, i) => ({
      name: `partner-${api}`,
      match: {
        path: { prefix: `/partner/v1/${api}` },
        methods: i % 3 === 0 ? ['GET', 'POST', 'PUT'] : ['GET', 'POST'],
        ...(i % 2 === 0 ? { headers: [{ name: 'x-partner-id', present: true }] } : {}),
      },
      failureMode: 'closed',
      stages: chain ?? [partner, { type: 'allow' }],
    })),
    {
      name: 'partner-bulk',
      match: {
        hosts: ['partner.shop.example', 'b2b.shop.example'],
        path: { regex: '^/partner/v2/bulk/(orders|prices)/[0-9a-f-]{36}$' },
        methods: ['POST', 'PUT'],
        headers: [{ name: 'content-type', prefix: 'application/' }],
      },
      ...(chain ? { failureMode: 'closed' } : {}),
      stages: chain ?? [partner, { type: 'require-headers', headers: [{ name: 'content-length', pattern: '[0-9]{1,8}' }] }, { type: 'allow' }],
    },
    { name: 'partner-v0', match: { path: { prefix: '/partner/v0' } }, stages: [{ type: 'deny', status: 404, reason: 'retired_api_version' }] },
  ];
}

const INTERNAL_SERVICES = ['inventory', 'pricing', 'users', 'orders', 'payments', 'search', 'recommendations', 'notifications', 'ledger', 'shipping', 'catalog', 'media'];

function internalRoutes(): Route[] {
  return [
    ...INTERNAL_SERVICES.map((svc, i) => ({
      name: `svc-${svc}`,
      match: {
        hosts: [`${svc}.prod.svc.cluster.local`, `${svc}.prod`],
        ...(i % 4 === 3 ? { methods: ['GET', 'POST', 'PUT', 'DELETE'] } : {}),
        ...(i % 3 === 0 ? { headers: [{ name: 'x-request-id', present: true }] } : {}),
      },
      stages: [{ type: 'require-headers', headers: [{ name: 'x-request-id' }, { name: 'traceparent', pattern: '00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]' }] }, { type: 'allow' }],
    })),
    { name: 'debug-blocked', match: { path: { prefix: '/debug' } }, stages: [{ type: 'deny', status: 403, reason: 'debug_endpoints_disabled' }] },
    { name: 'pprof-blocked', match: { path: { regex: '^/(pprof|actuator)(/.*)?$' } }, stages: [{ type: 'deny', status: 404, reason: 'not_exposed' }] },
  ];
}

function coreConfig(knobs: ServiceKnobs, secureChain?: readonly unknown[], sections: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...sections,
    server: {
      grpc: { host: '127.0.0.1', port: knobs.grpcPort },
      admin: { host: '127.0.0.1', port: knobs.adminPort },
      shutdownGraceMs: 1000,
      ...(knobs.transport ? { transport: knobs.transport } : {}),
    },
    logging: { level: knobs.level, audit: knobs.audit },
    gateways: {
      public: {
        kind: 'public',
        select: { hosts: ['www.shop.example', 'shop.example', 'api.shop.example', '*.cdn.shop.example'], ports: [8080] },
        routes: publicRoutes(),
      },
      secure: {
        kind: 'secure',
        trustXfcc: true,
        select: { hosts: ['partner.shop.example', 'b2b.shop.example'], ports: [8443] },
        challenge: 'Mutual realm="passgate"',
        routes: secureRoutes(secureChain),
        defaultRoute: { stages: [{ type: 'deny', status: 403, reason: 'partner_route_not_exposed' }] },
      },
      internal: {
        kind: 'internal',
        select: { hosts: ['*.svc.cluster.local'], ports: [15443] },
        routes: internalRoutes(),
        defaultRoute: { stages: [{ type: 'require-headers', headers: [{ name: 'x-request-id' }] }, { type: 'allow' }] },
      },
    },
    defaultGateway: 'public',
  };
}

const API = { authorization: BEARER, 'x-api-version': 'v1', 'content-type': 'application/json' };
const PARTNER_PRINCIPAL = 'spiffe://partners.shop.example/ns/acme/sa/orders-sync';
const SECURE = { gateway: 'secure', route_class: 'partner' };
const partnerHeaders = { 'x-partner-id': 'DE004211', 'x-forwarded-client-cert': `By=spiffe://cluster.local/ns/istio-ingress/sa/gw;Hash=${hex(9, 64)};URI=${PARTNER_PRINCIPAL}` };
const INTERNAL = { gateway: 'internal' };

function coreMix(): MixEntry[] {
  const e = (name: string, weight: number, spec: EnvoyRequestSpec, expect: Expectation): MixEntry => ({ name, weight, request: envoyRequest(spec), expect });
  const allow = { allow: true } as const;
  return [
    e('public health (route 1)', 8, { method: 'GET', authority: 'www.shop.example', path: '/healthz', without: ['cookie', 'authorization'] }, allow),
    e('cdn static (route 4)', 12, { method: 'GET', authority: 'img.cdn.shop.example', path: '/static/img/p/48213/main.webp?w=640' }, allow),
    e('hashed asset regex (route 5)', 6, { method: 'GET', authority: 'www.shop.example', path: '/assets/app-main.3f9a2c1d.js' }, allow),
    e('admin blocked (route 6)', 3, { method: 'GET', authority: 'www.shop.example', path: '/admin/users' }, { deny: 403, reason: 'admin_only_on_internal' }),
    e('login (route 8)', 3, { method: 'POST', authority: 'www.shop.example', path: '/auth/login', headers: { 'content-type': 'application/json', origin: 'https://www.shop.example' }, bodySize: 64 }, allow),
    e('cors preflight (route 10)', 4, { method: 'OPTIONS', authority: 'api.shop.example', path: '/api/v1/orders', headers: { 'access-control-request-method': 'POST', origin: 'https://www.shop.example' } }, allow),
    e('api users (route 11)', 12, { method: 'GET', authority: 'api.shop.example', path: '/api/v1/users/me?fields=profile,addresses', headers: API }, allow),
    e('api orders no token (route 13)', 5, { method: 'POST', authority: 'api.shop.example', path: '/api/v1/orders', headers: { 'x-api-version': 'v1', 'content-type': 'application/json' }, bodySize: 512 }, { deny: 401, reason: 'missing_header' }),
    e('api reviews (route 20)', 8, { method: 'GET', authority: 'api.shop.example', path: '/api/v1/reviews?product=48213&page=2', headers: API }, allow),
    e('api forged x-passport (route 15)', 2, { method: 'GET', authority: 'api.shop.example', path: '/api/v1/products/48213', headers: { ...API, 'x-passport': 'forged.by.client', 'x-passgate-identity': 'admin' } }, allow),
    e('api v2 order items regex (route 21)', 6, { method: 'GET', authority: 'api.shop.example:443', path: '/api/v2/orders/99120033/items/2', headers: API }, allow),
    e('api v2 canary (route 22, last)', 4, { method: 'GET', authority: 'api.shop.example', path: '/api/v2/search?q=shoes', headers: { ...API, 'x-api-version': 'v2', 'x-canary': 'true' } }, allow),
    e('public unmatched → default 404', 5, { method: 'GET', authority: 'www.shop.example', path: '/wp-login.php' }, { deny: 404, reason: 'no_route' }),
    e('partner orders (secure route 2)', 8, { method: 'POST', authority: 'partner.shop.example', path: '/partner/v1/orders', principal: PARTNER_PRINCIPAL, contextExtensions: SECURE, headers: { ...partnerHeaders, 'content-type': 'application/json' }, bodySize: 2048 }, allow),
    e('partner bulk regex (secure route 13)', 4, { method: 'PUT', authority: 'b2b.shop.example', path: '/partner/v2/bulk/prices/6f1c2b7e-9a4d-4c1e-8b2f-0d9e7a6c5b41', principal: PARTNER_PRINCIPAL, contextExtensions: SECURE, headers: { ...partnerHeaders, 'content-type': 'application/x-ndjson', 'content-length': '183422' }, bodySize: 183_422 }, allow),
    e('partner unmatched → default deny', 2, { method: 'GET', authority: 'partner.shop.example', path: '/partner/v1/unknown-api', principal: PARTNER_PRINCIPAL, contextExtensions: SECURE, headers: partnerHeaders }, { deny: 403, reason: 'partner_route_not_exposed' }),
    e('internal search (route 6)', 6, { method: 'GET', authority: 'search.prod.svc.cluster.local:8080', path: '/v1/query?q=boots&limit=24', scheme: 'http', protocol: 'HTTP/1.1', sourceIp: '10.42.3.18', destinationPort: 15443, principal: 'spiffe://cluster.local/ns/prod/sa/frontend', contextExtensions: INTERNAL, without: ['cookie', 'x-envoy-external-address'] }, allow),
    e('internal unknown svc → default allow', 2, { method: 'POST', authority: 'audit.prod.svc.cluster.local', path: '/v1/events', scheme: 'http', sourceIp: '10.42.1.7', destinationPort: 15443, principal: 'spiffe://cluster.local/ns/prod/sa/orders', without: ['cookie'] }, allow),
  ];
}

export const coreScenario: BenchScenario = {
  name: 'core',
  description: '50 routes over 3 gateways (host lists, path exact/prefix/regex, method sets, header predicates); stages allow, deny, require-headers',
  prepare() {
    const probe = coreConfig({ grpcPort: 0, adminPort: 0, audit: false, level: 'warn' });
    const gateways = probe['gateways'] as Record<string, { routes: unknown[] }>;
    const routeCount = Object.values(gateways).reduce((n, g) => n + g.routes.length, 0);
    if (routeCount !== 50) throw new Error(`core scenario must have 50 routes, generator made ${routeCount}`);
    const mix = coreMix();
    return {
      config: (knobs) => coreConfig(knobs),
      mix,
      h2loadEntry: 'api users (route 11)',
      facts: {
        routes: routeCount,
        gateways: Object.keys(gateways).length,
        'mix entries': mix.length,
        'headers per request (avg)': Math.round(mix.reduce((n, m) => n + Object.keys(m.request.attributes?.request?.http?.headers ?? {}).length, 0) / mix.length),
      },
    };
  },
};

// ---------------------------------------------------------------------------
// Scenarios "mtls", "passport", "full": the core table and traffic, with the
// 12 partner routes of the secure gateway running an identity chain
// ---------------------------------------------------------------------------

/** Distinct partner client certificates in the traffic (all cached after warm-up: the steady state). */
const POOL_SIZE = 200;
/** In core the allowed partner entries weigh 8 + 4 of 100; the pool and the bad certificates share the same 12, so "vs core" compares the same traffic. */
const POOL_WEIGHT = 11;
const BAD_WEIGHT = 1;
const CORE_PARTNER_ENTRIES = ['partner orders (secure route 2)', 'partner bulk regex (secure route 13)'];

type ChainKind = 'mtls' | 'passport' | 'full';

/** One partner request from a pool certificate, spread over the 11 partner APIs and the bulk route. */
function partnerSpec(c: PoolCert, i: number, sourceIp: string): EnvoyRequestSpec {
  const base = {
    principal: c.principal,
    contextExtensions: SECURE,
    sourceIp,
    sourcePort: 30_000 + i,
  };
  const xfcc = { 'x-partner-id': `DE${String(4211 + i).padStart(6, '0')}`, 'x-forwarded-client-cert': c.xfcc };
  if (i % 12 === 11) {
    return { ...base, method: 'PUT', authority: 'b2b.shop.example', path: `/partner/v2/bulk/orders/6f1c2b7e-9a4d-4c1e-8b2f-${hex(i, 12)}`, headers: { ...xfcc, 'content-type': 'application/x-ndjson', 'content-length': '18342' }, bodySize: 18_342 };
  }
  const api = PARTNER_APIS[i % PARTNER_APIS.length]!;
  return i % 2 === 0
    ? { ...base, method: 'POST', authority: 'partner.shop.example', path: `/partner/v1/${api}`, headers: { ...xfcc, 'content-type': 'application/json' }, bodySize: 2048 }
    : { ...base, method: 'GET', authority: 'partner.shop.example', path: `/partner/v1/${api}?since=2026-01-01&page=${i % 7}`, headers: xfcc };
}

function chainMix(pool: CertPool, kind: ChainKind): MixEntry[] {
  const allow = { allow: true } as const;
  const entries = coreMix().filter((m) => !CORE_PARTNER_ENTRIES.includes(m.name));
  pool.good.forEach((c, i) => {
    const spec = partnerSpec(c, i, `198.18.${i >> 8}.${(i & 255) + 1}`);
    entries.push({ name: `partner cert ${c.subject} ${spec.method} ${spec.path.split('?')[0]}`, weight: POOL_WEIGHT / pool.good.length, request: envoyRequest(spec), expect: allow });
  });
  const bad: Array<[string, PoolCert, Expectation]> = [
    // Beside a peer principal every XFCC element is validated first; a bad one is a disagreement with the peer.
    ['bad: XFCC Hash= of another certificate', pool.wrongHash, { deny: 401, reason: 'xfcc_peer_mismatch' }],
    ['bad: certificate no rule maps', pool.unmapped, { deny: 403, reason: 'unknown_client_certificate' }],
    kind === 'mtls'
      ? ['bad: org not allowed by authorize', pool.foreignOrg, { deny: 403, reason: 'forbidden_identity' }]
      : ['bad: user unknown to the passport source', pool.unknownUser, { deny: 403, reason: 'unknown_user' }],
  ];
  bad.forEach(([name, c, expect], k) => {
    entries.push({ name, weight: BAD_WEIGHT / bad.length, request: envoyRequest(partnerSpec(c, 2 * k, `198.51.100.${k + 10}`)), expect });
  });
  return entries;
}

function passportSection(pool: CertPool): Record<string, unknown> {
  const users: Record<string, unknown> = {};
  pool.good.forEach((c, i) => {
    users[c.subject] = { id: `usr-${String(100_000 + i)}`, roles: ['partner', i % 5 === 0 ? 'partner-admin' : 'partner-user'], scopes: ['orders:read', 'orders:write', 'inventory:read'] };
  });
  // Not authorized in the mtls scenario, but known here: [mtls, passport] has no authorize stage.
  users[pool.foreignOrg.subject] = { id: 'usr-900', roles: ['partner'], scopes: ['orders:read'] };
  return {
    issuer: 'https://passgate.shop.example',
    audience: ['orders', 'inventory', 'billing'],
    ttlSeconds: 300,
    keys: { active: 'bench-1', entries: [{ id: 'bench-1', alg: 'EdDSA', generate: true }] },
    authLevels: { mtls: 'HIGH' },
    source: { type: 'static', users },
  };
}

/** Read when a scenario is prepared (run.ts may start its own pinned redis-server first). */
const redisUrl = (): string => process.env['BENCH_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

function chainScenario(kind: ChainKind, description: string): BenchScenario {
  return {
    name: kind,
    description,
    async prepare() {
      const REDIS_URL = redisUrl();
      const pool = await certPool(POOL_SIZE);
      const authorize = { type: 'authorize', kinds: ['user'], groups: ['partners'], attributes: { org: [...PARTNER_ORGS] } };
      const chain = kind === 'mtls' ? [{ type: 'mtls' }, authorize] : kind === 'passport' ? [{ type: 'mtls' }, { type: 'passport' }] : [{ type: 'fds' }, { type: 'mtls' }, { type: 'passport' }];
      const sections: Record<string, unknown> = { identity: mtlsIdentityConfig(pool) };
      if (kind !== 'mtls') sections['passport'] = passportSection(pool);
      let teardown: (() => Promise<void>) | undefined;
      let keyPrefix = '';
      if (kind === 'full') {
        keyPrefix = `bench:check:${process.pid}-${Date.now().toString(36)}:`;
        const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 2000 });
        try {
          await redis.connect();
          await redis.ping();
        } catch (err) {
          redis.disconnect();
          throw new Error(`scenario full needs Redis at ${REDIS_URL} (set BENCH_REDIS_URL to use another): ${(err as Error).message}`);
        }
        teardown = async () => {
          try {
            const n = await deleteKeys(redis, keyPrefix);
            process.stderr.write(`  full: deleted ${n} Redis key(s) under ${keyPrefix}\n`);
          } finally {
            redis.disconnect();
          }
        };
        sections['fds'] = {
          store: 'redis',
          // A looser command timeout than the 50 ms default: on a shared, loaded machine a slow reply would turn into fds_unavailable and fail the mix check.
          redis: { mode: 'single', url: REDIS_URL, keyPrefix, commandTimeoutMs: 500 },
          authFailureStatuses: [401],
          // Production-shaped rules, with thresholds no bench run reaches: the bench measures the
          // counting on every Check, not blocking (a block would change the answers verified up front).
          rules: [
            { name: 'ip-auth-failures', events: ['auth_failure'], subject: 'ip', threshold: 100_000, window: '60s', block: '1h' },
            { name: 'cert-auth-failures', events: ['auth_failure'], subject: 'cert', threshold: 100_000, window: '60s', block: '1h', escalate: { ttls: ['6h', '1d'], memory: '1d' } },
            // Counted on every partner Check; the h2load row sends one IP at full speed, so the window is short
            // and the threshold far above what a run reaches (each target also has its own key prefix, run.ts).
            { name: 'partner-ip-flood', events: ['request'], subject: 'ip', threshold: 100_000, window: '2s', block: '10m' },
          ],
        };
      }
      const mix = chainMix(pool, kind);
      const first = mix.find((m) => m.name.startsWith('partner cert '))!;
      return {
        config: (knobs) => coreConfig(knobs, chain, sections),
        mix,
        h2loadEntry: first.name,
        facts: {
          routes: 50,
          'partner chain': chain.map((s) => s.type).join(', '),
          'client certificates': pool.good.length,
          'bad certificate entries': 3,
          'mix entries': mix.length,
          ...(kind === 'full' ? { 'fds store': `redis ${REDIS_URL} prefix ${keyPrefix}` } : {}),
        },
        ...(teardown ? { teardown } : {}),
      };
    },
  };
}

export const mtlsScenario = chainScenario('mtls', 'core table and traffic; the 12 partner routes run [mtls, authorize] with XFCC from 200 client certificates (CA-verified, cached after warm-up) plus bad ones');
export const passportScenario = chainScenario('passport', 'as mtls, partner routes run [mtls, passport] (static source, generated EdDSA key; Passports cached after warm-up)');
export const fullScenario = chainScenario('full', 'as passport, partner routes run [fds, mtls, passport] with fds.store redis (local Redis, unique key prefix, non-triggering rules): the production chain');

/** Scenarios by name, in the order `--scenario all` runs them. */
export const SCENARIOS: Readonly<Record<string, BenchScenario>> = {
  core: coreScenario,
  mtls: mtlsScenario,
  passport: passportScenario,
  full: fullScenario,
};
