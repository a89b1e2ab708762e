/**
 * Decrypts one envelope and authenticates its sender in the same step:
 * parse → pinned suite → server key (rotation) → sender key (HPKE auth mode)
 * → creation time → open → single-use `enc` → inner content-type. Every
 * failure is a reason string; nothing here throws, logs plaintext or keys.
 */
import { randomBytes } from 'node:crypto';
import type { E2eeConfig } from './config.js';
import { decodeInner, encodeInner, parseEnvelope, pinnedAead, requestInfo, RESPONSE_LABEL } from './envelope.js';
import { AEAD_NONCE_LENGTH, aeadKeyLength, aeadSeal, hkdfExpand, hkdfExtract, HpkeOpenError, openOnce, type AeadId } from './hpke.js';
import { AEAD_IDS, type SenderKey, type ServerKey } from './keys.js';
import type { ReplayClaims } from './replay.js';
import type { DenyStatus } from '../pipeline/decision.js';

export interface Opened {
  readonly ok: true;
  readonly contentType: string;
  readonly payload: Buffer;
  readonly app: string;
  readonly sender: string;
  readonly keyId: number;
  readonly aead: AeadId;
  /** Seals a response body for this request only (key exported from its HPKE context). */
  sealResponse(contentType: string, payload: Buffer): Buffer;
}

export interface Refused {
  readonly ok: false;
  readonly status: DenyStatus;
  readonly reason: string;
  /** The registered sender the envelope authenticated as (only when it opened, e.g. a replay). */
  readonly sender?: string;
}

const EMPTY = Buffer.alloc(0);
const KEY_LABEL = Buffer.from('key');
const NONCE_LABEL = Buffer.from('nonce');

function refuse(status: DenyStatus, reason: string): Refused {
  return { ok: false, status, reason };
}

export class Opener {
  private readonly keys: ReadonlyMap<number, ServerKey>;
  private readonly aeads: readonly AeadId[];

  constructor(
    private readonly config: E2eeConfig,
    keys: readonly ServerKey[],
    private readonly senders: ReadonlyMap<string, SenderKey>,
    private readonly replay: ReplayClaims,
  ) {
    this.keys = new Map(keys.map((k) => [k.id, k]));
    this.aeads = config.aeads.map((a) => AEAD_IDS[a]);
  }

  async open(body: Buffer, now = Date.now()): Promise<Opened | Refused> {
    if (body.length > this.config.maxBodyBytes) return refuse(413, 'e2ee_too_large');
    // Algorithm ids first (fixed offsets): plaintext sent as ciphertext lands here, not on a length error.
    if (body.length >= 7 && pinnedAead({ kemId: body.readUInt16BE(1), kdfId: body.readUInt16BE(3), aeadId: body.readUInt16BE(5) }, this.aeads) === undefined) {
      return refuse(400, 'e2ee_unsupported_algorithm');
    }
    const env = parseEnvelope(body);
    if (typeof env === 'string') return refuse(400, env);
    const aead = pinnedAead(env, this.aeads);
    if (aead === undefined) return refuse(400, 'e2ee_unsupported_algorithm');
    const key = this.keys.get(env.keyId);
    if (key === undefined) return refuse(400, 'e2ee_unknown_key');
    if (key.decryptUntil <= now) return refuse(400, 'e2ee_key_retired');
    let sender: SenderKey | undefined;
    if (env.senderId === '') {
      if (!this.config.allowAnonymous) return refuse(401, 'e2ee_sender_required');
    } else {
      sender = this.senders.get(env.senderId);
      if (sender === undefined) return refuse(401, 'e2ee_unknown_sender');
    }
    const skew = this.config.maxSkewSeconds;
    if (Math.abs(now / 1000 - env.created) > skew) return refuse(400, 'e2ee_stale');

    let opened;
    try {
      opened = openOnce(aead, key, env.enc, requestInfo(env.headerBytes), EMPTY, env.ciphertext, sender && { key: sender.key, raw: sender.raw });
    } catch (err) {
      if (err instanceof HpkeOpenError) return refuse(400, 'e2ee_decrypt_failed');
      return refuse(400, 'e2ee_decrypt_failed');
    }
    // Only a body that opened is claimed: garbage cannot fill the replay store.
    // Records outlive the creation-time window, so an older replay is refused as stale.
    const claim = await this.replay.claim(env.enc.toString('base64url'), (env.created + 2 * skew) * 1000);
    if (claim === 'replayed') return { ok: false, status: 400, reason: 'e2ee_replayed', ...(sender ? { sender: sender.id } : {}) };
    if (claim === 'unavailable') return refuse(503, 'e2ee_replay_check_unavailable');
    const inner = decodeInner(opened.plaintext);
    if (inner === undefined) return refuse(400, 'e2ee_bad_inner_content_type');

    const nk = aeadKeyLength(aead);
    const enc = Buffer.from(env.enc);
    const secret = opened.exportSecret(RESPONSE_LABEL, nk);
    return {
      ok: true,
      contentType: inner.contentType,
      payload: inner.payload,
      app: sender?.app ?? '',
      sender: sender?.id ?? '',
      keyId: key.id,
      aead,
      sealResponse(contentType, payload) {
        const nonce = randomBytes(nk);
        const prk = hkdfExtract(Buffer.concat([enc, nonce]), secret);
        const k = hkdfExpand(prk, KEY_LABEL, nk);
        const iv = hkdfExpand(prk, NONCE_LABEL, AEAD_NONCE_LENGTH);
        return Buffer.concat([nonce, aeadSeal(aead, k, iv, EMPTY, encodeInner(contentType, payload))]);
      },
    };
  }
}
