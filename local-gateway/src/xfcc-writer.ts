/**
 * What Envoy's connection manager does with x-forwarded-client-cert before any
 * filter runs, and the certificate facts it derives from the TLS peer:
 * SHA-256 digest, URL-encoded PEM, RFC 2253 subject, URI/DNS SANs, principal.
 *
 * The certificate is read with the service's own DER walker and RFC 2253
 * printer (ext-authz/src/identity/rfc2253.ts), so the subject is printed the
 * way OpenSSL's X509_NAME_print_ex(XN_FLAG_RFC2253) prints it (Envoy's
 * subjectPeerCertificate), the same string the service derives.
 */
import { createHash } from 'node:crypto';
import { children, oidText, readTlv, rfc2253, tbsFields } from '../../ext-authz/src/identity/rfc2253.js';

export const XFCC = 'x-forwarded-client-cert';

/** The parts of a peer certificate Envoy exposes (ssl()->... accessors). */
export interface PeerCertificate {
  readonly der: Buffer;
  /** Lowercase hex SHA-256 of the DER (XFCC `Hash=`). */
  readonly sha256: string;
  /** PEM, URL-encoded the way Envoy encodes it for XFCC `Cert=`. */
  readonly urlEncodedPem: string;
  /** RFC 2253 subject (most specific RDN first, `,` without spaces). */
  readonly subject: string;
  readonly uriSans: readonly string[];
  readonly dnsSans: readonly string[];
  /** Envoy's principal: first URI SAN, else first DNS SAN, else the subject. */
  readonly principal: string;
}

/** forward_client_cert_details modes; Istio gateways use SANITIZE_SET. */
export type ForwardClientCertMode = 'SANITIZE' | 'FORWARD_ONLY' | 'APPEND_FORWARD' | 'SANITIZE_SET' | 'ALWAYS_FORWARD_ONLY';

/** set_current_client_cert_details; Istio's gateway default is subject, cert, uri, dns. */
export interface ClientCertDetails {
  readonly cert?: boolean;
  readonly chain?: boolean;
  readonly subject?: boolean;
  readonly uri?: boolean;
  readonly dns?: boolean;
}

export const ISTIO_GATEWAY_DETAILS: ClientCertDetails = Object.freeze({ subject: true, cert: true, uri: true, dns: true });

function hex2(b: number): string {
  return b.toString(16).toUpperCase().padStart(2, '0');
}

interface TbsParts {
  subject: Buffer;
  uriSans: string[];
  dnsSans: string[];
}

function tbsParts(der: Buffer): TbsParts {
  const { subject, extensions } = tbsFields(der);
  const out: TbsParts = { subject: der.subarray(subject.start, subject.end), uriSans: [], dnsSans: [] };
  const [exts] = extensions ? children(der, extensions) : [];
  if (!exts) return out;
  for (const ext of children(der, exts)) {
    const parts = children(der, ext);
    if (!parts[0] || oidText(der, parts[0]) !== '2.5.29.17') continue;
    const octets = parts[parts.length - 1]!;
    const gns = readTlv(der, octets.body, octets.end);
    for (const gn of children(der, gns)) {
      const value = der.subarray(gn.body, gn.end).toString('latin1');
      if (gn.tag === 0x86) out.uriSans.push(value); // [6] uniformResourceIdentifier
      else if (gn.tag === 0x82) out.dnsSans.push(value); // [2] dNSName
    }
  }
  return out;
}

/** PEM as OpenSSL's PEM_write_bio_X509 writes it (64-column base64, trailing newline). */
export function derToPem(der: Buffer): string {
  const b64 = der.toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += `${b64.slice(i, i + 64)}\n`;
  return `-----BEGIN CERTIFICATE-----\n${body}-----END CERTIFICATE-----\n`;
}

/** Envoy's URL encoding of a PEM for XFCC (newline, space, +, /, =; uppercase hex). */
export function urlEncodePem(pem: string): string {
  return pem.replace(/[\n +/=]/g, (c) => `%${hex2(c.charCodeAt(0))}`);
}

const factsCache = new Map<string, PeerCertificate>();

/** Certificate facts from the DER; cached by digest (a TLS session presents the same cert on every request). */
export function peerCertificate(der: Buffer): PeerCertificate {
  const sha256 = createHash('sha256').update(der).digest('hex');
  const hit = factsCache.get(sha256);
  if (hit) return hit;
  const parts = tbsParts(der);
  const subject = rfc2253(parts.subject);
  const facts: PeerCertificate = Object.freeze({
    der,
    sha256,
    urlEncodedPem: urlEncodePem(derToPem(der)),
    subject,
    uriSans: Object.freeze(parts.uriSans),
    dnsSans: Object.freeze(parts.dnsSans),
    principal: parts.uriSans[0] ?? parts.dnsSans[0] ?? subject,
  });
  if (factsCache.size > 1000) factsCache.clear();
  factsCache.set(sha256, facts);
  return facts;
}

/** URI SANs of a certificate (for `By=`, from the proxy's own certificate). */
export function uriSansOf(der: Buffer): string[] {
  return tbsParts(der).uriSans;
}

/**
 * One XFCC element exactly as Envoy writes it: By (local URI SANs), Hash, then
 * Cert, Chain, Subject, URI, DNS in that order. URI and DNS values are not
 * quoted (Envoy does not); Subject is always present and quoted; an empty
 * `URI=` is written when the certificate has no URI SAN.
 */
export function xfccElement(
  peer: PeerCertificate,
  details: ClientCertDetails = ISTIO_GATEWAY_DETAILS,
  localUriSans: readonly string[] = [],
  urlEncodedChain = '',
): string {
  const parts: string[] = [];
  for (const by of localUriSans) parts.push(`By=${by}`);
  parts.push(`Hash=${peer.sha256}`);
  if (details.cert) parts.push(`Cert="${peer.urlEncodedPem}"`);
  if (details.chain && urlEncodedChain !== '') parts.push(`Chain="${urlEncodedChain}"`);
  if (details.subject) parts.push(`Subject="${peer.subject}"`);
  if (details.uri) {
    if (peer.uriSans.length === 0) parts.push('URI=');
    for (const u of peer.uriSans) parts.push(`URI=${u}`);
  }
  if (details.dns) for (const d of peer.dnsSans) parts.push(`DNS=${d}`);
  return parts.join(';');
}

/**
 * Applies forward_client_cert_details to a lowercased header list in place
 * (Envoy's mutateXfccRequestHeader). `peer` is the validated client
 * certificate, or null for plain HTTP and for TLS without a client certificate.
 */
export function applyXfcc(
  headers: Array<[string, string]>,
  mode: ForwardClientCertMode,
  peer: PeerCertificate | null,
  details: ClientCertDetails = ISTIO_GATEWAY_DETAILS,
  localUriSans: readonly string[] = [],
): void {
  if (mode === 'ALWAYS_FORWARD_ONLY') return;
  if (peer === null || mode === 'SANITIZE') {
    removeAll(headers, XFCC);
    return;
  }
  if (mode === 'FORWARD_ONLY') return;
  const element = xfccElement(peer, details, localUriSans);
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
