/**
 * Builds the CheckRequest Envoy's ext_authz HTTP filter sends for a request
 * (Envoy's check_request_utils): source/destination peers with principals,
 * request.http with lowercased headers (pseudo-headers included, repeated
 * headers joined with ","), tls_session.sni, per-listener context_extensions.
 */
import type { CheckRequest } from '../../ext-authz/src/proto/types.js';

/** The request as the ext_authz filter sees it (after the connection manager and earlier filters). */
export interface DownstreamRequest {
  /** Envoy's stream id (a decimal uint64). */
  readonly streamId: string;
  /** Lowercased header list including `:method`, `:path`, `:authority`, `:scheme`. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** "HTTP/1.0", "HTTP/1.1", "HTTP/2". */
  readonly protocol: string;
  /** Body size when known (content-length), 0 with no body, -1 when unknown (chunked). */
  readonly size: number;
  readonly source: PeerInfo;
  readonly destination: PeerInfo;
  /** TLS only: the SNI the client sent ("" when none); undefined for plain HTTP. */
  readonly sni?: string;
  readonly contextExtensions?: Readonly<Record<string, string>>;
  /** with_request_body: the buffered body (at most max_request_bytes), as raw_body (pack_as_bytes) or as the body string. */
  readonly body?: { readonly bytes: Buffer; readonly packAsBytes: boolean };
}

export interface PeerInfo {
  readonly address: string;
  readonly port: number;
  /** Envoy's principal (first URI SAN, else first DNS SAN, else subject); "" without a certificate. */
  readonly principal: string;
}

function peer(p: PeerInfo) {
  return {
    address: { socket_address: { address: p.address, port_value: p.port } },
    ...(p.principal !== '' ? { principal: p.principal } : {}),
  };
}

/** Header map as Envoy's ext_authz fills it: later duplicates are appended with ",". */
export function headerMapOf(headers: ReadonlyArray<readonly [string, string]>): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, v] of headers) {
    const prev = out[k];
    out[k] = prev === undefined ? v : `${prev},${v}`;
  }
  return out;
}

export function buildCheckRequest(req: DownstreamRequest): CheckRequest {
  const headers = headerMapOf(req.headers);
  const path = headers[':path'] ?? '';
  // Envoy leaves request.http.query and fragment empty: the query stays in `path`.
  return {
    attributes: {
      source: peer(req.source),
      destination: peer(req.destination),
      request: {
        time: nowTimestamp(),
        http: {
          id: req.streamId,
          method: headers[':method'] ?? '',
          headers: { ...headers },
          path,
          host: headers[':authority'] ?? '',
          // Envoy fills scheme from x-forwarded-proto, which the connection manager set.
          scheme: headers['x-forwarded-proto'] ?? headers[':scheme'] ?? '',
          size: String(req.size),
          protocol: req.protocol,
          ...(req.body === undefined ? {} : req.body.packAsBytes ? { raw_body: req.body.bytes } : { body: req.body.bytes.toString('utf8') }),
        },
      },
      ...(req.contextExtensions && Object.keys(req.contextExtensions).length > 0
        ? { context_extensions: { ...req.contextExtensions } }
        : {}),
      ...(req.sni !== undefined ? { tls_session: { sni: req.sni } } : {}),
    },
  };
}

function nowTimestamp(): { seconds: number; nanos: number } {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}
