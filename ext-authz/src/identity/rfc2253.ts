/**
 * The one RFC 2253 printer in Passgate: a distinguished name printed exactly
 * as OpenSSL's X509_NAME_print_ex(..., XN_FLAG_RFC2253) prints it, which is
 * the string Envoy puts in `source.principal` (certificate without URI/DNS
 * SAN) and in XFCC `Subject="..."`. Subject rules, the principal fallback,
 * issuer matching and the dev tools (devcerts, local gateway) all use it, so
 * an operator can paste a subject from an Envoy log into a rule.
 *
 * It reads the DER itself (a tiny bounds-checked walker) instead of going
 * through a JS X.509 library, because the output depends on the encoded
 * string type and raw bytes, which libraries normalize away.
 *
 * What XN_FLAG_RFC2253 means, as implemented here:
 * - RDNs most specific first (DN_REV reverses the flat attribute list, so the
 *   attributes of one multi-valued RDN come out reversed too), `,` between
 *   RDNs and `+` inside one, no spaces.
 * - Attribute type: OpenSSL's short name when OpenSSL knows the OID (table
 *   below), else the dotted OID, and then the value is dumped as `#` + hex of
 *   its DER whatever its type (DUMP_UNKNOWN_FIELDS).
 * - Value: string types are printed as text; anything else (BIT STRING,
 *   SEQUENCE, ...) as `#` + uppercase hex of the whole DER element.
 *   UTF8String bytes are taken as they are; the other string types are
 *   converted to UTF-8 first (PrintableString/IA5/T61... byte = code point,
 *   BMPString 2 bytes, UniversalString 4 bytes). Then byte by byte:
 *   `,+"\<>;` get a backslash, so does a leading space or `#` and a trailing
 *   space, control bytes (< 0x20, 0x7F) and every byte >= 0x80 become `\XX`
 *   (so UTF-8 text shows as escaped UTF-8 bytes). `=` is not escaped.
 *   Strings OpenSSL refuses to decode (UTF8String that is not UTF-8, BMP or
 *   Universal strings holding surrogates or values past U+10FFFF) throw, so
 *   the certificate is rejected as it would be by OpenSSL.
 * - OpenSSL quirk kept on purpose: in a one-character value the "last"
 *   rule replaces the "first" one, so a lone `#` is printed bare.
 */

export interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the contents. */
  readonly body: number;
  /** End of the contents (exclusive). */
  readonly end: number;
}

/** One DER element at `at`; throws on truncation or forms certificates never use. */
export function readTlv(buf: Uint8Array, at: number, limit: number = buf.length): Tlv {
  if (at + 2 > limit) throw new Error(`DER truncated at byte ${at}`);
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) throw new Error(`DER high tag number at byte ${at} (not used in certificates)`);
  let len = buf[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error(`unsupported DER length form at byte ${at}`);
    if (body + n > limit) throw new Error(`DER truncated at byte ${at}`);
    // DER lengths are minimal: the long form only from 128 on, without leading zero bytes. A padded length
    // re-encodes the same certificate into other bytes (another SHA-256 fingerprint), so it is refused.
    if (buf[body] === 0) throw new Error(`DER length at byte ${at} has a leading zero byte (not DER)`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body + i]!;
    if (len < 128) throw new Error(`DER length at byte ${at} uses the long form for ${len} (not DER)`);
    body += n;
  }
  const end = body + len;
  if (end > limit) throw new Error(`DER element at byte ${at} runs past its container`);
  return { tag, start: at, body, end };
}

/** The elements inside a constructed element. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const t = readTlv(buf, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

/** Dotted text of an OBJECT IDENTIFIER's contents (arbitrary-size arcs). */
/** Longest OBJECT IDENTIFIER and arc read (bytes): UUID OIDs (2.25.<128 bits>) fit; longer ones would only cost CPU (BigInt arcs). */
const MAX_OID_BYTES = 128;
const MAX_ARC_BYTES = 20;

export function oidText(buf: Uint8Array, t: Tlv): string {
  if (t.tag !== 0x06) throw new Error(`expected an OBJECT IDENTIFIER at byte ${t.start}`);
  if (t.end - t.body > MAX_OID_BYTES) throw new Error(`OBJECT IDENTIFIER at byte ${t.start} is ${t.end - t.body} bytes long, over ${MAX_OID_BYTES}`);
  let arcBytes = 0;
  let out = '';
  let v = 0n;
  let first = true;
  for (let i = t.body; i < t.end; i++) {
    const b = buf[i]!;
    // DER: an arc starts with its first non-zero 7 bits (0x80 there pads it; OpenSSL refuses it).
    if (b === 0x80 && (i === t.body || (buf[i - 1]! & 0x80) === 0)) throw new Error(`malformed OBJECT IDENTIFIER at byte ${t.start}`);
    arcBytes = (b & 0x80) === 0 ? 0 : arcBytes + 1;
    if (arcBytes >= MAX_ARC_BYTES) throw new Error(`OBJECT IDENTIFIER at byte ${t.start} has an arc over ${MAX_ARC_BYTES} bytes`);
    v = (v << 7n) | BigInt(b & 0x7f);
    if ((b & 0x80) === 0) {
      if (first) {
        out = v < 40n ? `0.${v}` : v < 80n ? `1.${v - 40n}` : `2.${v - 80n}`;
        first = false;
      } else out += `.${v}`;
      v = 0n;
    }
  }
  if (first || (t.end > t.body && (buf[t.end - 1]! & 0x80) !== 0)) throw new Error(`malformed OBJECT IDENTIFIER at byte ${t.start}`);
  return out;
}

/**
 * OpenSSL 3 short names (OBJ_nid2sn) of the attribute types it knows, read
 * off `openssl req -subj` + `-nameopt RFC2253` output. OIDs missing here are
 * printed dotted with a `#hex` value, which is also what OpenSSL does for
 * OIDs it does not know.
 */
const SHORT_NAMES: ReadonlyMap<string, string> = (() => {
  const m = new Map<string, string>();
  const x520 = [
    [3, 'CN'], [4, 'SN'], [5, 'serialNumber'], [6, 'C'], [7, 'L'], [8, 'ST'], [9, 'street'], [10, 'O'], [11, 'OU'],
    [12, 'title'], [13, 'description'], [14, 'searchGuide'], [15, 'businessCategory'], [16, 'postalAddress'],
    [17, 'postalCode'], [18, 'postOfficeBox'], [19, 'physicalDeliveryOfficeName'], [20, 'telephoneNumber'],
    [21, 'telexNumber'], [22, 'teletexTerminalIdentifier'], [23, 'facsimileTelephoneNumber'], [24, 'x121Address'],
    [25, 'internationaliSDNNumber'], [26, 'registeredAddress'], [27, 'destinationIndicator'],
    [28, 'preferredDeliveryMethod'], [29, 'presentationAddress'], [30, 'supportedApplicationContext'],
    [31, 'member'], [32, 'owner'], [33, 'roleOccupant'], [34, 'seeAlso'], [35, 'userPassword'],
    [36, 'userCertificate'], [37, 'cACertificate'], [38, 'authorityRevocationList'],
    [39, 'certificateRevocationList'], [40, 'crossCertificatePair'], [41, 'name'], [42, 'GN'], [43, 'initials'],
    [44, 'generationQualifier'], [45, 'x500UniqueIdentifier'], [46, 'dnQualifier'], [47, 'enhancedSearchGuide'],
    [48, 'protocolInformation'], [49, 'distinguishedName'], [50, 'uniqueMember'], [51, 'houseIdentifier'],
    [52, 'supportedAlgorithms'], [53, 'deltaRevocationList'], [54, 'dmdName'], [65, 'pseudonym'], [72, 'role'],
    [97, 'organizationIdentifier'], [100, 'dnsName'],
  ] as const;
  for (const [n, sn] of x520) m.set(`2.5.4.${n}`, sn);
  const pilot = [
    [1, 'UID'], [2, 'textEncodedORAddress'], [3, 'mail'], [4, 'info'], [5, 'favouriteDrink'], [6, 'roomNumber'],
    [7, 'photo'], [8, 'userClass'], [9, 'host'], [10, 'manager'], [11, 'documentIdentifier'], [12, 'documentTitle'],
    [13, 'documentVersion'], [14, 'documentAuthor'], [15, 'documentLocation'], [20, 'homeTelephoneNumber'],
    [21, 'secretary'], [22, 'otherMailbox'], [23, 'lastModifiedTime'], [24, 'lastModifiedBy'], [25, 'DC'],
    [26, 'aRecord'], [27, 'pilotAttributeType27'], [28, 'mXRecord'], [29, 'nSRecord'], [30, 'sOARecord'],
    [31, 'cNAMERecord'], [37, 'associatedDomain'], [38, 'associatedName'], [39, 'homePostalAddress'],
    [40, 'personalTitle'], [41, 'mobileTelephoneNumber'], [42, 'pagerTelephoneNumber'], [43, 'friendlyCountryName'],
    [44, 'uid'], [45, 'organizationalStatus'], [46, 'janetMailbox'], [47, 'mailPreferenceOption'],
    [48, 'buildingName'], [49, 'dSAQuality'], [50, 'singleLevelQuality'], [51, 'subtreeMinimumQuality'],
    [52, 'subtreeMaximumQuality'], [53, 'personalSignature'], [54, 'dITRedirect'], [55, 'audio'],
    [56, 'documentPublisher'],
  ] as const;
  for (const [n, sn] of pilot) m.set(`0.9.2342.19200300.100.1.${n}`, sn);
  const pkcs9 = [
    [1, 'emailAddress'], [2, 'unstructuredName'], [3, 'contentType'], [4, 'messageDigest'], [5, 'signingTime'],
    [6, 'countersignature'], [7, 'challengePassword'], [8, 'unstructuredAddress'], [9, 'extendedCertificateAttributes'],
    [14, 'extReq'], [15, 'SMIME-CAPS'], [16, 'SMIME'], [20, 'friendlyName'], [21, 'localKeyID'],
  ] as const;
  for (const [n, sn] of pkcs9) m.set(`1.2.840.113549.1.9.${n}`, sn);
  m.set('1.3.6.1.4.1.311.60.2.1.1', 'jurisdictionL');
  m.set('1.3.6.1.4.1.311.60.2.1.2', 'jurisdictionST');
  m.set('1.3.6.1.4.1.311.60.2.1.3', 'jurisdictionC');
  m.set('1.3.6.1.4.1.311.20.2.3', 'msUPN');
  const pda = ['dateOfBirth', 'placeOfBirth', 'gender', 'countryOfCitizenship', 'countryOfResidence'];
  pda.forEach((sn, i) => m.set(`1.3.6.1.5.5.7.9.${i + 1}`, `id-pda-${sn}`));
  return m;
})();

/**
 * How OpenSSL reads each universal string tag (its tag2nbyte table):
 * 0 = UTF8String (bytes as they are), 1/2/4 = bytes per code point, converted
 * to UTF-8 before escaping. Tags not listed are dumped as `#hex`.
 */
const CHAR_WIDTH: ReadonlyMap<number, 0 | 1 | 2 | 4> = new Map<number, 0 | 1 | 2 | 4>([
  [0x0c, 0], // UTF8String
  [0x12, 1], [0x13, 1], [0x14, 1], [0x15, 1], [0x16, 1], // Numeric, Printable, T61, Videotex, IA5
  [0x17, 1], [0x18, 1], [0x19, 1], [0x1a, 1], [0x1b, 1], // UTCTime, GeneralizedTime, Graphic, Visible, General
  [0x1c, 4], // UniversalString
  [0x1e, 2], // BMPString
]);

/** OBJ_obj2txt writes into an 80-byte buffer in X509_NAME_print_ex: longer OIDs are cut. */
const MAX_OID_TEXT = 79;

const HEX = '0123456789ABCDEF';
const UTF8 = new TextDecoder('utf-8', { fatal: true });

function isUtf8(bytes: Uint8Array): boolean {
  try {
    UTF8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

function hexUpper(buf: Uint8Array, from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) s += HEX[buf[i]! >> 4]! + HEX[buf[i]! & 15]!;
  return s;
}

const FIRST = 1;
const LAST = 2;

/** Escapes one output byte under XN_FLAG_RFC2253's string flags. */
function escapeByte(b: number, pos: number): string {
  if (b > 0x7f) return `\\${HEX[b >> 4]}${HEX[b & 15]}`;
  switch (b) {
    case 0x2c: case 0x2b: case 0x22: case 0x5c: case 0x3c: case 0x3e: case 0x3b: // , + " \ < > ;
      return `\\${String.fromCharCode(b)}`;
    case 0x20: // space
      return pos !== 0 ? '\\ ' : ' ';
    case 0x23: // '#'
      return pos === FIRST ? '\\#' : '#';
    default:
      if (b < 0x20 || b === 0x7f) return `\\${HEX[b >> 4]}${HEX[b & 15]}`;
      return String.fromCharCode(b);
  }
}

/** The UTF-8 bytes of code point `c`, escaped (the caller has rejected surrogates and values past U+10FFFF). */
function escapeCodePoint(c: number, pos: number): string {
  if (c < 0x80) return escapeByte(c, pos);
  if (c < 0x800) return escapeByte(0xc0 | (c >> 6), pos) + escapeByte(0x80 | (c & 0x3f), pos);
  if (c < 0x10000) {
    return escapeByte(0xe0 | (c >> 12), pos) + escapeByte(0x80 | ((c >> 6) & 0x3f), pos) + escapeByte(0x80 | (c & 0x3f), pos);
  }
  return (
    escapeByte(0xf0 | (c >> 18), pos) + escapeByte(0x80 | ((c >> 12) & 0x3f), pos) + escapeByte(0x80 | ((c >> 6) & 0x3f), pos) + escapeByte(0x80 | (c & 0x3f), pos)
  );
}

/**
 * Value tags OpenSSL 3 parses in a Name (read off it: one certificate's CN tag tried with every value): the
 * string types this printer reads, SEQUENCE, BIT STRING, and a few unusual universal types printed as `#hex`.
 */
const VALUE_TAGS = new Set([0x03, 0x07, 0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x12, 0x13, 0x14, 0x16, 0x1c, 0x1d, 0x1e, 0x30]);

function printValue(buf: Uint8Array, v: Tlv, knownType: boolean): string {
  if (!VALUE_TAGS.has(v.tag)) throw new Error(`attribute value at byte ${v.start} has tag 0x${v.tag.toString(16)}, not a string type OpenSSL takes in a Name`);
  if (v.tag === 0x03 && (v.end === v.body || buf[v.body]! > 7)) throw new Error(`BIT STRING value at byte ${v.start} is malformed`);
  const width = knownType ? CHAR_WIDTH.get(v.tag) : undefined;
  if (width === undefined) return `#${hexUpper(buf, v.start, v.end)}`;
  const len = v.end - v.body;
  // OpenSSL refuses a certificate whose UTF8String is not UTF-8; so do we (fail closed).
  if (width === 0 && !isUtf8(buf.subarray(v.body, v.end))) throw new Error(`UTF8String at byte ${v.start} is not valid UTF-8`);
  if (width === 0 || width === 1) {
    // Width 1 types are latin1 -> UTF-8; escaping a code point < 0x100 that way equals escapeCodePoint.
    let out = '';
    for (let i = 0; i < len; i++) {
      const pos = i === len - 1 ? LAST : i === 0 ? FIRST : 0;
      const b = buf[v.body + i]!;
      out += width === 0 ? escapeByte(b, pos) : escapeCodePoint(b, pos);
    }
    return out;
  }
  if (len % width !== 0) throw new Error(`${width === 2 ? 'BMPString' : 'UniversalString'} of ${len} bytes at byte ${v.start} is not a whole number of characters`);
  const n = len / width;
  let out = '';
  for (let k = 0; k < n; k++) {
    const at = v.body + k * width;
    const c = width === 2 ? (buf[at]! << 8) | buf[at + 1]! : ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
    // OpenSSL refuses surrogates (a BMPString holds UCS-2, not UTF-16) and values past U+10FFFF.
    if ((c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff) throw new Error(`${width === 2 ? 'BMPString' : 'UniversalString'} at byte ${v.start} holds U+${c.toString(16).toUpperCase()}, not a character`);
    out += escapeCodePoint(c, k === n - 1 ? LAST : k === 0 ? FIRST : 0);
  }
  return out;
}

/** Prints the Name element `name` found in `buf`. */
function printNameAt(buf: Uint8Array, name: Tlv): string {
  if (name.tag !== 0x30) throw new Error(`expected a Name (SEQUENCE) at byte ${name.start}`);
  const entries: string[] = [];
  const sets: number[] = [];
  let set = 0;
  for (const rdn of children(buf, name)) {
    if (rdn.tag !== 0x31) throw new Error(`expected an RDN (SET) at byte ${rdn.start}`);
    for (const atv of children(buf, rdn)) {
      const parts = atv.tag === 0x30 ? children(buf, atv) : [];
      const [type, value] = parts;
      if (parts.length !== 2 || !type || !value) throw new Error(`malformed AttributeTypeAndValue at byte ${atv.start}`);
      const oid = oidText(buf, type);
      const sn = SHORT_NAMES.get(oid);
      entries.push(`${sn ?? oid.slice(0, MAX_OID_TEXT)}=${printValue(buf, value, sn !== undefined)}`);
      sets.push(set);
    }
    set++;
  }
  let out = '';
  for (let i = entries.length - 1; i >= 0; i--) {
    if (i < entries.length - 1) out += sets[i] === sets[i + 1] ? '+' : ',';
    out += entries[i]!;
  }
  return out;
}

/** A decoded certificate from Node (`raw`) or @peculiar/x509 (`rawData`). */
export type CertificateLike = { readonly raw: Uint8Array } | { readonly rawData: ArrayBuffer };

export interface TbsFields {
  readonly issuer: Tlv;
  readonly subject: Tlv;
  /** The `[3]` extensions element, if any. */
  readonly extensions: Tlv | undefined;
}

/** Locates issuer, subject and extensions in a certificate's DER. */
export function tbsFields(der: Uint8Array): TbsFields {
  const cert = readTlv(der, 0);
  const tbs = cert.tag === 0x30 ? children(der, cert)[0] : undefined;
  if (!tbs || tbs.tag !== 0x30) throw new Error('not an X.509 certificate');
  const fields = children(der, tbs);
  const base = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] version
  // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, [1], [2], [3]
  const issuer = fields[base + 2];
  const subject = fields[base + 4];
  if (!issuer || !subject) throw new Error('certificate has no issuer or subject');
  let extensions: Tlv | undefined;
  for (let i = base + 6; i < fields.length; i++) if (fields[i]!.tag === 0xa3) extensions = fields[i];
  return { issuer, subject, extensions };
}

function certDer(cert: CertificateLike): Uint8Array {
  return 'raw' in cert ? cert.raw : new Uint8Array(cert.rawData);
}

/**
 * RFC 2253 text as Envoy prints it. Bytes are the DER of a Name; a decoded
 * certificate (Node's X509Certificate or @peculiar/x509's) gives its subject.
 * Throws on malformed DER.
 */
export function rfc2253(input: Uint8Array | CertificateLike): string {
  if (input instanceof Uint8Array) return printNameAt(input, readTlv(input, 0));
  const der = certDer(input);
  return printNameAt(der, tbsFields(der).subject);
}

/** The issuer of a certificate in the same form. */
export function rfc2253Issuer(cert: CertificateLike): string {
  const der = certDer(cert);
  return printNameAt(der, tbsFields(der).issuer);
}

/** Subject and issuer of a certificate's DER in one walk. Throws on malformed DER. */
export function certificateNames(der: Uint8Array): { subject: string; issuer: string } {
  const f = tbsFields(der);
  return { subject: printNameAt(der, f.subject), issuer: printNameAt(der, f.issuer) };
}
