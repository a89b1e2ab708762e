/**
 * An X.509 certificate's fields read straight from its DER, strictly (RFC 5280 §4.1 structure, DER length
 * forms, no trailing bytes, no duplicate extension, the inner and outer signature algorithms equal).
 *
 * Why not Node's X509Certificate on first sight: its constructor is OpenSSL 3.0's d2i_X509, which decodes the
 * public key through the provider decoder framework, about 0.1-0.25 ms per certificate on our machines
 * (bench:mtls) and most of a first-seen certificate's cost. A leaf's key is never used here (the TLS handshake
 * proved its possession; a chain check needs the issuer's key, not the leaf's), so the leaf is read from its
 * DER, and Node's parser is built only where its key or its own signature check is needed (certificate.ts).
 * test/identity/x509-parity.test.ts and test/support/certificate-parity.ts hold the facts read here to the
 * ones @peculiar/x509 and Node give over every certificate the tests make; test/identity/der-certificate.test.ts
 * feeds it mutated and truncated DER.
 *
 * Everything here throws an Error naming what was wrong; certificate.ts turns it into a deny reason.
 */
import { children, oidText, readTlv, rfc2253, type Tlv } from './rfc2253.js';

export interface Extension {
  readonly critical: boolean;
  /** The extnValue OCTET STRING's contents. */
  readonly value: Tlv;
}

export interface CertificateDer {
  readonly der: Uint8Array;
  /** The signed bytes (the whole tbsCertificate element). */
  readonly tbs: Uint8Array;
  /** signatureAlgorithm OID and its parameters' DER (empty when absent). */
  readonly signatureAlgorithm: string;
  readonly signatureParams: Uint8Array;
  /** The signature BIT STRING's bits. */
  readonly signature: Uint8Array;
  /** Lowercase hex of the serial's content bytes, without leading zeros. */
  readonly serial: string;
  readonly issuer: Tlv;
  readonly subject: Tlv;
  /** Epoch ms. */
  readonly notBefore: number;
  readonly notAfter: number;
  readonly extensions: ReadonlyMap<string, Extension>;
}

const SEQUENCE = 0x30;
const INTEGER = 0x02;
const BIT_STRING = 0x03;
const OCTET_STRING = 0x04;
const BOOLEAN = 0x01;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;

function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (t === undefined) throw new Error(`${what} is missing`);
  if (t.tag !== tag) throw new Error(`${what} has tag 0x${t.tag.toString(16)}, expected 0x${tag.toString(16)}`);
  return t;
}

function equalBytes(der: Uint8Array, a: Tlv, b: Tlv): boolean {
  if (a.end - a.start !== b.end - b.start) return false;
  for (let i = 0; i < a.end - a.start; i++) if (der[a.start + i] !== der[b.start + i]) return false;
  return true;
}

function digits(der: Uint8Array, from: number, n: number): number {
  let v = 0;
  for (let i = from; i < from + n; i++) {
    const c = der[i]! - 48;
    if (c < 0 || c > 9) throw new Error('validity time holds a non-digit');
    v = v * 10 + c;
  }
  return v;
}

/** UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ, the only forms RFC 5280 §4.1.2.5 allows. */
function timeOf(der: Uint8Array, t: Tlv, what: string): number {
  const len = t.end - t.body;
  let year: number;
  let at: number;
  if (t.tag === UTC_TIME && len === 13) {
    const yy = digits(der, t.body, 2);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
    at = t.body + 2;
  } else if (t.tag === GENERALIZED_TIME && len === 15) {
    year = digits(der, t.body, 4);
    at = t.body + 4;
  } else {
    throw new Error(`${what} is not a UTCTime or GeneralizedTime in RFC 5280 form (…SSZ)`);
  }
  if (der[t.end - 1] !== 0x5a /* Z */) throw new Error(`${what} is not in UTC (must end in Z)`);
  const month = digits(der, at, 2);
  const day = digits(der, at + 2, 2);
  const hour = digits(der, at + 4, 2);
  const minute = digits(der, at + 6, 2);
  const second = digits(der, at + 8, 2);
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const d = new Date(ms);
  // Date.UTC rolls over (month 13, day 32, hour 24...): a value that does not come back the same is not a date.
  if (month < 1 || d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day || d.getUTCHours() !== hour || d.getUTCMinutes() !== minute || d.getUTCSeconds() !== second) {
    throw new Error(`${what} is not a valid date`);
  }
  return ms;
}

/**
 * The public key algorithms a client certificate may carry, with the parameters each takes: OpenSSL refuses
 * to parse a key it cannot decode, and a leaf's key is not decoded here, so the algorithm is checked instead.
 */
const KEY_ALGORITHMS: ReadonlyMap<string, 'curve' | 'null' | 'none' | 'any'> = new Map([
  ['1.2.840.10045.2.1', 'curve'], // id-ecPublicKey
  ['1.2.840.113549.1.1.1', 'null'], // rsaEncryption
  ['1.2.840.113549.1.1.10', 'any'], // RSASSA-PSS (absent or RSASSA-PSS-params)
  ['1.3.101.112', 'none'], // Ed25519
  ['1.3.101.113', 'none'], // Ed448
]);
const CURVES = new Set(['1.2.840.10045.3.1.7', '1.3.132.0.34', '1.3.132.0.35']); // P-256, P-384, P-521

function keyAlgorithm(der: Uint8Array, alg: Tlv): void {
  const parts = children(der, alg);
  const oid = oidText(der, expect(parts[0], 0x06, 'public key algorithm id'));
  const want = KEY_ALGORITHMS.get(oid);
  if (want === undefined) throw new Error(`public key algorithm ${oid} is not one a client certificate uses (EC, RSA, Ed25519, Ed448)`);
  const p = parts[1];
  const ok =
    parts.length <= 2 &&
    (want === 'none' ? p === undefined
      : want === 'null' ? p === undefined || (p.tag === 0x05 && p.end === p.body)
      : want === 'curve' ? p !== undefined && CURVES.has(oidText(der, expect(p, 0x06, 'EC curve')))
      : p === undefined || p.tag === SEQUENCE);
  if (!ok) throw new Error(`public key algorithm ${oid} has parameters it does not take (or an unsupported curve)`);
}

function hexOf(der: Uint8Array, from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) s += der[i]!.toString(16).padStart(2, '0');
  return s;
}

/** Reads a certificate's DER; throws naming the first structural problem. */
export function parseCertificateDer(der: Uint8Array): CertificateDer {
  const cert = expect(readTlv(der, 0), SEQUENCE, 'Certificate');
  if (cert.start !== 0 || cert.end !== der.length) throw new Error(`${der.length - cert.end} bytes after the certificate`);
  const parts = children(der, cert);
  if (parts.length !== 3) throw new Error(`Certificate has ${parts.length} parts, expected 3 (tbsCertificate, signatureAlgorithm, signature)`);
  const tbs = expect(parts[0], SEQUENCE, 'tbsCertificate');
  const outerAlg = expect(parts[1], SEQUENCE, 'signatureAlgorithm');
  const sig = expect(parts[2], BIT_STRING, 'signature');
  if (sig.end === sig.body || der[sig.body] !== 0) throw new Error('signature BIT STRING has unused bits');

  const f = children(der, tbs);
  let i = 0;
  let version = 0;
  if (f[0]?.tag === 0xa0) {
    const v = children(der, f[0]);
    const n = expect(v[0], INTEGER, 'version');
    if (v.length !== 1 || n.end - n.body !== 1 || der[n.body]! > 2) throw new Error('version is not v1, v2 or v3');
    version = der[n.body]!;
    i = 1;
  }
  const serial = expect(f[i++], INTEGER, 'serialNumber');
  if (serial.end === serial.body) throw new Error('serialNumber is empty');
  if (der[serial.body]! & 0x80) throw new Error('serialNumber is negative (RFC 5280 §4.1.2.2)');
  if (serial.end - serial.body > 1 && der[serial.body] === 0 && (der[serial.body + 1]! & 0x80) === 0) throw new Error('serialNumber has a leading zero byte (not DER)');
  const innerAlg = expect(f[i++], SEQUENCE, 'signature (in tbsCertificate)');
  if (!equalBytes(der, innerAlg, outerAlg)) throw new Error('the signature algorithm inside the certificate differs from the outer one');
  const issuer = expect(f[i++], SEQUENCE, 'issuer');
  const validity = children(der, expect(f[i++], SEQUENCE, 'validity'));
  if (validity.length !== 2) throw new Error('validity does not hold exactly notBefore and notAfter');
  const subject = expect(f[i++], SEQUENCE, 'subject');
  const spki = children(der, expect(f[i++], SEQUENCE, 'subjectPublicKeyInfo'));
  if (spki.length !== 2) throw new Error('subjectPublicKeyInfo is not an algorithm and a key');
  keyAlgorithm(der, expect(spki[0], SEQUENCE, 'subjectPublicKeyInfo algorithm'));
  const key = expect(spki[1], BIT_STRING, 'subjectPublicKey');
  if (key.end === key.body || der[key.body] !== 0) throw new Error('subjectPublicKey BIT STRING has unused bits');
  // issuerUniqueID [1], subjectUniqueID [2], extensions [3]: optional, in this order, once each.
  let last = 0;
  let extensionsTlv: Tlv | undefined;
  for (; i < f.length; i++) {
    const t = f[i]!;
    const n = t.tag === 0x81 || t.tag === 0xa1 ? 1 : t.tag === 0x82 || t.tag === 0xa2 ? 2 : t.tag === 0xa3 ? 3 : 0;
    if (n === 0 || n <= last) throw new Error(`unexpected field with tag 0x${t.tag.toString(16)} in tbsCertificate`);
    if (n < 3 && ((t.tag & 0x20) !== 0 || t.end === t.body || der[t.body]! > 7)) throw new Error(`unique identifier [${n}] is not a primitive BIT STRING`);
    last = n;
    if (n === 3) extensionsTlv = t;
  }
  if (extensionsTlv !== undefined && version !== 2) throw new Error('extensions in a certificate that is not v3');

  const extensions = new Map<string, Extension>();
  if (extensionsTlv !== undefined) {
    const wrapped = children(der, extensionsTlv);
    if (wrapped.length !== 1) throw new Error('extensions are not one SEQUENCE');
    for (const ext of children(der, expect(wrapped[0], SEQUENCE, 'extensions'))) {
      const e = children(der, expect(ext, SEQUENCE, 'extension'));
      const oid = oidText(der, expect(e[0], 0x06, 'extension id'));
      let critical = false;
      let k = 1;
      if (e[1]?.tag === BOOLEAN) {
        if (e[1].end - e[1].body !== 1) throw new Error(`extension ${oid}: critical is not one byte`);
        critical = der[e[1].body] !== 0;
        k = 2;
      }
      const value = expect(e[k], OCTET_STRING, `extension ${oid} value`);
      if (e.length !== k + 1) throw new Error(`extension ${oid} has extra fields`);
      if (extensions.has(oid)) throw new Error(`extension ${oid} appears twice`);
      extensions.set(oid, { critical, value });
    }
  }

  const algParts = children(der, outerAlg);
  const signatureAlgorithm = oidText(der, expect(algParts[0], 0x06, 'signature algorithm id'));
  if (algParts.length > 2) throw new Error('signature algorithm has extra fields');
  const params = algParts[1];
  let from = serial.body;
  while (from < serial.end - 1 && der[from] === 0) from++;
  return {
    der,
    tbs: der.subarray(tbs.start, tbs.end),
    signatureAlgorithm,
    signatureParams: params === undefined ? new Uint8Array(0) : der.subarray(params.start, params.end),
    signature: der.subarray(sig.body + 1, sig.end),
    serial: hexOf(der, from, serial.end).replace(/^0+(?=.)/, ''),
    issuer,
    subject,
    notBefore: timeOf(der, validity[0]!, 'notBefore'),
    notAfter: timeOf(der, validity[1]!, 'notAfter'),
    extensions,
  };
}

export interface SanLists {
  readonly uri: string[];
  readonly dns: string[];
  readonly email: string[];
  readonly ip: string[];
}

/** IA5String bytes as text; a byte past 7-bit ASCII is not IA5 and is refused. */
function ia5(der: Uint8Array, t: Tlv, what: string): string {
  let s = '';
  for (let i = t.body; i < t.end; i++) {
    const b = der[i]!;
    if (b > 0x7f) throw new Error(`${what} SAN holds a byte past ASCII (not an IA5String)`);
    s += String.fromCharCode(b);
  }
  return s;
}

/** Lowercase groups, the longest run (of two or more) of zero groups as `::` (RFC 5952). */
function ipv6(der: Uint8Array, from: number): string {
  const parts: string[] = [];
  for (let i = 0; i < 8; i++) parts.push(((der[from + 2 * i]! << 8) | der[from + 2 * i + 1]!).toString(16));
  let bestAt = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (parts[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && parts[j] === '0') j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) return parts.join(':');
  return `${parts.slice(0, bestAt).join(':')}::${parts.slice(bestAt + bestLen).join(':')}`;
}

const SUBJECT_ALT_NAME = '2.5.29.17';
const EXTENDED_KEY_USAGE = '2.5.29.37';
const BASIC_CONSTRAINTS = '2.5.29.19';

/** URI, DNS, email and IP SANs in order; other name forms are checked for shape and left out (no rule reads them). */
export function sansOf(c: CertificateDer): SanLists {
  const out: SanLists = { uri: [], dns: [], email: [], ip: [] };
  const ext = c.extensions.get(SUBJECT_ALT_NAME);
  if (ext === undefined) return out;
  const der = c.der;
  const seq = expect(readTlv(der, ext.value.body, ext.value.end), SEQUENCE, 'subjectAltName');
  if (seq.end !== ext.value.end) throw new Error('subjectAltName has bytes after its names');
  for (const name of children(der, seq)) {
    switch (name.tag) {
      case 0x81:
        out.email.push(ia5(der, name, 'email'));
        break;
      case 0x82:
        out.dns.push(ia5(der, name, 'DNS'));
        break;
      case 0x86:
        out.uri.push(ia5(der, name, 'URI'));
        break;
      case 0x87: {
        const n = name.end - name.body;
        if (n === 4) out.ip.push(`${der[name.body]}.${der[name.body + 1]}.${der[name.body + 2]}.${der[name.body + 3]}`);
        else if (n === 16) out.ip.push(ipv6(der, name.body));
        else throw new Error(`IP SAN of ${n} bytes (expected 4 or 16)`);
        break;
      }
      // The forms no rule reads are still checked for shape: OpenSSL drops the whole extension when one name
      // is malformed (Envoy then sees no SAN), so a URI beside a malformed name must not become an identity.
      case 0xa0: {
        // otherName: type-id OID, then [0] EXPLICIT value holding one element.
        const parts = children(der, name);
        if (parts.length !== 2 || parts[1]!.tag !== 0xa0 || children(der, parts[1]!).length !== 1) throw new Error('subjectAltName otherName is malformed');
        oidText(der, expect(parts[0], 0x06, 'otherName type-id'));
        break;
      }
      case 0xa4: {
        // directoryName: [4] EXPLICIT Name.
        const parts = children(der, name);
        if (parts.length !== 1) throw new Error('subjectAltName directoryName is malformed');
        rfc2253(der.subarray(parts[0]!.start, parts[0]!.end));
        break;
      }
      case 0x88:
        oidText(der, { tag: 0x06, start: name.start, body: name.body, end: name.end }); // registeredID
        break;
      default:
        // x400Address and ediPartyName included: never seen in client certificates, not read here.
        throw new Error(`subjectAltName holds a name with tag 0x${name.tag.toString(16)}, which Passgate does not read`);
    }
  }
  return out;
}

/** extendedKeyUsage purposes (OIDs), or undefined without the extension. */
export function extendedKeyUsageOf(c: CertificateDer): string[] | undefined {
  const ext = c.extensions.get(EXTENDED_KEY_USAGE);
  if (ext === undefined) return undefined;
  const seq = expect(readTlv(c.der, ext.value.body, ext.value.end), SEQUENCE, 'extendedKeyUsage');
  if (seq.end !== ext.value.end) throw new Error('extendedKeyUsage has bytes after its purposes');
  return children(c.der, seq).map((t) => oidText(c.der, t));
}

/** basicConstraints cA as encoded (absent: false). */
export function basicConstraintsCa(c: CertificateDer): boolean {
  const ext = c.extensions.get(BASIC_CONSTRAINTS);
  if (ext === undefined) return false;
  const der = c.der;
  const seq = expect(readTlv(der, ext.value.body, ext.value.end), SEQUENCE, 'basicConstraints');
  const first = seq.body < seq.end ? readTlv(der, seq.body, seq.end) : undefined;
  // cA BOOLEAN DEFAULT FALSE: absent, or any non-zero content byte.
  return first !== undefined && first.tag === BOOLEAN && first.end > first.body && der[first.body] !== 0;
}
