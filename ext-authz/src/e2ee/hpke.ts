/**
 * The receiving half of HPKE (RFC 9180) for the one KEM and KDF Passgate
 * pins — DHKEM(X25519, HKDF-SHA256) + HKDF-SHA256 — with AES-128-GCM or
 * AES-256-GCM, in base and auth modes, on node:crypto primitives.
 *
 * Why not @hpke/core here: it is the reference the tests and the app client
 * use, but its opener is asynchronous WebCrypto plus HKDF in JavaScript;
 * `npm run bench:e2ee` runs both on the same work (open + re-seal the reply):
 * these synchronous primitives were 3x faster at 1 KB and 12x at 256 KB in
 * one run. Interoperability with @hpke/core is proven in
 * test/e2ee/hpke.test.ts in both modes and for the exporter.
 */
import { createCipheriv, createDecipheriv, createHmac, createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';

export const KEM_X25519_SHA256 = 0x0020;
export const KDF_HKDF_SHA256 = 0x0001;
export const AEAD_AES_128_GCM = 0x0001;
export const AEAD_AES_256_GCM = 0x0002;

export type AeadId = typeof AEAD_AES_128_GCM | typeof AEAD_AES_256_GCM;

/** Bytes of the encapsulated key (X25519 public key) and of a tag. */
export const N_ENC = 32;
export const N_TAG = 16;
const N_NONCE = 12;
const N_H = 32;

export function aeadKeyLength(aead: AeadId): 16 | 32 {
  return aead === AEAD_AES_128_GCM ? 16 : 32;
}

export function aeadCipher(aead: AeadId): 'aes-128-gcm' | 'aes-256-gcm' {
  return aead === AEAD_AES_128_GCM ? 'aes-128-gcm' : 'aes-256-gcm';
}

const VERSION = Buffer.from('HPKE-v1');
const EMPTY = Buffer.alloc(0);
const ZERO_SALT = Buffer.alloc(N_H);
const KEM_SUITE = Buffer.from([0x4b, 0x45, 0x4d, 0x00, 0x20]); // "KEM" || kem_id
const MODE_BASE = 0x00;
const MODE_AUTH = 0x02;

// DER prefixes that wrap a raw 32-byte X25519 key (SPKI / PKCS#8), so no JWK round trip per request.
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

export function x25519PublicKey(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new Error(`an X25519 public key is 32 bytes, got ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: 'der', type: 'spki' });
}

export function x25519PrivateKey(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new Error(`an X25519 private key is 32 bytes, got ${raw.length}`);
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
}

/** The raw 32 bytes of an X25519 public key. */
export function rawPublicKey(key: KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

export function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Buffer {
  return createHmac('sha256', salt.length === 0 ? ZERO_SALT : salt).update(ikm).digest();
}

export function hkdfExpand(prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  const out = Buffer.alloc(length);
  let prev = EMPTY;
  for (let i = 1, off = 0; off < length; i++) {
    prev = createHmac('sha256', prk).update(prev).update(info).update(Buffer.of(i)).digest();
    off += prev.copy(out, off);
  }
  return out;
}

function labeledExtract(suite: Buffer, salt: Uint8Array, label: string, ikm: Uint8Array): Buffer {
  return createHmac('sha256', salt.length === 0 ? ZERO_SALT : salt).update(VERSION).update(suite).update(label).update(ikm).digest();
}

function labeledExpand(suite: Buffer, prk: Uint8Array, label: string, info: Uint8Array, length: number): Buffer {
  const head = Buffer.alloc(2);
  head.writeUInt16BE(length);
  return hkdfExpand(prk, Buffer.concat([head, VERSION, suite, Buffer.from(label), info]), length);
}

function dh(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  const shared = diffieHellman({ privateKey, publicKey });
  // RFC 9180 §7.1.4: an all-zero X25519 output (small-order public key) must be rejected.
  let acc = 0;
  for (const b of shared) acc |= b;
  if (acc === 0) throw new HpkeOpenError('small-order public key');
  return shared;
}

export class HpkeOpenError extends Error {}

export interface RecipientKey {
  readonly privateKey: KeyObject;
  /** Raw public key bytes (pkRm). */
  readonly publicKey: Buffer;
}

/** What a receiver keeps after opening the first (and only) message: the exporter. */
export interface OpenedContext {
  readonly plaintext: Buffer;
  exportSecret(context: Uint8Array, length: number): Buffer;
}

/**
 * SetupBaseR / SetupAuthR followed by one Open at sequence 0 (a request
 * carries exactly one message). `senderPublicKey` selects auth mode.
 * Throws HpkeOpenError (never a bare crypto error) when it does not open.
 */
export function openOnce(
  aead: AeadId,
  recipient: RecipientKey,
  enc: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
  senderPublicKey?: { key: KeyObject; raw: Buffer },
): OpenedContext {
  if (enc.length !== N_ENC) throw new HpkeOpenError('enc length');
  if (ciphertext.length < N_TAG) throw new HpkeOpenError('ciphertext shorter than the tag');
  let pkE: KeyObject;
  try {
    pkE = x25519PublicKey(enc);
  } catch {
    throw new HpkeOpenError('enc is not an X25519 key');
  }
  let dhBytes: Buffer;
  let kemContext: Buffer;
  try {
    dhBytes = senderPublicKey === undefined
      ? dh(recipient.privateKey, pkE)
      : Buffer.concat([dh(recipient.privateKey, pkE), dh(recipient.privateKey, senderPublicKey.key)]);
  } catch (err) {
    throw err instanceof HpkeOpenError ? err : new HpkeOpenError('key agreement failed');
  }
  kemContext = senderPublicKey === undefined
    ? Buffer.concat([enc, recipient.publicKey])
    : Buffer.concat([enc, recipient.publicKey, senderPublicKey.raw]);
  const eaePrk = labeledExtract(KEM_SUITE, EMPTY, 'eae_prk', dhBytes);
  const sharedSecret = labeledExpand(KEM_SUITE, eaePrk, 'shared_secret', kemContext, N_H);

  const suite = Buffer.from([0x48, 0x50, 0x4b, 0x45, 0x00, 0x20, 0x00, 0x01, 0x00, aead]); // "HPKE" kem kdf aead
  const pskIdHash = labeledExtract(suite, EMPTY, 'psk_id_hash', EMPTY);
  const infoHash = labeledExtract(suite, EMPTY, 'info_hash', info);
  const ksc = Buffer.concat([Buffer.of(senderPublicKey === undefined ? MODE_BASE : MODE_AUTH), pskIdHash, infoHash]);
  const secret = labeledExtract(suite, sharedSecret, 'secret', EMPTY);
  const key = labeledExpand(suite, secret, 'key', ksc, aeadKeyLength(aead));
  const nonce = labeledExpand(suite, secret, 'base_nonce', ksc, N_NONCE); // sequence 0: nonce = base_nonce
  const exporterSecret = labeledExpand(suite, secret, 'exp', ksc, N_H);

  const body = ciphertext.subarray(0, ciphertext.length - N_TAG);
  const tag = ciphertext.subarray(ciphertext.length - N_TAG);
  let plaintext: Buffer;
  try {
    const decipher = createDecipheriv(aeadCipher(aead), key, nonce, { authTagLength: N_TAG });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    plaintext = Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    throw new HpkeOpenError('tag mismatch');
  }
  return {
    plaintext,
    exportSecret: (context, length) => labeledExpand(suite, exporterSecret, 'sec', context, length),
  };
}

/** AES-GCM seal with a 16-byte tag appended (ciphertext || tag). */
export function aeadSeal(aead: AeadId, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Buffer {
  const cipher = createCipheriv(aeadCipher(aead), key, nonce, { authTagLength: N_TAG });
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

export const AEAD_NONCE_LENGTH = N_NONCE;
