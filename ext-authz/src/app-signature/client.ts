/**
 * The reference app-side signer (published as `passgate/app-client`): what
 * an app team reads to implement registration, per-request signing and
 * rotation on a device. Node's crypto stands in for the platform keystore
 * (Secure Enclave, Android Keystore): on a device the private key never
 * leaves it, and only `sign(bytes)` is called.
 *
 *   const device = AppDevice.generate('ecdsa-p256-sha256');
 *   await device.register('https://app.example.com/app/v1/devices', 'ios', attestation);
 *   const headers = device.sign({ method: 'POST', url, headers: { 'content-type': 'application/json' }, body });
 *   if (device.expiresWithin(5 * 60_000)) await device.rotate('https://app.example.com');
 *
 * Each signature covers @method, @target-uri, the device-credential header
 * and, with a body, content-digest (RFC 9530, SHA-256), with created,
 * expires, a fresh random nonce and keyid = the key's RFC 7638 thumbprint.
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, sign as cryptoSign, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { serializeSignatureParams, type SignatureAlgorithm } from './message-signature.js';
import { contentDigest } from './content-digest.js';
import { jwkThumbprint } from './credential.js';
import { ATTESTATION_TYP } from './attestation.js';

export type { SignatureAlgorithm };

export interface SignInput {
  readonly method: string;
  /** The full URL the request goes to (scheme, host[:port], path, query), exactly as sent. */
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Uint8Array | string;
  /** Signature lifetime in seconds (the gateway's maxAge bounds it; 60 by default there). */
  readonly lifetimeSec?: number;
  readonly nowMs?: number;
  /** Include the device credential (true for API calls; false for rotation, which is signed by the key alone). */
  readonly withCredential?: boolean;
}

export interface Registered {
  readonly deviceId: string;
  readonly credential: string;
  /** Epoch ms. */
  readonly expiresAt: number;
}

function signBytes(alg: SignatureAlgorithm, key: KeyObject, data: Buffer): Buffer {
  return alg === 'ed25519' ? cryptoSign(null, data, key) : cryptoSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' });
}

export class AppDevice {
  readonly publicJwk: JsonWebKey;
  /** keyid of every signature. */
  readonly jkt: string;
  registration: Registered | undefined;

  constructor(
    private readonly privateKey: KeyObject,
    readonly alg: SignatureAlgorithm,
    /** The signature label the gateway verifies (`app` by default there). */
    readonly label = 'app',
    /** The header carrying the credential (`device-credential` by default there). */
    readonly credentialHeader = 'device-credential',
  ) {
    const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
    this.publicJwk = jwk;
    this.jkt = jwkThumbprint(jwk)!;
  }

  static generate(alg: SignatureAlgorithm = 'ecdsa-p256-sha256'): AppDevice {
    const { privateKey } = alg === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return new AppDevice(privateKey, alg);
  }

  static fromPem(pem: string): AppDevice {
    const key = createPrivateKey(pem);
    return new AppDevice(key, key.asymmetricKeyType === 'ed25519' ? 'ed25519' : 'ecdsa-p256-sha256');
  }

  /** Enrolls the key: `attestation` comes from the platform (or, for `offline`, from your backend: see offlineAttestation). */
  async register(url: string, platform: string, attestation: Record<string, unknown>): Promise<Registered> {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ platform, publicKey: this.publicJwk, attestation }) });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.status !== 201) throw new Error(`registration refused: ${res.status} ${String(json['reason'] ?? json['error'])}`);
    this.registration = { deviceId: String(json['deviceId']), credential: String(json['credential']), expiresAt: Number(json['expiresAt']) };
    return this.registration;
  }

  /** Re-issues the credential (also after it expired), proving possession of the key with a signed request. */
  async rotate(baseUrl: string): Promise<Registered> {
    const r = this.requireRegistration();
    const url = `${baseUrl.replace(/\/$/, '')}/app/v1/devices/${r.deviceId}/credential`;
    const headers = this.sign({ method: 'POST', url, withCredential: false });
    const res = await fetch(url, { method: 'POST', headers });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.status !== 200) throw new Error(`rotation refused: ${res.status} ${String(json['reason'] ?? json['error'])}`);
    this.registration = { deviceId: r.deviceId, credential: String(json['credential']), expiresAt: Number(json['expiresAt']) };
    return this.registration;
  }

  expiresWithin(ms: number, nowMs = Date.now()): boolean {
    return this.registration === undefined || this.registration.expiresAt - nowMs <= ms;
  }

  /** The headers to add to the request (the body must be sent exactly as given here). */
  sign(input: SignInput): Record<string, string> {
    const u = new URL(input.url);
    const withCredential = input.withCredential ?? true;
    const out: Record<string, string> = {};
    const components = ['@method', '@target-uri'];
    const lower: Record<string, string> = {};
    for (const [k, v] of Object.entries(input.headers ?? {})) lower[k.toLowerCase()] = v;
    if (withCredential) {
      out[this.credentialHeader] = lower[this.credentialHeader] = this.requireRegistration().credential;
      components.push(this.credentialHeader);
    }
    if (input.body !== undefined && input.body.length > 0) {
      const bytes = typeof input.body === 'string' ? Buffer.from(input.body, 'utf8') : input.body;
      out['content-digest'] = lower['content-digest'] = contentDigest(bytes);
      components.push('content-digest');
    }
    const created = Math.floor((input.nowMs ?? Date.now()) / 1000);
    const params = serializeSignatureParams(components, { created, expires: created + (input.lifetimeSec ?? 30), nonce: randomBytes(16).toString('base64url'), keyid: this.jkt, alg: this.alg });
    // The same base the gateway rebuilds (RFC 9421 §2.5): target URI as sent, authority lowercased.
    const lines: string[] = [];
    for (const c of components) {
      const v = c === '@method' ? input.method : c === '@target-uri' ? `${u.protocol}//${u.host.toLowerCase()}${u.pathname}${u.search}` : lower[c]!.trim();
      lines.push(`"${c}": ${v}`);
    }
    lines.push(`"@signature-params": ${params}`);
    const signature = this.signBase(lines.join('\n'));
    out['signature-input'] = `${this.label}=${params}`;
    out['signature'] = `${this.label}=:${signature.toString('base64')}:`;
    return out;
  }

  /** The one private-key operation: on a device, the keystore's sign() over the signature base bytes. */
  signBase(base: string): Buffer {
    return signBytes(this.alg, this.privateKey, Buffer.from(base, 'utf8'));
  }

  private requireRegistration(): Registered {
    if (this.registration === undefined) throw new Error('register the device first');
    return this.registration;
  }
}

/**
 * What a registration authority (your backend) hands the app after checking
 * it by its own means: a short-lived JWT naming the device key's thumbprint,
 * the platform and optionally the user. The key is the authority's private
 * key (P-256 or Ed25519), configured on the gateway as a public key.
 */
export function offlineAttestation(authorityKey: KeyObject | string, o: { authority: string; jkt: string; platform: string; user?: string; nowMs?: number }): Record<string, unknown> {
  const key = typeof authorityKey === 'string' ? createPrivateKey(authorityKey) : authorityKey;
  const ed = key.asymmetricKeyType === 'ed25519';
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64({ alg: ed ? 'EdDSA' : 'ES256', typ: ATTESTATION_TYP })}.${b64({ jkt: o.jkt, platform: o.platform, ...(o.user ? { sub: o.user } : {}), iat: Math.floor((o.nowMs ?? Date.now()) / 1000) })}`;
  const sig = signBytes(ed ? 'ed25519' : 'ecdsa-p256-sha256', key, Buffer.from(input));
  return { format: 'offline', authority: o.authority, token: `${input}.${sig.toString('base64url')}` };
}
