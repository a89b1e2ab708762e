/**
 * Server keys (X25519, one-byte ids, rotation by `publish` / `decryptUntil`)
 * and registered sender keys, plus the key config apps fetch: the RFC 9458
 * §3 Key Config encoding, several of them length-prefixed as the
 * `application/ohttp-keys` media type of RFC 9540 §3 does.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { E2eeConfig } from './config.js';
import { AEAD_AES_128_GCM, AEAD_AES_256_GCM, KDF_HKDF_SHA256, KEM_X25519_SHA256, rawPublicKey, x25519PublicKey, type AeadId, type RecipientKey } from './hpke.js';

export interface ServerKey extends RecipientKey {
  readonly id: number;
  readonly publish: boolean;
  /** Epoch ms after which it no longer decrypts; Infinity when unset. */
  readonly decryptUntil: number;
}

export interface SenderKey {
  readonly id: string;
  readonly app: string;
  readonly key: KeyObject;
  readonly raw: Buffer;
}

export const AEAD_IDS: Readonly<Record<E2eeConfig['aeads'][number], AeadId>> = { 'aes-128-gcm': AEAD_AES_128_GCM, 'aes-256-gcm': AEAD_AES_256_GCM };

function readKeyFile(path: string, kind: 'private' | 'public', where: string): KeyObject {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new Error(`${where}.file: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let key: KeyObject;
  try {
    if (text.startsWith('{')) {
      const jwk = JSON.parse(text) as Record<string, unknown>;
      key = kind === 'private' ? createPrivateKey({ key: jwk as never, format: 'jwk' }) : createPublicKey({ key: jwk as never, format: 'jwk' });
    } else {
      key = kind === 'private' ? createPrivateKey(text) : createPublicKey(text);
    }
  } catch (err) {
    throw new Error(`${where}.file: ${path} is not a ${kind} key in PEM or JWK form (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'x25519') {
    throw new Error(`${where}.file: ${path} holds a ${key.asymmetricKeyType} key; e2ee keys must be X25519`);
  }
  return key;
}

/**
 * Builds the server keys. `previous` lets a reload keep generated keys
 * (same id, still `generate: true`), so apps holding the key config keep working.
 */
export function loadServerKeys(config: E2eeConfig, previous: readonly ServerKey[] | undefined): ServerKey[] {
  return config.keys.map((k, i) => {
    const where = `e2ee.keys[${i}]`;
    let privateKey: KeyObject;
    if (k.file !== undefined) privateKey = readKeyFile(k.file, 'private', where);
    else privateKey = previous?.find((p) => p.id === k.id && (p as { generated?: boolean }).generated)?.privateKey ?? generateKeyPairSync('x25519').privateKey;
    const key: ServerKey & { generated?: boolean } = {
      id: k.id,
      privateKey,
      publicKey: rawPublicKey(createPublicKey(privateKey)),
      publish: k.publish,
      decryptUntil: k.decryptUntil === undefined ? Infinity : Date.parse(k.decryptUntil),
    };
    if (k.generate) key.generated = true;
    return key;
  });
}

export function loadSenders(config: E2eeConfig): Map<string, SenderKey> {
  const out = new Map<string, SenderKey>();
  config.senders.forEach((s, i) => {
    const where = `e2ee.senders[${i}]`;
    const key = s.file !== undefined ? readKeyFile(s.file, 'public', where) : x25519PublicKey(Buffer.from(s.publicKey!, 'base64url'));
    out.set(s.id, { id: s.id, app: s.app, key, raw: rawPublicKey(key) });
  });
  return out;
}

/** RFC 9458 §3.1 Key Config for one key with every accepted AEAD. */
export function encodeKeyConfig(key: ServerKey, aeads: readonly AeadId[]): Buffer {
  const out = Buffer.alloc(1 + 2 + 32 + 2 + 4 * aeads.length);
  let off = out.writeUInt8(key.id, 0);
  off = out.writeUInt16BE(KEM_X25519_SHA256, off);
  off += key.publicKey.copy(out, off);
  off = out.writeUInt16BE(4 * aeads.length, off);
  for (const a of aeads) {
    off = out.writeUInt16BE(KDF_HKDF_SHA256, off);
    off = out.writeUInt16BE(a, off);
  }
  return out;
}

/** `application/ohttp-keys` (RFC 9540 §3): each published key config prefixed by its 2-byte length, newest id order as configured. */
export function encodeKeyConfigs(keys: readonly ServerKey[], aeads: readonly AeadId[], now = Date.now()): Buffer {
  const parts: Buffer[] = [];
  for (const k of keys) {
    if (!k.publish || k.decryptUntil <= now) continue;
    const config = encodeKeyConfig(k, aeads);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(config.length);
    parts.push(len, config);
  }
  return Buffer.concat(parts);
}

/** Parses `application/ohttp-keys` (the app client and the tests use it). */
export function decodeKeyConfigs(bytes: Uint8Array): Array<{ keyId: number; kemId: number; publicKey: Buffer; suites: Array<{ kdfId: number; aeadId: number }> }> {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  let off = 0;
  while (off < buf.length) {
    if (off + 2 > buf.length) throw new Error('key config list truncated');
    const len = buf.readUInt16BE(off);
    const end = off + 2 + len;
    if (end > buf.length || len < 37) throw new Error('key config truncated');
    let p = off + 2;
    const keyId = buf[p]!;
    const kemId = buf.readUInt16BE(p + 1);
    if (kemId !== KEM_X25519_SHA256) throw new Error(`key ${keyId}: KEM ${kemId} is not DHKEM(X25519, HKDF-SHA256)`);
    const publicKey = Buffer.from(buf.subarray(p + 3, p + 35));
    const suitesLen = buf.readUInt16BE(p + 35);
    p += 37;
    if (p + suitesLen !== end || suitesLen % 4 !== 0) throw new Error(`key ${keyId}: bad algorithm list length`);
    const suites = [];
    for (; p < end; p += 4) suites.push({ kdfId: buf.readUInt16BE(p), aeadId: buf.readUInt16BE(p + 2) });
    out.push({ keyId, kemId, publicKey, suites });
    off = end;
  }
  return out;
}
