/**
 * The one CheckRequest builder for code that has no real Envoy in front of
 * it (tests, benchmarks, embedders' tools): a request shaped as Envoy's
 * ext_authz filter sends it for an HTTP request (pseudo-headers in the
 * header map, peers as socket addresses), or a TCP-level one without http.
 */
import type { CheckRequest } from './types.js';

export interface CheckRequestOptions {
  method?: string;
  host?: string;
  path?: string;
  headers?: Record<string, string>;
  /** Sets context_extensions.gateway, as an Envoy route's per-filter config does. */
  gateway?: string;
  sourceAddress?: string;
  sourcePort?: number;
  destinationAddress?: string;
  destinationPort?: number;
  /** The peer's SPIFFE id / certificate principal (source.principal). */
  principal?: string;
  /** Request id (`x-request-id` as Envoy puts it in request.http.id). */
  id?: string;
  /** false: a network-level Check with no request.http. */
  http?: boolean;
  /** The body as Envoy's with_request_body forwards it with pack_as_bytes (raw_body). */
  body?: Uint8Array;
}

export function buildCheckRequest(opts: CheckRequestOptions = {}): CheckRequest {
  const method = opts.method ?? 'GET';
  const host = opts.host ?? 'www.example.com';
  const path = opts.path ?? '/';
  return {
    attributes: {
      source: {
        address: { socket_address: { address: opts.sourceAddress ?? '203.0.113.7', port_value: opts.sourcePort ?? 52311 } },
        ...(opts.principal ? { principal: opts.principal } : {}),
      },
      destination: { address: { socket_address: { address: opts.destinationAddress ?? '10.0.0.5', port_value: opts.destinationPort ?? 8443 } } },
      ...(opts.http === false
        ? {}
        : {
            request: {
              http: {
                id: opts.id ?? '1234567890',
                method,
                host,
                path,
                scheme: 'https',
                protocol: 'HTTP/2',
                headers: { ':method': method, ':path': path, ':authority': host, ':scheme': 'https', 'user-agent': 'curl/8.5.0', ...opts.headers },
                ...(opts.body !== undefined ? { raw_body: opts.body } : {}),
              },
            },
          }),
      ...(opts.gateway ? { context_extensions: { gateway: opts.gateway } } : {}),
    },
  };
}

/** A request as curl takes it (`passgate explain`, POST /explain). */
export interface UrlRequest {
  readonly url: string;
  readonly method?: string;
  /** Header names in any case; lowercased as Envoy sends them. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly sourceAddress?: string;
  readonly gateway?: string;
  /** URL-encoded PEM of the peer certificate (source.certificate). */
  readonly peerCertificate?: string;
}

/**
 * The CheckRequest Envoy sends for `url`: its port is the destination port
 * (gateways select by it), its scheme and query are kept. Throws a message
 * naming what was wrong when the URL is not one.
 */
export function checkRequestForUrl(r: UrlRequest): CheckRequest {
  let url: URL;
  try {
    url = new URL(r.url);
  } catch {
    throw new Error(`"${r.url}" is not a URL; write it as curl takes it: https://host/path`);
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers ?? {})) headers[k.toLowerCase()] = v;
  const request = buildCheckRequest({
    method: (r.method ?? 'GET').toUpperCase(),
    host: url.hostname,
    path: `${url.pathname}${url.search}`,
    headers,
    destinationPort: url.port !== '' ? Number(url.port) : url.protocol === 'http:' ? 80 : 443,
    ...(r.sourceAddress === undefined ? {} : { sourceAddress: r.sourceAddress }),
    ...(r.gateway === undefined ? {} : { gateway: r.gateway }),
  });
  const attributes = request.attributes!;
  const http = attributes.request!.http!;
  http.scheme = url.protocol.replace(':', '');
  http.headers![':scheme'] = http.scheme;
  if (r.peerCertificate !== undefined) attributes.source!.certificate = r.peerCertificate;
  return request;
}
