/**
 * The local gateway: a DEVELOPMENT AND TEST TOOL that plays the Istio ingress
 * gateway (Envoy) in front of Passgate on one machine. Never a production proxy.
 *
 * Per request, in Envoy's order:
 *  1. connection manager: `:authority/:path/:method/:scheme` pseudo-headers,
 *     x-envoy-* stripped, x-forwarded-proto set, x-forwarded-for appended,
 *     x-request-id generated when absent, XFCC per forward_client_cert_details
 *     (SANITIZE_SET: client copies removed; set from the verified client cert);
 *  2. the sanitize and trace proxy-wasm filters (phase AUTHN), request headers;
 *  3. ext_authz: a gRPC Check with a deadline, the answer applied with Envoy's
 *     semantics (apply-check-response.ts);
 *  4. the router: proxied to the upstream, bodies streamed (proxy.ts);
 *  5. the response back through ext_authz (response_headers_to_add) and the
 *     wasm filters' response callbacks, to the client.
 *
 * TLS listeners ask for a client certificate (like Istio `tls.mode:
 * OPTIONAL_MUTUAL`): without one the request still reaches ext_authz (which
 * answers 401); a certificate that does not verify against the CA (unknown
 * issuer, expired) is refused at TLS: the connection is closed before any
 * HTTP is read, as Envoy's handshake would fail.
 */
import http from 'node:http';
import https from 'node:https';
import { randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { createAuthorizationClient, type AuthorizationClient } from '../../ext-authz/src/proto/load.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { loadPlugin, runFilterChain, type Plugin, type Properties } from '../../wasm-filters/host/index.js';
import { buildCheckRequest } from './check-request.js';
import { applyCheckResponse, setHeader, type ExtAuthzSettings, type HeaderList } from './apply-check-response.js';
import { applyXfcc, peerCertificate, xfccElement, type ForwardClientCertMode, type PeerCertificate } from './xfcc-writer.js';
import { forward, type UpstreamTarget } from './proxy.js';

export const DEV_TOOL_NOTICE = 'passgate local gateway: a development and test tool that emulates an Istio/Envoy gateway; never use it as a production proxy';

export interface ListenerOptions {
  /** Shown in logs; also the key of `LocalGateway.ports`. */
  readonly name: string;
  readonly host?: string;
  /** 0 = any free port. */
  readonly port: number;
  /** Present = HTTPS listener asking for client certificates. */
  readonly tls?: {
    readonly key: string | Buffer;
    readonly cert: string | Buffer;
    /** CA bundle client certificates must chain to. */
    readonly ca: string | Buffer;
  };
  /** Envoy's per-route ext_authz context_extensions, e.g. { gateway: 'secure' }. */
  readonly contextExtensions?: Readonly<Record<string, string>>;
  /** Istio gateways: SANITIZE_SET (the default here). */
  readonly forwardClientCert?: ForwardClientCertMode;
}

export interface ExtAuthzOptions extends Partial<ExtAuthzSettings> {
  /** host:port of Passgate's gRPC listener. */
  readonly target: string;
  /** Envoy's ext_authz timeout (default 200 ms), sent as the gRPC deadline. */
  readonly timeoutMs?: number;
  /** Envoy's with_request_body (Istio includeRequestBodyInCheck): buffer the body and send it in the Check. */
  readonly withRequestBody?: WithRequestBody;
}

export interface WithRequestBody {
  readonly maxRequestBytes: number;
  /** true: a longer body is cut and marked `x-envoy-auth-partial-body: true`; false: refused with 413, as Envoy does. */
  readonly allowPartialMessage: boolean;
  /** true: raw_body bytes; false: the body as a UTF-8 string. */
  readonly packAsBytes: boolean;
}

export interface WasmFilterOptions {
  readonly name: string;
  readonly wasm: Uint8Array;
  /** The WasmPlugin pluginConfig (JSON object). */
  readonly config?: object;
  readonly failStrategy?: 'FAIL_CLOSE' | 'FAIL_OPEN';
}

export interface GatewayOptions {
  readonly listeners: readonly ListenerOptions[];
  readonly upstream: UpstreamTarget;
  /** null = no ext_authz filter (requests go straight to the upstream). */
  readonly extAuthz: ExtAuthzOptions | null;
  /** Filters in chain order (Istio: priority order within phase AUTHN); empty = none. */
  readonly filters?: readonly WasmFilterOptions[];
  readonly logger?: Logger;
}

interface Response {
  status: number;
  /** Without `:status`. */
  headers: HeaderList;
  body: Buffer | Readable;
}

interface Listening {
  readonly options: ListenerOptions;
  readonly server: http.Server;
  readonly port: number;
  /** The listener certificate's principal (destination.principal) and URI SANs (XFCC By=). */
  readonly localPrincipal: string;
  readonly localUriSans: readonly string[];
}

/** What a TLS connection's client certificate gives every request on it, worked out once per connection. */
interface ConnectionPeer {
  readonly peer: PeerCertificate;
  /** The XFCC element this listener writes for it. */
  readonly xfcc: string;
}

function firstPemDer(pem: string | Buffer): Buffer {
  return new X509Certificate(pem).raw;
}

function hasBody(h: http.IncomingHttpHeaders): number {
  const cl = h['content-length'];
  if (cl !== undefined && /^\d+$/.test(cl)) return Number(cl);
  return h['transfer-encoding'] !== undefined ? -1 : 0;
}

function isBuffer(b: Buffer | Readable): b is Buffer {
  return Buffer.isBuffer(b);
}

/** Node's raw header array (name, value, name, value, ...), keeping repeated headers apart. */
function flat(headers: HeaderList): string[] {
  const out: string[] = [];
  for (const [k, v] of headers) if (!k.startsWith(':')) out.push(k, v);
  return out;
}

export class LocalGateway {
  readonly logger: Logger;
  private readonly listening: Listening[] = [];
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  private client: AuthorizationClient | null = null;
  private filters: Plugin[] = [];
  private readonly sockets = new Set<Socket>();
  // Envoy's stream ids are random uint64s; a random start and a counter keep them unique without a syscall per request.
  private nextStreamId = randomBytes(8).readBigUInt64BE() >> 1n;
  private readonly peers = new WeakMap<Socket, ConnectionPeer | null | 'refused'>();

  private constructor(private readonly options: GatewayOptions) {
    this.logger = options.logger ?? pino({ level: 'info' });
  }

  /** Port each listener is bound to, by listener name. */
  get ports(): Record<string, number> {
    return Object.fromEntries(this.listening.map((l) => [l.options.name, l.port]));
  }

  static async start(options: GatewayOptions): Promise<LocalGateway> {
    const gw = new LocalGateway(options);
    if (options.extAuthz) {
      gw.client = createAuthorizationClient(options.extAuthz.target);
      // Envoy keeps its ext_authz cluster connected (connection pool, health checks), so a user's first
      // request does not pay the HTTP/2 handshake inside its 200 ms timeout; connect now, as it would.
      // A service that is not up yet is not an error: the first Check then connects (or fails) as usual.
      const client = gw.client;
      await new Promise<void>((resolve) => client.waitForReady(Date.now() + 1_000, () => resolve()));
    }
    for (const f of options.filters ?? []) {
      gw.filters.push(
        await loadPlugin({
          wasm: f.wasm,
          pluginConfig: f.config ?? {},
          pluginName: f.name,
          failStrategy: f.failStrategy ?? 'FAIL_CLOSE',
          onLog: (e) => {
            if (e.level === 'warn' || e.level === 'error' || e.level === 'critical') gw.logger.warn({ filter: f.name, wasm: e.message }, 'wasm filter log');
          },
        }),
      );
    }
    try {
      for (const l of options.listeners) await gw.listen(l);
    } catch (err) {
      await gw.stop();
      throw err;
    }
    gw.logger.info(
      { listeners: gw.listening.map((l) => ({ name: l.options.name, port: l.port, tls: !!l.options.tls })), upstream: `${options.upstream.host}:${options.upstream.port}`, extAuthz: options.extAuthz?.target ?? 'off', filters: (options.filters ?? []).map((f) => f.name) },
      DEV_TOOL_NOTICE,
    );
    return gw;
  }

  private async listen(l: ListenerOptions): Promise<void> {
    let server: http.Server;
    let localPrincipal = '';
    let localUriSans: readonly string[] = [];
    if (l.tls) {
      const local = peerCertificate(firstPemDer(l.tls.cert));
      localPrincipal = local.principal;
      localUriSans = local.uriSans;
      server = https.createServer({ key: l.tls.key, cert: l.tls.cert, ca: l.tls.ca, requestCert: true, rejectUnauthorized: false });
      server.on('secureConnection', (socket: TLSSocket) => {
        // A certificate was presented but does not verify: refuse, as Envoy's handshake would.
        if (!socket.authorized && socket.getPeerCertificate()?.raw) {
          this.logger.warn({ listener: l.name, reason: String(socket.authorizationError), remote: socket.remoteAddress }, 'client certificate refused at TLS');
          socket.destroy();
        }
      });
      server.on('tlsClientError', (err) => this.logger.debug({ listener: l.name, err: err.message }, 'TLS handshake failed'));
    } else {
      server = http.createServer();
    }
    server.keepAliveTimeout = 60_000;
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    const entry = { options: l, server, port: 0, localPrincipal, localUriSans };
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.handle(entry, req, res).catch((err: unknown) => {
        this.logger.error({ listener: l.name, err: String((err as Error)?.stack ?? err) }, 'local gateway: request failed');
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end('local gateway internal error\n');
        } else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(l.port, l.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.listening.push({ ...entry, port: (server.address() as AddressInfo).port });
  }

  private async handle(l: Listening, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const tls = l.options.tls !== undefined;
    const socket = req.socket as TLSSocket;
    let conn: ConnectionPeer | null = null;
    if (tls) {
      // getPeerCertificate() builds a large object and the XFCC element is ~1 KB: once per connection, not per request.
      let cached = this.peers.get(socket);
      if (cached === undefined) {
        const pc = socket.getPeerCertificate();
        if (!pc?.raw) cached = null;
        else if (!socket.authorized) cached = 'refused';
        else {
          const peer = peerCertificate(pc.raw);
          cached = { peer, xfcc: xfccElement(peer, l.localUriSans) };
        }
        this.peers.set(socket, cached);
      }
      if (cached === 'refused') {
        socket.destroy();
        return;
      }
      conn = cached;
    }
    const scheme = tls ? 'https' : 'http';
    const remoteAddress = socket.remoteAddress ?? '';
    const remotePort = socket.remotePort ?? 0;

    // 1. Connection manager.
    const headers: HeaderList = [
      [':authority', req.headers.host ?? ''],
      [':path', req.url ?? '/'],
      [':method', req.method ?? 'GET'],
      [':scheme', scheme],
    ];
    const raw = req.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const k = raw[i]!.toLowerCase();
      // Host became :authority; Envoy strips its own control headers from edge requests.
      if (k === 'host' || k.startsWith('x-envoy-')) continue;
      headers.push([k, raw[i + 1]!]);
    }
    setHeader(headers, 'x-forwarded-proto', scheme);
    const xff = headers.filter(([k]) => k === 'x-forwarded-for').map(([, v]) => v);
    setHeader(headers, 'x-forwarded-for', xff.length > 0 ? `${xff.join(',')},${remoteAddress}` : remoteAddress);
    if (!headers.some(([k]) => k === 'x-request-id')) headers.push(['x-request-id', randomUUID()]);
    applyXfcc(headers, l.options.forwardClientCert ?? 'SANITIZE_SET', conn?.xfcc ?? null);

    const ctx: RequestCtx = {
      listener: l,
      req,
      streamId: (this.nextStreamId++).toString(),
      peer: conn?.peer ?? null,
      sni: tls ? (typeof socket.servername === 'string' ? socket.servername : '') : undefined,
      remoteAddress,
      remotePort,
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
      protocol: `HTTP/${req.httpVersion === '2.0' ? '2' : req.httpVersion}`,
      size: hasBody(req.headers),
    };
    const props = this.filters.length > 0 ? properties(ctx) : {};

    // 2-5.
    const out = await this.runFilters(headers, props, ctx);
    const body = out.body;
    if (!isBuffer(body)) {
      res.writeHead(out.status, flat(out.headers));
      body.on('error', () => res.destroy());
      body.pipe(res);
      return;
    }
    const list = out.headers;
    if (!list.some(([k]) => k === 'content-length') && !list.some(([k]) => k === 'transfer-encoding')) list.push(['content-length', String(body.length)]);
    res.writeHead(out.status, flat(list));
    res.end(body);
  }

  /** The filter chain as Envoy runs it (request A→B, response B→A) around ext_authz and the router. */
  private async runFilters(headers: HeaderList, props: Properties, ctx: RequestCtx): Promise<Response> {
    if (this.filters.length === 0) return this.authzAndRoute(headers, ctx);
    let stream: Readable | null = null;
    const result = await runFilterChain(this.filters, {
      requestHeaders: headers,
      properties: props,
      upstream: async (fwd) => {
        const inner = await this.authzAndRoute(fwd.headers, ctx);
        const hs: HeaderList = [[':status', String(inner.status)], ...inner.headers];
        const b = inner.body;
        if (isBuffer(b)) return { headers: hs, body: b };
        stream = b;
        return { headers: hs, body: '' };
      },
    });
    const pending = stream as Readable | null;
    if (result.requestHeaders === null) ctx.req.resume(); // a local reply: the body is never read
    if (result.paused) {
      pending?.destroy();
      return { status: 500, headers: [['content-type', 'text/plain']], body: Buffer.from('wasm filter paused the stream\n') };
    }
    const status = result.status;
    const hs = result.responseHeaders.filter(([k]) => k !== ':status');
    // A local reply produced on the response path replaced the upstream response.
    if (pending && result.localReply === null) return { status, headers: hs, body: pending };
    pending?.destroy();
    return { status, headers: hs, body: result.responseBody };
  }

  private check(req: CheckRequest, timeoutMs: number): Promise<CheckResponse | null> {
    return new Promise((resolve) => {
      this.client!.Check(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err || !res) {
          this.logger.warn({ code: err?.code, details: err?.details }, 'ext_authz call failed');
          resolve(null);
        } else resolve(res);
      });
    });
  }

  private async authzAndRoute(headers: HeaderList, ctx: RequestCtx): Promise<Response> {
    const az = this.options.extAuthz;
    let toSet: HeaderList = [];
    let toAdd: HeaderList = [];
    let buffered: Buffer | undefined;
    if (az && this.client) {
      let body: { bytes: Buffer; packAsBytes: boolean } | undefined;
      if (az.withRequestBody && ctx.size !== 0) {
        const b = await bufferBody(ctx.req, headers, az.withRequestBody);
        if (b.kind === 'too_large') return { status: 413, headers: [['content-type', 'text/plain']], body: Buffer.from('Payload Too Large') };
        buffered = b.all;
        body = { bytes: b.sent, packAsBytes: az.withRequestBody.packAsBytes };
      }
      const checkRequest = buildCheckRequest({
        ...(body ? { body } : {}),
        streamId: ctx.streamId,
        headers,
        protocol: ctx.protocol,
        size: ctx.size,
        source: { address: ctx.remoteAddress, port: ctx.remotePort, principal: ctx.peer?.principal ?? '' },
        destination: { address: ctx.localAddress, port: ctx.localPort, principal: ctx.listener.localPrincipal },
        ...(ctx.sni !== undefined ? { sni: ctx.sni } : {}),
        ...(ctx.listener.options.contextExtensions ? { contextExtensions: ctx.listener.options.contextExtensions } : {}),
      });
      const response = await this.check(checkRequest, az.timeoutMs ?? 200);
      const outcome = applyCheckResponse(response, headers, {
        failureModeAllow: az.failureModeAllow ?? false,
        statusOnError: az.statusOnError ?? 403,
        failureModeAllowHeaderAdd: az.failureModeAllowHeaderAdd ?? false,
      });
      if (outcome.kind !== 'ok') {
        ctx.req.resume();
        return { status: outcome.status, headers: outcome.headers, body: Buffer.from(outcome.body) };
      }
      toSet = outcome.responseHeadersToSet;
      toAdd = outcome.responseHeadersToAdd;
    }
    const up = await forward(this.options.upstream, this.agent, headers, ctx.size === 0 ? null : buffered !== undefined ? Readable.from([buffered]) : ctx.req);
    if (ctx.size === 0) ctx.req.resume();
    if (up.kind === 'local') return { status: up.status, headers: up.headers, body: Buffer.from(up.body) };
    const hs = up.headers;
    for (const [k, v] of toSet) setHeader(hs, k, v);
    for (const h of toAdd) hs.push(h);
    return { status: up.status, headers: hs, body: up.body };
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.listening.map(
        (l) =>
          new Promise<void>((resolve) => {
            l.server.close(() => resolve());
          }),
      ),
    );
    for (const s of this.sockets) s.destroy();
    this.client?.close();
    this.agent.destroy();
  }

  /** Closes idle keep-alive connections (tests stopping quickly). */
  closeIdle(): void {
    for (const l of this.listening) l.server.closeIdleConnections();
  }
}

/**
 * Buffers a request body for the Check as Envoy's with_request_body does:
 * up to maxRequestBytes; past that, 413 or (allow_partial_message) the
 * first maxRequestBytes with `x-envoy-auth-partial-body: true`. The whole
 * body is kept for the upstream either way (a dev tool: bodies are small).
 */
async function bufferBody(req: http.IncomingMessage, headers: HeaderList, o: WithRequestBody): Promise<{ kind: 'ok'; all: Buffer; sent: Buffer } | { kind: 'too_large' }> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const all = Buffer.concat(chunks);
  if (all.length > o.maxRequestBytes && !o.allowPartialMessage) return { kind: 'too_large' };
  if (o.allowPartialMessage) setHeader(headers, 'x-envoy-auth-partial-body', all.length > o.maxRequestBytes ? 'true' : 'false');
  return { kind: 'ok', all, sent: all.length > o.maxRequestBytes ? all.subarray(0, o.maxRequestBytes) : all };
}

interface RequestCtx {
  readonly listener: Listening;
  readonly req: http.IncomingMessage;
  readonly streamId: string;
  readonly peer: PeerCertificate | null;
  readonly sni: string | undefined;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  readonly protocol: string;
  readonly size: number;
}

/** Stream properties a proxy-wasm filter can read (Envoy's attribute names). */
function properties(ctx: RequestCtx): Properties {
  const p: Properties = {
    'source.address': `${ctx.remoteAddress}:${ctx.remotePort}`,
    'source.port': ctx.remotePort,
    'destination.address': `${ctx.localAddress}:${ctx.localPort}`,
    'destination.port': ctx.localPort,
    'connection.mtls': ctx.peer !== null,
    'request.protocol': ctx.protocol,
  };
  if (ctx.sni !== undefined) p['connection.requested_server_name'] = ctx.sni;
  if (ctx.peer) {
    if (ctx.peer.uriSans[0] !== undefined) p['connection.uri_san_peer_certificate'] = ctx.peer.uriSans[0];
    if (ctx.peer.dnsSans[0] !== undefined) p['connection.dns_san_peer_certificate'] = ctx.peer.dnsSans[0];
    p['connection.subject_peer_certificate'] = ctx.peer.subject;
    p['connection.sha256_peer_certificate_digest'] = ctx.peer.fingerprint;
  }
  return p;
}
