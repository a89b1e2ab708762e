/**
 * Normalizes a decoded CheckRequest into the flat view stages read.
 * Envoy already lowercases header keys, but other callers (grpcurl, tests,
 * older proxies) may not, and a stage must never miss `X-Passport` because
 * of case. Nothing here throws: absent parts become empty values.
 */
import type { CheckRequest, HeaderMap, Peer } from '../proto/types.js';
import { normalizePath, splitPathAndQuery } from './path-policy.js';
import { asciiLower } from './text.js';

export interface PeerView {
  /** IP address (v4 or v6) or '' when the peer is not a socket. */
  readonly address: string;
  readonly port: number;
  /** Envoy's principal: URI SAN, else DNS SAN, else subject of the peer certificate. */
  readonly principal: string;
  /** URL-encoded PEM, only when Envoy sends it (`include_peer_certificate`). */
  readonly certificate: string;
  readonly service: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface RequestView {
  /** False for network-level (TCP) checks, which carry no `request.http`. */
  readonly isHttp: boolean;
  readonly id: string;
  readonly method: string;
  /** Host without port and without the dot of an absolute name, ASCII-lowercased. */
  readonly host: string;
  /** Path without query string, normalized by the path policy (routing/path-policy.ts); '' when refused. */
  readonly path: string;
  /** Why the path was refused (400), when it was. */
  readonly pathRefusal: { readonly reason: string; readonly detail: string } | undefined;
  /** Query string without the leading '?', '' when absent. */
  readonly query: string;
  readonly scheme: string;
  readonly protocol: string;
  /** Lowercased header names; repeated headers arrive comma-joined from Envoy. */
  readonly headers: Readonly<Record<string, string>>;
  readonly source: PeerView;
  readonly destination: PeerView;
  readonly sni: string;
  readonly contextExtensions: Readonly<Record<string, string>>;
  /** Request size in bytes when Envoy knows it, else -1. */
  readonly size: number;
  /**
   * The request body when Envoy forwards it (`with_request_body`): `raw_body`
   * bytes (pack_as_bytes) or the `body` string; undefined otherwise. Envoy
   * forwards at most max_request_bytes and, with allow_partial_message, marks a
   * cut body with `x-envoy-auth-partial-body: true`.
   */
  readonly body: Uint8Array | string | undefined;
}

const EMPTY: Readonly<Record<string, string>> = Object.freeze(Object.create(null) as Record<string, string>);
const UPPER = /[A-Z]/;

function stringOr(value: unknown, fallback = ''): string {
  return typeof value === 'string' ? value : fallback;
}

/**
 * A map the stages may index by any name: without a prototype, so `constructor` or `toString` is found only
 * when the request carries it. The hot-path decoder's maps already are; other callers' objects are copied.
 */
function stringMap(value: unknown): Readonly<Record<string, string>> {
  if (value === null || typeof value !== 'object') return EMPTY;
  if (Object.getPrototypeOf(value) === null) return value as Record<string, string>;
  const out: Record<string, string> = Object.create(null);
  for (const key of Object.keys(value)) out[key] = (value as Record<string, string>)[key]!;
  return out;
}

/** Lowercases keys only when some key needs it, so the common case allocates nothing. */
export function lowercaseKeys(headers: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
  let needs = false;
  for (const key in headers) {
    if (UPPER.test(key)) {
      needs = true;
      break;
    }
  }
  if (!needs) return headers;
  const out: Record<string, string> = Object.create(null);
  for (const key in headers) {
    const lower = asciiLower(key);
    const value = String(headers[key]);
    // Two spellings of one header are one header, joined as Envoy joins repeats.
    out[lower] = out[lower] === undefined ? value : `${out[lower]},${value}`;
  }
  return out;
}

/**
 * Envoy with `encode_raw_headers` sends `header_map` (values as raw bytes)
 * instead of `headers`; fold it into the same lowercased, comma-joined map.
 */
function fromHeaderMap(map: HeaderMap): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (const h of map.headers ?? []) {
    if (typeof h.key !== 'string' || h.key === '') continue;
    const key = asciiLower(h.key);
    const value = h.raw_value && h.raw_value.length > 0 ? Buffer.from(h.raw_value).toString('latin1') : (h.value ?? '');
    out[key] = out[key] === undefined ? value : `${out[key]},${value}`;
  }
  return out;
}

function peerView(peer: Peer | undefined | null): PeerView {
  const socket = peer?.address?.socket_address;
  const port = socket?.port_value;
  return {
    address: stringOr(socket?.address),
    port: typeof port === 'number' ? port : Number(port ?? 0) || 0,
    principal: stringOr(peer?.principal),
    certificate: stringOr(peer?.certificate),
    service: stringOr(peer?.service),
    labels: stringMap(peer?.labels),
  };
}

/**
 * Strips a trailing `:port` (IPv6 brackets stay intact) and the dot of an absolute name
 * (`admin.example.com.` is the host `admin.example.com` to DNS and browsers), and lowercases ASCII.
 */
export function hostWithoutPort(authority: string): string {
  if (authority === '') return '';
  let end = authority.length;
  if (authority.charCodeAt(0) === 91 /* [ */) {
    const close = authority.indexOf(']');
    end = close === -1 ? authority.length : close + 1;
  } else {
    const colon = authority.lastIndexOf(':');
    if (colon !== -1 && authority.indexOf(':') === colon) end = colon;
  }
  if (end > 1 && authority.charCodeAt(end - 1) === 46 /* . */) end--;
  const host = end === authority.length ? authority : authority.slice(0, end);
  return asciiLower(host);
}

/** The TLS server name as a host: ASCII-lowercased, without the dot of an absolute name. */
function sniHost(sni: string): string {
  return asciiLower(sni.length > 1 && sni.charCodeAt(sni.length - 1) === 46 ? sni.slice(0, -1) : sni);
}

export function toRequestView(request: CheckRequest | null | undefined): RequestView {
  const attributes = request?.attributes;
  const http = attributes?.request?.http;
  const headers =
    http?.header_map && (http.headers === undefined || Object.keys(http.headers).length === 0)
      ? fromHeaderMap(http.header_map)
      : lowercaseKeys(stringMap(http?.headers));
  const rawPath = stringOr(http?.path, stringOr(headers[':path']));
  const split = splitPathAndQuery(rawPath);
  const normal = normalizePath(split.path);
  const size = http?.size;
  return {
    isHttp: http !== undefined && http !== null,
    id: stringOr(http?.id),
    // As sent: methods are case-sensitive (RFC 9110 §9.1), and a backend may read `get` as another method than `GET`.
    method: stringOr(http?.method, stringOr(headers[':method'])),
    host: hostWithoutPort(stringOr(http?.host, stringOr(headers[':authority'], stringOr(headers['host'])))),
    path: normal.ok ? normal.path : '',
    pathRefusal: normal.ok ? undefined : { reason: normal.reason, detail: normal.detail },
    query: split.query ?? stringOr(http?.query),
    scheme: stringOr(http?.scheme, stringOr(headers[':scheme'])),
    protocol: stringOr(http?.protocol),
    headers,
    source: peerView(attributes?.source),
    destination: peerView(attributes?.destination),
    sni: sniHost(stringOr(attributes?.tls_session?.sni)),
    contextExtensions: stringMap(attributes?.context_extensions),
    size: size === undefined || size === null ? -1 : Number(size),
    body: http?.raw_body && http.raw_body.length > 0 ? http.raw_body : http?.body ? http.body : undefined,
  };
}
