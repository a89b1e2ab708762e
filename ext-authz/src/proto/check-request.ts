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
