/**
 * The app side, as a reference for app teams and the test/bench client:
 * fetches nothing itself; given the key config (`GET /e2ee/keys` on the
 * admin port, `application/ohttp-keys`) and optionally the app's own X25519
 * key pair, it seals request bodies and opens encrypted responses.
 *
 * It uses @hpke/core (WebCrypto) and WebCrypto HKDF, not Passgate's
 * node:crypto receiver, so the two sides are independent implementations.
 */
import { webcrypto } from 'node:crypto';
import { Aes128Gcm, Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { decodeInner, encodeHeader, encodeInner, requestInfo, RESPONSE_LABEL } from './envelope.js';
import { AEAD_AES_128_GCM, AEAD_AES_256_GCM, KDF_HKDF_SHA256, KEM_X25519_SHA256 } from './hpke.js';
import { decodeKeyConfigs } from './keys.js';

type Aead = 'aes-128-gcm' | 'aes-256-gcm';

export interface SenderIdentity {
  /** The id registered in `e2ee.senders[].id`. */
  readonly id: string;
  readonly keyPair: CryptoKeyPair;
}

export interface SealedRequest {
  /** The body to send, with content-type `contentType`. */
  readonly body: Uint8Array;
  readonly enc: Uint8Array;
  /** Opens the encrypted response of this request (and only this one). */
  openResponse(body: Uint8Array): Promise<{ contentType: string; payload: Buffer }>;
}

function suiteFor(aead: Aead): CipherSuite {
  return new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: aead === 'aes-128-gcm' ? new Aes128Gcm() : new Aes256Gcm() });
}

export class E2eeClient {
  private readonly suite: CipherSuite;
  private readonly aeadId: number;
  private readonly nk: number;

  private constructor(
    private readonly keyId: number,
    private readonly serverKey: CryptoKey,
    private readonly sender: SenderIdentity | undefined,
    aead: Aead,
  ) {
    this.suite = suiteFor(aead);
    this.aeadId = aead === 'aes-128-gcm' ? AEAD_AES_128_GCM : AEAD_AES_256_GCM;
    this.nk = aead === 'aes-128-gcm' ? 16 : 32;
  }

  /** Picks the first published key that offers `aead` with HKDF-SHA256. */
  static async fromKeyConfigs(keyConfigs: Uint8Array, options: { sender?: SenderIdentity; aead?: Aead } = {}): Promise<E2eeClient> {
    const aead = options.aead ?? 'aes-128-gcm';
    const want = aead === 'aes-128-gcm' ? AEAD_AES_128_GCM : AEAD_AES_256_GCM;
    const config = decodeKeyConfigs(keyConfigs).find((c) => c.suites.some((s) => s.kdfId === KDF_HKDF_SHA256 && s.aeadId === want));
    if (config === undefined) throw new Error(`no published e2ee key offers ${aead}`);
    const suite = suiteFor(aead);
    const serverKey = await suite.kem.deserializePublicKey(config.publicKey.buffer.slice(config.publicKey.byteOffset, config.publicKey.byteOffset + 32) as ArrayBuffer);
    return new E2eeClient(config.keyId, serverKey, options.sender, aead);
  }

  /** A fresh app key pair; register `publicKey` (base64url) as `e2ee.senders[].publicKey`. */
  static async generateSender(id: string): Promise<{ sender: SenderIdentity; publicKey: string }> {
    const suite = suiteFor('aes-128-gcm');
    const keyPair = await suite.kem.generateKeyPair();
    const raw = Buffer.from(await suite.kem.serializePublicKey(keyPair.publicKey));
    return { sender: { id, keyPair }, publicKey: raw.toString('base64url') };
  }

  /** An app key pair from its private JWK (`kty: OKP, crv: X25519, d, x`), e.g. read from the app's key store. */
  static async senderFromJwk(id: string, jwk: { kty: string; crv: string; d: string; x: string }): Promise<SenderIdentity> {
    const kem = suiteFor('aes-128-gcm').kem;
    const privateKey = await kem.importKey('jwk', { ...jwk }, false);
    const raw = Buffer.from(jwk.x, 'base64url');
    const publicKey = await kem.importKey('raw', raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length) as ArrayBuffer, true);
    return { id, keyPair: { privateKey, publicKey } };
  }

  async seal(contentType: string, payload: Uint8Array, options: { now?: number; keyId?: number } = {}): Promise<SealedRequest> {
    const header = encodeHeader({
      keyId: options.keyId ?? this.keyId,
      kemId: KEM_X25519_SHA256,
      kdfId: KDF_HKDF_SHA256,
      aeadId: this.aeadId,
      created: Math.floor((options.now ?? Date.now()) / 1000),
      senderId: this.sender?.id ?? '',
    });
    const ctx = await this.suite.createSenderContext({
      recipientPublicKey: this.serverKey,
      info: requestInfo(header),
      ...(this.sender ? { senderKey: this.sender.keyPair } : {}),
    });
    const ct = new Uint8Array(await ctx.seal(encodeInner(contentType, payload)));
    const enc = new Uint8Array(ctx.enc);
    const secret = new Uint8Array(await ctx.export(RESPONSE_LABEL, this.nk));
    const nk = this.nk;
    const aeadName = 'AES-GCM';
    return {
      body: Buffer.concat([header, enc, ct]),
      enc,
      async openResponse(body) {
        if (body.length < nk + 16) throw new Error('encrypted response truncated');
        const nonce = body.subarray(0, nk);
        const ikm = await webcrypto.subtle.importKey('raw', secret, 'HKDF', false, ['deriveBits']);
        const salt = Buffer.concat([enc, nonce]);
        const derive = (info: string, bits: number) => webcrypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info: Buffer.from(info) }, ikm, bits);
        const key = await webcrypto.subtle.importKey('raw', await derive('key', nk * 8), aeadName, false, ['decrypt']);
        const iv = await derive('nonce', 96);
        const plain = Buffer.from(await webcrypto.subtle.decrypt({ name: aeadName, iv, tagLength: 128 }, key, body.subarray(nk)));
        const inner = decodeInner(plain);
        if (inner === undefined) throw new Error('encrypted response has a bad inner content-type');
        return inner;
      },
    };
  }
}
