/**
 * Client certificate decoding and the parse cache.
 *
 * A first-seen certificate is read from its DER (der-certificate.ts: strict RFC 5280 structure), not by
 * Node's X509Certificate: OpenSSL 3.0's parser decodes the public key through its provider framework,
 * 0.1-0.25 ms per certificate, and a leaf's key is never used here. Node's parser is built, once per
 * certificate and only when needed, for an issuer's public key and for signature algorithms the fast path
 * below does not pin; trust anchors are built with it at start, so a bad CA bundle stays a startup error.
 * Signatures of the pinned algorithms are checked with `crypto.verify` on the issuer's cached KeyObject.
 * @peculiar/x509 is kept for what Node has no API for (an issuer's keyUsage bits and pathLenConstraint),
 * loaded lazily for CA certificates only.
 *
 * A certificate is decoded once: the cache is keyed by the URL-encoded PEM exactly as it arrives (XFCC
 * `Cert=` or `source.certificate`), so a repeated certificate costs one map lookup, not a URL-decode and an
 * ASN.1 parse. Failures are cached as a short reason, so a flood of the same garbage is cheap and distinct
 * garbage small.
 */
import { createHash, verify as verifySignature, X509Certificate as NodeX509Certificate, type KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { byteLru, ENTRY_OVERHEAD_BYTES, stringBytes } from '../resilience/byte-lru.js';
import { x509 } from './x509.js';
import { rfc2253 } from './rfc2253.js';
import { basicConstraintsCa, extendedKeyUsageOf, parseCertificateDer, sansOf, type CertificateDer } from './der-certificate.js';

/** The facts later stages, the audit and mapping rules read. Frozen and shared across requests. */
export interface CertificateFacts {
  /** Lowercase hex SHA-256 of the DER. */
  readonly fingerprint: string;
  /** Lowercase hex serial, without leading zeros. */
  readonly serial: string;
  /** RFC 2253 (`O=Acme,CN=alice`, most specific first) exactly as Envoy prints it (source.principal, XFCC `Subject=`); see rfc2253.ts. */
  readonly subject: string;
  /** The issuer in the same form. */
  readonly issuer: string;
  /** Epoch ms. */
  readonly notBefore: number;
  readonly notAfter: number;
  readonly sans: {
    readonly uri: readonly string[];
    readonly dns: readonly string[];
    readonly email: readonly string[];
    readonly ip: readonly string[];
  };
  /** SPIFFE ids among the URI SANs. */
  readonly spiffe: readonly string[];
  /** Envoy's principal for this certificate: first URI SAN, else first DNS SAN, else the subject. */
  readonly principal: string;
}

export interface ParsedCertificate {
  readonly facts: CertificateFacts;
  /** The DER's fields (signed bytes, signature, extensions). */
  readonly fields: CertificateDer;
  /** basicConstraints cA as encoded. */
  readonly isCa: boolean;
  /** extendedKeyUsage purposes (OIDs); undefined without the extension. */
  readonly eku: readonly string[] | undefined;
}

export type DecodeResult = { readonly ok: true; readonly value: ParsedCertificate } | { readonly ok: false; readonly error: string };

/** Bounds ASN.1 parsing of hostile input (largest PEM accepted, in characters). */
const MAX_PEM_CHARS = 64 * 1024;
const PEM_BEGIN = '-----BEGIN CERTIFICATE-----';
const PEM_END = '-----END CERTIFICATE-----';

function urlDecode(encoded: string): string | undefined {
  if (encoded.indexOf('%') === -1) return encoded;
  try {
    return decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
}

/** Splits a PEM bundle into the base64 bodies of its CERTIFICATE blocks. */
function pemBlocks(pem: string): string[] | undefined {
  const out: string[] = [];
  let from = 0;
  for (;;) {
    const begin = pem.indexOf(PEM_BEGIN, from);
    if (begin === -1) break;
    const end = pem.indexOf(PEM_END, begin);
    if (end === -1) return undefined;
    const body = pem.slice(begin + PEM_BEGIN.length, end).replace(/\s+/g, '');
    if (body === '' || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) return undefined;
    out.push(body);
    from = end + PEM_END.length;
  }
  // Text between blocks is ignored, as OpenSSL does: CA bundles often carry comments.
  return out;
}

function decodeDer(der: Buffer): DecodeResult {
  try {
    const fields = parseCertificateDer(der);
    const { uri, dns, email, ip } = sansOf(fields);
    // Printed from the DER the way Envoy (OpenSSL XN_FLAG_RFC2253) prints them, so the principal fallback and
    // subject rules see Envoy's exact string.
    const subject = rfc2253(der.subarray(fields.subject.start, fields.subject.end));
    const issuer = rfc2253(der.subarray(fields.issuer.start, fields.issuer.end));
    const facts: CertificateFacts = Object.freeze({
      fingerprint: createHash('sha256').update(der).digest('hex'),
      serial: fields.serial,
      subject,
      issuer,
      notBefore: fields.notBefore,
      notAfter: fields.notAfter,
      sans: Object.freeze({ uri: Object.freeze(uri), dns: Object.freeze(dns), email: Object.freeze(email), ip: Object.freeze(ip) }),
      spiffe: Object.freeze(uri.filter((u) => u.startsWith('spiffe://'))),
      principal: uri[0] ?? dns[0] ?? subject,
    });
    const eku = extendedKeyUsageOf(fields);
    return { ok: true, value: { facts, fields, isCa: basicConstraintsCa(fields), eku: eku === undefined ? undefined : Object.freeze(eku) } };
  } catch (e) {
    return { ok: false, error: `not a valid X.509 certificate (${e instanceof Error ? e.message : String(e)})` };
  }
}

const nodeCertificates = new WeakMap<ParsedCertificate, NodeX509Certificate>();

/** Node's (OpenSSL's) parse of a certificate, made once and only where its key or own verify is needed. Throws on what OpenSSL refuses. */
export function nodeCertificate(c: ParsedCertificate): NodeX509Certificate {
  let n = nodeCertificates.get(c);
  if (n === undefined) {
    n = new NodeX509Certificate(c.fields.der);
    nodeCertificates.set(c, n);
  }
  return n;
}

/** Decodes one URL-encoded (or plain) PEM certificate. Never throws. */
export function decodeCertificate(encoded: string): DecodeResult {
  if (encoded.length === 0) return { ok: false, error: 'empty certificate' };
  if (encoded.length > MAX_PEM_CHARS) return { ok: false, error: `certificate is ${encoded.length} characters, over ${MAX_PEM_CHARS}` };
  const pem = urlDecode(encoded);
  if (pem === undefined) return { ok: false, error: 'certificate is not valid URL encoding' };
  const blocks = pemBlocks(pem);
  if (blocks === undefined || blocks.length === 0) return { ok: false, error: 'certificate is not a PEM CERTIFICATE block' };
  if (blocks.length > 1) return { ok: false, error: 'certificate field holds more than one certificate' };
  return decodeDer(Buffer.from(blocks[0]!, 'base64'));
}

/** Decodes a URL-encoded PEM chain (XFCC `Chain=`). Never throws. */
export function decodeChain(encoded: string, maxCerts = 8): { ok: true; certs: ParsedCertificate[] } | { ok: false; error: string } {
  if (encoded.length > MAX_PEM_CHARS) return { ok: false, error: `chain is ${encoded.length} characters, over ${MAX_PEM_CHARS}` };
  const pem = urlDecode(encoded);
  if (pem === undefined) return { ok: false, error: 'chain is not valid URL encoding' };
  const blocks = pemBlocks(pem);
  if (blocks === undefined) return { ok: false, error: 'chain is not a sequence of PEM CERTIFICATE blocks' };
  if (blocks.length > maxCerts) return { ok: false, error: `chain holds ${blocks.length} certificates, over ${maxCerts}` };
  const certs: ParsedCertificate[] = [];
  for (const b of blocks) {
    const r = decodeDer(Buffer.from(b, 'base64'));
    if (!r.ok) return { ok: false, error: `chain: ${r.error}` };
    certs.push(r.value);
  }
  return { ok: true, certs };
}

/** What the cache holds per certificate: the decode result plus per-certificate memos. */
export interface CacheEntry {
  readonly result: DecodeResult;
  /** Chain verification memo, valid for one trust-anchor set and one Chain value. */
  verified?: { readonly anchors: object; readonly chain: string; readonly outcome: VerifyOutcome };
  /** Identity mapping memo, valid for one compiled rule set. */
  mapped?: { readonly rules: object; readonly value: unknown };
}

export type VerifyOutcome =
  | { readonly ok: true; readonly notBefore: number; readonly notAfter: number }
  | { readonly ok: false; readonly error: string };

export type ChainResult = ReturnType<typeof decodeChain>;

const NO_CHAIN: ChainResult = Object.freeze({ ok: true, certs: [] });
/** Decoded XFCC `Chain=` values kept: chains repeat (one per issuing CA), and hostile variety just churns them. */
const MAX_CHAINS = 256;
const MAX_CHAIN_BYTES = 4 * 1024 * 1024;
/**
 * Heap charged for a decoded certificate: the @peculiar/x509 object keeps the
 * DER plus its ASN.1 tree, the facts keep strings; measured at about 6x the
 * DER for typical certificates, so 8x of the encoded input is a safe bound.
 */
const PARSED_BYTES_PER_INPUT_CHAR = 8;
/** A cached failure keeps only its reason string. */
const FAILURE_BYTES = 64;

/**
 * What a cache entry for an input of `inputChars` characters holds (its decoded facts, the input text, the
 * cache's own overhead); also what a cache in front of this one keeps alive when it keeps the entry.
 */
export function retainedEntryBytes(e: CacheEntry, inputChars: number): number {
  return entryBytes(e, inputChars) + 2 * inputChars + ENTRY_OVERHEAD_BYTES + 60;
}

function entryBytes(e: CacheEntry, inputChars: number): number {
  if (!e.result.ok) return FAILURE_BYTES + stringBytes(e.result.error);
  return 2048 + PARSED_BYTES_PER_INPUT_CHAR * inputChars;
}

/** SHA-256 of an encoded XFCC `Chain=` value: the chain cache's key (chains are read rarely; a bundle is large). */
function digestOf(encoded: string): string {
  return createHash('sha256').update(encoded).digest('base64');
}

/** Failure messages are short and free of the input (they may come from a hostile decoder error). */
function cheapFailure(r: DecodeResult): DecodeResult {
  if (r.ok || r.error.length <= 200) return r;
  return { ok: false, error: `${r.error.slice(0, 200)}…` };
}

/**
 * The bounded parse cache, one per service (the registry keeps it across
 * config reloads). Keyed by the SHA-256 of the URL-encoded PEM as it
 * arrives; bounded by entries and by estimated bytes, so a flood of large
 * distinct certificates evicts instead of growing the heap. Failures are
 * kept as a short reason only.
 */
export class CertificateCache {
  private lru: LRUCache<string, CacheEntry>;
  private readonly chains = byteLru<string, ChainResult>({
    max: MAX_CHAINS,
    maxBytes: MAX_CHAIN_BYTES,
    sizeOf: (c) => (c.ok ? c.certs.reduce((n, x) => n + 2048 + PARSED_BYTES_PER_INPUT_CHAR * x.fields.der.byteLength, 0) : FAILURE_BYTES + stringBytes(c.error)),
  });
  private maxBytesValue: number;
  hits = 0;
  misses = 0;

  constructor(max: number, maxBytes = 64 * 1024 * 1024) {
    this.maxBytesValue = maxBytes;
    this.lru = CertificateCache.make(max, maxBytes);
  }

  private static make(max: number, maxBytes: number): LRUCache<string, CacheEntry> {
    // The input length is not kept in the entry; sizes are computed on set() where it is known.
    return new LRUCache<string, CacheEntry>({ max, maxSize: maxBytes, maxEntrySize: maxBytes });
  }

  get max(): number {
    return this.lru.max;
  }

  get maxBytes(): number {
    return this.maxBytesValue;
  }

  /** Estimated bytes held. */
  get bytes(): number {
    return this.lru.calculatedSize;
  }

  /** Applies a new `cacheSize` / `cacheBytes` (a reload): keeps the most recently used entries that fit. */
  resize(max: number, maxBytes = this.maxBytesValue): void {
    if (max === this.lru.max && maxBytes === this.maxBytesValue) return;
    const old = this.lru;
    this.lru = CertificateCache.make(max, maxBytes);
    this.maxBytesValue = maxBytes;
    const kept = [...old.entries()].slice(0, max).reverse(); // least recent first, so the newest end up newest
    for (const [k, v] of kept) this.lru.set(k, v, { size: old.info(k)?.size ?? 1 });
  }

  /**
   * The entry for a URL-encoded PEM, decoding on a miss. Keyed by the input itself: a Map lookup
   * hashes the string once, several times cheaper than the SHA-256 it replaced on every Check
   * (issue 18), and the key's bytes are charged to the entry. An input over the size limit is
   * refused without being cached, so no oversized string is ever kept.
   */
  get(encoded: string, _fingerprintHint?: string): CacheEntry {
    let entry = this.lru.get(encoded);
    if (entry !== undefined) {
      this.hits++;
      return entry;
    }
    this.misses++;
    entry = { result: cheapFailure(decodeCertificate(encoded)) };
    if (encoded.length > MAX_PEM_CHARS) return entry;
    // Two bytes per character: V8 keeps a string with any non-Latin-1 character as UTF-16.
    this.lru.set(encoded, entry, { size: retainedEntryBytes(entry, encoded.length) });
    return entry;
  }

  /** Lookups answered by a cache in front of this one (the mtls stage's verified headers) still count as hits. */
  countHits(n: number): void {
    this.hits += n;
  }

  /** A decoded XFCC `Chain=` (URL-encoded PEM bundle); read only when a chain is verified, so rarely. */
  chain(encoded: string): ChainResult {
    if (encoded === '') return NO_CHAIN;
    const key = digestOf(encoded);
    let r = this.chains.get(key);
    if (r === undefined) {
      r = decodeChain(encoded);
      this.chains.set(key, r);
    }
    return r;
  }

  get size(): number {
    return this.lru.size;
  }
}

/** Trust anchors (CA bundle) for issuer verification. */
export interface TrustAnchors {
  readonly roots: readonly ParsedCertificate[];
}

/** An issuer's constraints, decoded with @peculiar/x509 (Node has no keyUsage bits or pathLenConstraint); once per CA certificate. */
interface IssuerFacts {
  readonly ca: boolean;
  readonly pathLength: number | undefined;
  readonly keyCertSign: boolean;
}

const issuerFacts = new WeakMap<ParsedCertificate, IssuerFacts>();
const publicKeys = new WeakMap<ParsedCertificate, KeyObject>();

function issuerFactsOf(c: ParsedCertificate): IssuerFacts {
  let f = issuerFacts.get(c);
  if (f === undefined) {
    const cert = new x509.X509Certificate(new Uint8Array(c.fields.der));
    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    const ku = cert.getExtension(x509.KeyUsagesExtension);
    f = { ca: bc !== null && bc.ca, pathLength: bc?.pathLength, keyCertSign: ku === null || (ku.usages & x509.KeyUsageFlags.keyCertSign) !== 0 };
    issuerFacts.set(c, f);
  }
  return f;
}

/** The issuer's public key, made once (Node builds a new KeyObject on every `publicKey` read). */
function publicKeyOf(c: ParsedCertificate): KeyObject {
  let k = publicKeys.get(c);
  if (k === undefined) {
    k = nodeCertificate(c).publicKey;
    publicKeys.set(c, k);
  }
  return k;
}

/**
 * Signature algorithms checked with `crypto.verify` over the signed bytes: each pins its digest, the issuer key
 * type it needs and the parameters it allows (ECDSA: none; RSA PKCS#1 v1.5: NULL or none; Ed25519: none).
 * Anything else (RSA-PSS, SHA-1...) is left to OpenSSL's own check on Node's parse, as before.
 */
const PINNED: ReadonlyMap<string, { readonly digest: string | null; readonly key: string; readonly nullParams: boolean }> = new Map([
  ['1.2.840.10045.4.3.2', { digest: 'sha256', key: 'ec', nullParams: false }],
  ['1.2.840.10045.4.3.3', { digest: 'sha384', key: 'ec', nullParams: false }],
  ['1.2.840.10045.4.3.4', { digest: 'sha512', key: 'ec', nullParams: false }],
  ['1.2.840.113549.1.1.11', { digest: 'sha256', key: 'rsa', nullParams: true }],
  ['1.2.840.113549.1.1.12', { digest: 'sha384', key: 'rsa', nullParams: true }],
  ['1.2.840.113549.1.1.13', { digest: 'sha512', key: 'rsa', nullParams: true }],
  ['1.3.101.112', { digest: null, key: 'ed25519', nullParams: false }],
]);

function paramsAllowed(params: Uint8Array, nullParams: boolean): boolean {
  return params.length === 0 || (nullParams && params.length === 2 && params[0] === 0x05 && params[1] === 0x00);
}

/** Whether `issuer` signed `cert` (signature only; names and constraints are checked by the caller). */
function signedBy(cert: ParsedCertificate, issuer: ParsedCertificate): boolean {
  try {
    const key = publicKeyOf(issuer);
    const f = cert.fields;
    const pinned = PINNED.get(f.signatureAlgorithm);
    if (pinned === undefined) return nodeCertificate(cert).verify(key);
    if (key.asymmetricKeyType !== pinned.key || !paramsAllowed(f.signatureParams, pinned.nullParams)) return false;
    return verifySignature(pinned.digest, f.tbs, key, f.signature);
  } catch {
    return false;
  }
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EKU = '2.5.29.37.0';

/**
 * RFC 5280 §6.1 checks beyond signatures, for one issuer at `below`
 * intermediates above the leaf: it is a CA, may sign certificates
 * (keyUsage keyCertSign when keyUsage is present) and its
 * pathLenConstraint allows that many intermediates under it.
 */
export function issuerProblem(c: ParsedCertificate, below: number): string | undefined {
  const f = issuerFactsOf(c);
  if (!f.ca) return `issuer "${c.facts.subject}" is not a CA (basicConstraints cA is not set)`;
  if (!f.keyCertSign) return `issuer "${c.facts.subject}" may not sign certificates (keyUsage lacks keyCertSign)`;
  if (f.pathLength !== undefined && below > f.pathLength) {
    return `issuer "${c.facts.subject}" allows ${f.pathLength} intermediate(s) below it (pathLenConstraint), the path has ${below}`;
  }
  return undefined;
}

/** The leaf must be an end entity fit for client authentication. */
export function leafProblem(c: ParsedCertificate): string | undefined {
  if (c.isCa) return 'a CA certificate cannot authenticate a client';
  const usages = c.eku;
  if (usages !== undefined && usages.length > 0 && !usages.includes(CLIENT_AUTH) && !usages.includes(ANY_EKU)) return 'the certificate\'s extendedKeyUsage does not allow clientAuth';
  return undefined;
}

/**
 * Verifies that `leaf` chains to one of the anchors, through intermediates
 * from `chain` (XFCC `Chain=`, may include the leaf) and the anchors bundle,
 * following RFC 5280 path validation: every signature, the leaf an end
 * entity with clientAuth (when it has an EKU), every issuer a CA allowed to
 * sign certificates within its pathLenConstraint. Returns the tightest
 * validity window over the path so callers check every certificate's time.
 * Synchronous (OpenSSL signature checks, tens of µs), so a first-seen
 * certificate does not leave the Check's synchronous path.
 */
export function verifyChain(
  leaf: ParsedCertificate,
  chain: readonly ParsedCertificate[],
  anchors: TrustAnchors,
  maxDepth = 5,
): VerifyOutcome {
  try {
    const lp = leafProblem(leaf);
    if (lp !== undefined) return { ok: false, error: lp };
    let current = leaf;
    let notBefore = leaf.facts.notBefore;
    let notAfter = leaf.facts.notAfter;
    const intermediates = chain.filter((c) => c.facts.fingerprint !== leaf.facts.fingerprint);
    let lastProblem: string | undefined;
    for (let depth = 0; depth <= maxDepth; depth++) {
      const issuerName = current.facts.issuer;
      // A trusted root that signed `current` ends the path (its constraints hold too: RFC 5280 lets
      // an anchor carry them, and a bundle may hold intermediates used as anchors).
      for (const root of anchors.roots) {
        if (root.facts.subject !== issuerName) continue;
        if (!signedBy(current, root)) continue;
        const problem = issuerProblem(root, depth);
        if (problem !== undefined) {
          lastProblem = problem;
          continue;
        }
        return { ok: true, notBefore: Math.max(notBefore, root.facts.notBefore), notAfter: Math.min(notAfter, root.facts.notAfter) };
      }
      let next: ParsedCertificate | undefined;
      for (const cand of intermediates) {
        if (cand === current || cand.facts.subject !== issuerName) continue;
        if (!signedBy(current, cand)) continue;
        const problem = issuerProblem(cand, depth);
        if (problem !== undefined) {
          lastProblem = problem;
          continue;
        }
        next = cand;
        break;
      }
      if (next === undefined) return { ok: false, error: lastProblem ?? `issuer "${issuerName}" is not a trusted CA and no chain certificate links to one` };
      notBefore = Math.max(notBefore, next.facts.notBefore);
      notAfter = Math.min(notAfter, next.facts.notAfter);
      current = next;
    }
    return { ok: false, error: `chain longer than ${maxDepth} certificates` };
  } catch (e) {
    return { ok: false, error: `chain verification failed (${e instanceof Error ? e.message : String(e)})` };
  }
}
