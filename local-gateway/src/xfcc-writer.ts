/**
 * What Envoy's connection manager does with x-forwarded-client-cert before any
 * filter runs, and the certificate facts it derives from the TLS peer:
 * SHA-256 digest, RFC 2253 subject, URI/DNS SANs, principal.
 *
 * Nothing here parses certificates or writes XFCC itself: the facts come from
 * the service's own decoder (ext-authz/src/identity/certificate.ts, whose
 * subject is OpenSSL's XN_FLAG_RFC2253 print, Envoy's subjectPeerCertificate)
 * and the element from `formatXfccElement` (ext-authz/src/identity/xfcc.ts),
 * the one XFCC writer in Passgate.
 */
import { decodeCertificate, nodeCertificate } from '../../ext-authz/src/identity/certificate.js';
import { formatXfccElement, urlEncodePem } from '../../ext-authz/src/identity/xfcc.js';
import type { X509Certificate } from 'node:crypto';

export const XFCC = 'x-forwarded-client-cert';

/** The parts of a peer certificate Envoy exposes (ssl()->... accessors). */
export interface PeerCertificate {
  readonly cert: X509Certificate;
  /** PEM as OpenSSL's PEM_write_bio_X509 writes it (what Envoy URL-encodes into `Cert=`). */
  readonly pem: string;
  /** Lowercase hex SHA-256 of the DER (XFCC `Hash=`). */
  readonly fingerprint: string;
  /** RFC 2253 subject (most specific RDN first, `,` without spaces). */
  readonly subject: string;
  readonly uriSans: readonly string[];
  readonly dnsSans: readonly string[];
  /** Envoy's principal: first URI SAN, else first DNS SAN, else the subject. */
  readonly principal: string;
}

/** forward_client_cert_details modes; Istio gateways use SANITIZE_SET. */
export type ForwardClientCertMode = 'SANITIZE' | 'FORWARD_ONLY' | 'APPEND_FORWARD' | 'SANITIZE_SET' | 'ALWAYS_FORWARD_ONLY';

/** PEM as OpenSSL's PEM_write_bio_X509 writes it (64-column base64, trailing newline). */
export function derToPem(der: Buffer): string {
  const b64 = der.toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += `${b64.slice(i, i + 64)}\n`;
  return `-----BEGIN CERTIFICATE-----\n${body}-----END CERTIFICATE-----\n`;
}

const factsCache = new Map<string, PeerCertificate>();

/**
 * Certificate facts from the DER (a TLS peer's `raw`), cached by the DER
 * itself: the gateway asks once per connection, and clients reconnect with
 * the same certificate. Throws when the service's decoder refuses it.
 */
export function peerCertificate(der: Buffer): PeerCertificate {
  const pem = derToPem(der);
  const hit = factsCache.get(pem);
  if (hit) return hit;
  const decoded = decodeCertificate(pem);
  if (!decoded.ok) throw new Error(`local gateway: peer certificate: ${decoded.error}`);
  const { facts } = decoded.value;
  const cert = nodeCertificate(decoded.value);
  const peer: PeerCertificate = Object.freeze({
    cert,
    pem,
    fingerprint: facts.fingerprint,
    subject: facts.subject,
    uriSans: facts.sans.uri,
    dnsSans: facts.sans.dns,
    principal: facts.principal,
  });
  if (factsCache.size > 1000) factsCache.clear();
  factsCache.set(pem, peer);
  return peer;
}

/**
 * One XFCC element exactly as an Istio gateway writes it
 * (set_current_client_cert_details: subject, cert, uri, dns; no chain):
 * `By=` (the listener certificate's URI SANs), Hash, Cert, Subject, URI, DNS.
 */
export function xfccElement(peer: PeerCertificate, localUriSans: readonly string[] = []): string {
  // The facts are already decoded: write them, rather than have toXfcc decode the SANs again.
  return formatXfccElement({
    by: localUriSans,
    hash: peer.fingerprint,
    cert: urlEncodePem(peer.pem),
    subject: peer.subject,
    uri: peer.uriSans,
    dns: peer.dnsSans,
  });
}

/**
 * Applies forward_client_cert_details to a lowercased header list in place
 * (Envoy's mutateXfccRequestHeader). `element` is this connection's
 * xfccElement, or null for plain HTTP and for TLS without a client certificate.
 */
export function applyXfcc(headers: Array<[string, string]>, mode: ForwardClientCertMode, element: string | null): void {
  if (mode === 'ALWAYS_FORWARD_ONLY') return;
  if (element === null || mode === 'SANITIZE') {
    removeAll(headers, XFCC);
    return;
  }
  if (mode === 'FORWARD_ONLY') return;
  if (mode === 'APPEND_FORWARD') {
    const existing = headers.filter(([k]) => k === XFCC).map(([, v]) => v);
    removeAll(headers, XFCC);
    headers.push([XFCC, existing.length > 0 ? `${existing.join(',')},${element}` : element]);
    return;
  }
  removeAll(headers, XFCC);
  headers.push([XFCC, element]);
}

function removeAll(headers: Array<[string, string]>, name: string): void {
  for (let i = headers.length - 1; i >= 0; i--) if (headers[i]![0] === name) headers.splice(i, 1);
}
