/**
 * Development and test certificates, made with @peculiar/x509 on Node's
 * WebCrypto (no openssl). Reused by tests across Passgate (mTLS, Passport,
 * the local gateway), so the API is small and stable:
 *
 *   const root = await createCa();                                  // self-signed root CA
 *   const inter = await createCa({ parent: root, subject: 'CN=Dev Intermediate' });
 *   const leaf = await issueCertificate({
 *     ca: inter,
 *     sans: { uri: ['spiffe://partners.example.com/org/acme/user/alice'], dns: ['alice.acme.example'], email: ['alice@acme.example'], ip: ['127.0.0.1'] },
 *     subject: 'CN=alice,O=Acme',         // optional; defaults to CN=<first SAN>
 *     notBefore, notAfter,                // optional Dates (default: now-1min .. now+1day)
 *     usage: 'client' | 'server' | 'both' // extendedKeyUsage, default 'client'
 *   });
 *   leaf.pem / leaf.keyPem / leaf.der / leaf.fingerprint / leaf.serial / leaf.chainPem
 *   toXfcc(leaf)                          // one element exactly as Envoy SANITIZE_SET writes it
 *   toXfcc(leaf, { by: ['spiffe://cluster.local/ns/istio-system/sa/gw'], chain: true })
 *   const ca = await loadCa(caPem, caKeyPem)  // reuse a CA written earlier (e.g. .dev-certs/)
 *
 * Keys are ECDSA P-256 (fast to make, accepted by curl, Node and Envoy);
 * private keys are PKCS#8 PEM ("BEGIN PRIVATE KEY"). Nothing here touches the
 * disk: the `npm run certs` CLI (./cli.ts) writes the files.
 */
import { createHash, webcrypto } from 'node:crypto';
import { x509 } from '../identity/x509.js';
import { rfc2253 } from '../identity/rfc2253.js';
import { formatXfccElement, urlEncodePem } from '../identity/xfcc.js';

const crypto = webcrypto as unknown as Crypto;
const KEY_ALG: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN_ALG: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const DAY_MS = 86_400_000;

/** Everything a test needs about one certificate. */
export interface IssuedCertificate {
  /** The decoded certificate (for SANs, subject, signature checks). */
  readonly cert: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
  /** PEM of this certificate (one block, trailing newline). */
  readonly pem: string;
  /** PKCS#8 PEM of its private key. */
  readonly keyPem: string;
  readonly der: Buffer;
  /** Lowercase hex SHA-256 of the DER: what Envoy writes as XFCC `Hash=`. */
  readonly fingerprint: string;
  /** Lowercase hex serial number. */
  readonly serial: string;
  /** This certificate followed by its intermediates (not the root): what a client presents. */
  readonly chainPem: string;
}

/** A CA that can issue certificates (root or intermediate). */
export interface CertificateAuthority extends IssuedCertificate {
  /**
   * What a certificate issued by this CA presents after itself: empty for a
   * root, `[this, ...its parent's]` for an intermediate (nearest first, root excluded).
   */
  readonly intermediates: readonly IssuedCertificate[];
}

export interface SanSpec {
  readonly uri?: readonly string[];
  readonly dns?: readonly string[];
  readonly email?: readonly string[];
  readonly ip?: readonly string[];
}

export interface CreateCaOptions {
  /** Default `CN=Passgate Dev Root CA` (or `CN=Passgate Dev Intermediate CA` with a parent). */
  readonly subject?: string;
  /** Issuing CA; without it the CA is a self-signed root. */
  readonly parent?: CertificateAuthority;
  readonly notBefore?: Date;
  /** Default: 10 years for a root, 5 for an intermediate. */
  readonly notAfter?: Date;
}

export interface IssueOptions {
  readonly ca: CertificateAuthority;
  readonly sans?: SanSpec;
  /** Default `CN=<first SAN>`. */
  readonly subject?: string;
  /** Default: one minute ago. */
  readonly notBefore?: Date;
  /** Default: one day after notBefore. */
  readonly notAfter?: Date;
  /** Hex serial; random when absent. */
  readonly serial?: string;
  readonly usage?: 'client' | 'server' | 'both';
}

function toBuffer(ab: ArrayBuffer): Buffer {
  return Buffer.from(new Uint8Array(ab));
}

function sha256Hex(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

/** Random positive 16-byte serial (top bit clear so DER keeps it positive). */
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}

async function keyPemOf(keys: CryptoKeyPair): Promise<string> {
  const pkcs8 = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
}

function pemOf(cert: x509.X509Certificate): string {
  const pem = cert.toString('pem').replace(/\r\n/g, '\n');
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

const madeListeners = new Set<(der: Buffer) => void>();

/**
 * Calls `listener` with the DER of every certificate made here from now on;
 * returns the unsubscribe. The test suite uses it to compare certificate
 * decoders over every certificate the tests make (test/support/certificate-parity.ts).
 */
export function onCertificateMade(listener: (der: Buffer) => void): () => void {
  madeListeners.add(listener);
  return () => madeListeners.delete(listener);
}

async function finish(cert: x509.X509Certificate, keys: CryptoKeyPair, chainAbove: readonly IssuedCertificate[]): Promise<IssuedCertificate> {
  const der = toBuffer(cert.rawData);
  for (const l of madeListeners) l(der);
  const pem = pemOf(cert);
  return {
    cert,
    keys,
    pem,
    keyPem: await keyPemOf(keys),
    der,
    fingerprint: sha256Hex(der),
    serial: cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, ''),
    chainPem: pem + chainAbove.map((c) => c.pem).join(''),
  };
}

/** Creates a root CA, or an intermediate when `parent` is given. */
export async function createCa(options: CreateCaOptions = {}): Promise<CertificateAuthority> {
  const keys = (await crypto.subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const parent = options.parent;
  const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = options.notAfter ?? new Date(notBefore.getTime() + (parent ? 5 : 10) * 365 * DAY_MS);
  const subject = options.subject ?? (parent ? 'CN=Passgate Dev Intermediate CA' : 'CN=Passgate Dev Root CA');
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, parent ? 0 : undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  let cert: x509.X509Certificate;
  if (parent === undefined) {
    cert = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: randomSerial(), name: subject, notBefore, notAfter, keys, signingAlgorithm: SIGN_ALG, extensions });
  } else {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(parent.keys.publicKey));
    cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject,
      issuer: parent.cert.subjectName,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: parent.keys.privateKey,
      signingAlgorithm: SIGN_ALG,
      extensions,
    });
  }
  const above = parent ? parent.intermediates : [];
  const issued = await finish(cert, keys, above);
  return { ...issued, intermediates: parent ? [issued, ...above] : [] };
}

/** Issues a leaf certificate signed by `ca`. */
export async function issueCertificate(options: IssueOptions): Promise<IssuedCertificate> {
  const { ca } = options;
  const sans = options.sans ?? {};
  const keys = (await crypto.subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const names: x509.JsonGeneralName[] = [
    ...(sans.uri ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(sans.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(sans.email ?? []).map((value) => ({ type: 'email' as const, value })),
    ...(sans.ip ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const firstSan = names[0]?.value ?? 'passgate-dev';
  const subject = options.subject ?? `CN=${firstSan.replace(/[,+"\\<>;=]/g, '_').slice(0, 64)}`;
  const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = options.notAfter ?? new Date(notBefore.getTime() + DAY_MS);
  const usage = options.usage ?? 'client';
  const eku =
    usage === 'client' ? [x509.ExtendedKeyUsage.clientAuth] : usage === 'server' ? [x509.ExtendedKeyUsage.serverAuth] : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension(eku),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: options.serial ?? randomSerial(),
    subject,
    issuer: ca.cert.subjectName,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGN_ALG,
    extensions,
  });
  // What a client presents: leaf + intermediates up to (not including) the root.
  return finish(cert, keys, ca.intermediates);
}

/** Loads a CA written earlier (its certificate PEM and PKCS#8 key PEM) so it can issue again. */
export async function loadCa(certPem: string, keyPem: string): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(certPem);
  const pkcs8 = x509.PemConverter.decodeFirst(keyPem);
  const privateKey = await crypto.subtle.importKey('pkcs8', pkcs8, KEY_ALG, true, ['sign']);
  const publicKey = await cert.publicKey.export(KEY_ALG, ['verify'], crypto);
  const issued = await finish(cert, { privateKey, publicKey }, []);
  return { ...issued, intermediates: [] };
}

/** Envoy's URL encoding of a PEM for XFCC Cert/Chain (the identity module's, re-exported for tests and tools). */
export { urlEncodePem };

/** RFC 2253 form of the subject exactly as Envoy prints it (OpenSSL XN_FLAG_RFC2253; see identity/rfc2253.ts). */
export function rfc2253Subject(cert: x509.X509Certificate): string {
  return rfc2253(cert);
}

export interface XfccOptions {
  /** `By=` values (the proxy's own URI SANs); none by default. */
  readonly by?: readonly string[];
  /** Include `Cert=` (default true). */
  readonly cert?: boolean;
  /** Include `Chain=`: true for the certificate's own chain, or an explicit PEM string. Default false. */
  readonly chain?: boolean | string;
  /** Include `Subject=` (default true). */
  readonly subject?: boolean;
  /** Include `URI=` (default true; an empty `URI=` when the certificate has none, as Envoy writes). */
  readonly uri?: boolean;
  /** Include `DNS=` (default true). */
  readonly dns?: boolean;
  /** Override `Hash=` (to forge one in tests); `false` leaves it out. */
  readonly hash?: string | false;
}

/**
 * Builds one XFCC element as an Istio gateway in SANITIZE_SET mode writes it
 * (`By=…;Hash=…;Cert="…";Chain="…";Subject="…";URI=…;DNS=…`), through the
 * service's own writer (identity/xfcc.ts). Join several with `,` for
 * APPEND_FORWARD.
 */
export function toXfcc(issued: Pick<IssuedCertificate, 'cert' | 'pem' | 'fingerprint' | 'chainPem'>, options: XfccOptions = {}): string {
  const items = issued.cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [];
  const chain = options.chain;
  return formatXfccElement({
    by: options.by,
    hash: options.hash === false ? undefined : (options.hash ?? issued.fingerprint),
    cert: options.cert === false ? undefined : urlEncodePem(issued.pem),
    chain: chain ? urlEncodePem(typeof chain === 'string' ? chain : issued.chainPem) : undefined,
    subject: options.subject === false ? undefined : rfc2253Subject(issued.cert),
    uri: options.uri === false ? undefined : items.filter((n) => n.type === 'url').map((n) => n.value),
    dns: options.dns === false ? undefined : items.filter((n) => n.type === 'dns').map((n) => n.value),
  });
}
