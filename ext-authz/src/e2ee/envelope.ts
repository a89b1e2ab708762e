/**
 * The wire format of an encrypted body (docs/e2ee.md has the spec). Laid out
 * like an Oblivious HTTP request (RFC 9458 §4.3: key id, KEM/KDF/AEAD ids,
 * enc, ciphertext) with two fields added to the authenticated header: the
 * sender (app key) id that selects HPKE auth mode, and the creation time that
 * bounds how long a replay record must be kept.
 *
 *   header = key_id(1) kem_id(2) kdf_id(2) aead_id(2) created(4, unix s) sender_len(1) sender(sender_len)
 *   body   = header || enc(32) || ciphertext(>= 16)
 *   info   = "passgate e2ee request" 0x00 || header
 *   inner  = type_len(1) || content-type(type_len) || payload     (the plaintext)
 *
 * Response (RFC 9458 §4.4 with our own label): secret = Export("passgate e2ee
 * response", Nk); nonce = random(Nk); prk = Extract(enc || nonce, secret);
 * key = Expand(prk, "key", Nk); iv = Expand(prk, "nonce", 12);
 * body = nonce || Seal(key, iv, "", inner).
 */
import { AEAD_AES_128_GCM, AEAD_AES_256_GCM, KDF_HKDF_SHA256, KEM_X25519_SHA256, N_ENC, N_TAG, type AeadId } from './hpke.js';

export const REQUEST_LABEL = Buffer.from('passgate e2ee request\0');
export const RESPONSE_LABEL = Buffer.from('passgate e2ee response');
export const HEADER_FIXED_BYTES = 12;
export const MAX_SENDER_ID_BYTES = 64;
const SENDER_ID = /^[A-Za-z0-9._~-]+$/;

export interface EnvelopeHeader {
  readonly keyId: number;
  readonly kemId: number;
  readonly kdfId: number;
  readonly aeadId: number;
  /** Unix seconds the client says it sealed the body. */
  readonly created: number;
  /** '' = anonymous (base mode). */
  readonly senderId: string;
}

export interface ParsedEnvelope extends EnvelopeHeader {
  /** The bytes of the header (bound into HPKE info). */
  readonly headerBytes: Buffer;
  readonly enc: Buffer;
  readonly ciphertext: Buffer;
}

/** A reason string (`e2ee_*`) when the bytes are not an envelope at all. */
export function parseEnvelope(body: Buffer): ParsedEnvelope | 'e2ee_truncated' | 'e2ee_bad_sender_id' {
  if (body.length < HEADER_FIXED_BYTES) return 'e2ee_truncated';
  const senderLen = body[HEADER_FIXED_BYTES - 1]!;
  const headerLen = HEADER_FIXED_BYTES + senderLen;
  if (body.length < headerLen + N_ENC + N_TAG) return 'e2ee_truncated';
  if (senderLen > MAX_SENDER_ID_BYTES) return 'e2ee_bad_sender_id';
  const senderId = body.toString('latin1', HEADER_FIXED_BYTES, headerLen);
  if (senderLen > 0 && !SENDER_ID.test(senderId)) return 'e2ee_bad_sender_id';
  return {
    keyId: body[0]!,
    kemId: body.readUInt16BE(1),
    kdfId: body.readUInt16BE(3),
    aeadId: body.readUInt16BE(5),
    created: body.readUInt32BE(7),
    senderId,
    headerBytes: body.subarray(0, headerLen),
    enc: body.subarray(headerLen, headerLen + N_ENC),
    ciphertext: body.subarray(headerLen + N_ENC),
  };
}

export function encodeHeader(h: EnvelopeHeader): Buffer {
  const sender = Buffer.from(h.senderId, 'latin1');
  if (sender.length > MAX_SENDER_ID_BYTES || (sender.length > 0 && !SENDER_ID.test(h.senderId))) {
    throw new Error(`sender id must be 1-${MAX_SENDER_ID_BYTES} characters of [A-Za-z0-9._~-] (or empty)`);
  }
  const out = Buffer.alloc(HEADER_FIXED_BYTES + sender.length);
  out[0] = h.keyId;
  out.writeUInt16BE(h.kemId, 1);
  out.writeUInt16BE(h.kdfId, 3);
  out.writeUInt16BE(h.aeadId, 5);
  out.writeUInt32BE(h.created, 7);
  out[11] = sender.length;
  sender.copy(out, HEADER_FIXED_BYTES);
  return out;
}

export function requestInfo(headerBytes: Uint8Array): Buffer {
  return Buffer.concat([REQUEST_LABEL, headerBytes]);
}

/** Only the pinned suite is accepted: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM or AES-256-GCM. */
export function pinnedAead(h: Pick<EnvelopeHeader, 'kemId' | 'kdfId' | 'aeadId'>, allowed: readonly AeadId[]): AeadId | undefined {
  if (h.kemId !== KEM_X25519_SHA256 || h.kdfId !== KDF_HKDF_SHA256) return undefined;
  if (h.aeadId !== AEAD_AES_128_GCM && h.aeadId !== AEAD_AES_256_GCM) return undefined;
  return allowed.includes(h.aeadId) ? h.aeadId : undefined;
}

/** inner = type_len(1) || content-type || payload. */
export function encodeInner(contentType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(contentType, 'latin1');
  if (type.length > 255) throw new Error('content-type longer than 255 bytes');
  return Buffer.concat([Buffer.of(type.length), type, payload]);
}

// A media type as RFC 9110 §8.3.1 spells it (token/token, optional parameters), no control characters.
const MEDIA_TYPE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:\s*;\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+=(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+|"[^"\\\x00-\x1f\x7f]*"))*$/;

export function decodeInner(plaintext: Buffer): { contentType: string; payload: Buffer } | undefined {
  if (plaintext.length < 1) return undefined;
  const len = plaintext[0]!;
  if (plaintext.length < 1 + len) return undefined;
  const contentType = plaintext.toString('latin1', 1, 1 + len);
  if (len > 0 && !MEDIA_TYPE.test(contentType)) return undefined;
  return { contentType, payload: plaintext.subarray(1 + len) };
}
