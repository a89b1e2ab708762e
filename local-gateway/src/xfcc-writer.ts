/**
 * What Envoy's connection manager does with x-forwarded-client-cert before any
 * filter runs, and the certificate facts it derives from the TLS peer:
 * SHA-256 digest, URL-encoded PEM, RFC 2253 subject, URI/DNS SANs, principal.
 *
 * The certificate is read with a tiny DER walker instead of a library, so the
 * subject is printed the way OpenSSL's X509_NAME_print_ex(XN_FLAG_RFC2253)
 * prints it (Envoy's subjectPeerCertificate), not the way a JS library does.
 */
import { createHash } from 'node:crypto';

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

// ---- DER ------------------------------------------------------------------------------

interface Tlv {
  readonly tag: number;
  /** Start of the whole element (tag byte). */
  readonly start: number;
  /** Start of the contents. */
  readonly body: number;
  /** End of the contents (exclusive). */
  readonly end: number;
}

function readTlv(buf: Buffer, at: number): Tlv {
  if (at + 2 > buf.length) throw new Error(`DER truncated at byte ${at}`);
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) throw new Error('DER high tag numbers are not used in certificates');
  let len = buf[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error(`unsupported DER length form at byte ${at}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body + i]!;
    body += n;
  }
  const end = body + len;
  if (end > buf.length) throw new Error(`DER element at byte ${at} runs past the end`);
  return { tag, start: at, body, end };
}

function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const t = readTlv(buf, at);
    out.push(t);
    at = t.end;
  }
  return out;
}

function oidString(buf: Buffer, t: Tlv): string {
  const parts: number[] = [];
  let v = 0;
  for (let i = t.body; i < t.end; i++) {
    const b = buf[i]!;
    v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

/** OpenSSL short names (XN_FLAG_FN_SN) for the attribute types seen in practice. */
const SHORT_NAMES: Readonly<Record<string, string>> = {
  '2.5.4.3': 'CN', '2.5.4.4': 'SN', '2.5.4.5': 'serialNumber', '2.5.4.6': 'C', '2.5.4.7': 'L',
  '2.5.4.8': 'ST', '2.5.4.9': 'street', '2.5.4.10': 'O', '2.5.4.11': 'OU', '2.5.4.12': 'title',
  '2.5.4.15': 'businessCategory', '2.5.4.17': 'postalCode', '2.5.4.42': 'GN', '2.5.4.43': 'initials',
  '2.5.4.44': 'generationQualifier', '2.5.4.46': 'dnQualifier', '2.5.4.65': 'pseudonym',
  '2.5.4.97': 'organizationIdentifier', '0.9.2342.19200300.100.1.1': 'UID',
  '0.9.2342.19200300.100.1.25': 'DC', '1.2.840.113549.1.9.1': 'emailAddress',
  '1.3.6.1.4.1.311.60.2.1.1': 'jurisdictionL', '1.3.6.1.4.1.311.60.2.1.2': 'jurisdictionST',
  '1.3.6.1.4.1.311.60.2.1.3': 'jurisdictionC',
};

// Universal string types OpenSSL prints as text: UTF8, Numeric, Printable, T61, IA5, Visible, Universal, BMP.
const STRING_TAGS = new Set([0x0c, 0x12, 0x13, 0x14, 0x16, 0x1a, 0x1c, 0x1e]);

function hex2(b: number): string {
  return b.toString(16).toUpperCase().padStart(2, '0');
}

/** ASN1_STRFLGS_RFC2253 escaping of one attribute value (UTF-8 converted, bytes >= 0x80 as \XX). */
function escapeValue(buf: Buffer, t: Tlv): string {
  if (!STRING_TAGS.has(t.tag)) {
    // DUMP_UNKNOWN + DUMP_DER: "#" and the hex of the whole DER element.
    return `#${buf.subarray(t.start, t.end).toString('hex').toUpperCase()}`;
  }
  let text: string;
  const raw = buf.subarray(t.body, t.end);
  if (t.tag === 0x1e) text = Buffer.from(raw).swap16().toString('utf16le');
  else if (t.tag === 0x1c) {
    text = '';
    for (let i = 0; i + 3 < raw.length; i += 4) text += String.fromCodePoint(raw.readUInt32BE(i));
  } else if (t.tag === 0x14) text = raw.toString('latin1');
  else text = raw.toString('utf8');
  const bytes = Buffer.from(text, 'utf8');
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    const first = i === 0;
    const last = i === bytes.length - 1;
    if (c >= 0x80 || c < 0x20 || c === 0x7f) out += `\\${hex2(c)}`;
    else if (c === 0x2c || c === 0x2b || c === 0x22 || c === 0x5c || c === 0x3c || c === 0x3e || c === 0x3b) out += `\\${String.fromCharCode(c)}`;
    else if ((first && (c === 0x23 || c === 0x20)) || (last && c === 0x20)) out += `\\${String.fromCharCode(c)}`;
    else out += String.fromCharCode(c);
  }
  return out;
}

/** RFC 2253 text of a DER Name, as OpenSSL's XN_FLAG_RFC2253 prints it. */
export function rfc2253(nameDer: Buffer): string {
  const name = readTlv(nameDer, 0);
  const entries: Array<{ text: string; set: number }> = [];
  children(nameDer, name).forEach((rdn, set) => {
    for (const atv of children(nameDer, rdn)) {
      const [type, value] = children(nameDer, atv);
      if (!type || !value) throw new Error('malformed AttributeTypeAndValue');
      const oid = oidString(nameDer, type);
      entries.push({ text: `${SHORT_NAMES[oid] ?? oid}=${escapeValue(nameDer, value)}`, set });
    }
  });
  // XN_FLAG_DN_REV reverses the flat entry list; entries of one multi-valued RDN are joined with "+".
  entries.reverse();
  let out = '';
  for (let i = 0; i < entries.length; i++) {
    if (i > 0) out += entries[i]!.set === entries[i - 1]!.set ? '+' : ',';
    out += entries[i]!.text;
  }
  return out;
}

interface TbsParts {
  subject: Buffer;
  uriSans: string[];
  dnsSans: string[];
}

function tbsParts(der: Buffer): TbsParts {
  const cert = readTlv(der, 0);
  const [tbs] = children(der, cert);
  if (!tbs) throw new Error('not a certificate');
  const fields = children(der, tbs);
  let i = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] version
  // serialNumber, signature, issuer, validity, subject
  const subject = fields[i + 4];
  if (!subject) throw new Error('certificate has no subject');
  const out: TbsParts = { subject: der.subarray(subject.start, subject.end), uriSans: [], dnsSans: [] };
  for (i = i + 5; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.tag !== 0xa3) continue; // [3] extensions
    const [exts] = children(der, f);
    if (!exts) continue;
    for (const ext of children(der, exts)) {
      const parts = children(der, ext);
      if (!parts[0] || oidString(der, parts[0]) !== '2.5.29.17') continue;
      const octets = parts[parts.length - 1]!;
      const gns = readTlv(der, octets.body);
      for (const gn of children(der, gns)) {
        const value = der.subarray(gn.body, gn.end).toString('latin1');
        if (gn.tag === 0x86) out.uriSans.push(value); // [6] uniformResourceIdentifier
        else if (gn.tag === 0x82) out.dnsSans.push(value); // [2] dNSName
      }
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
