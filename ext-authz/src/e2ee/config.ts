/**
 * The `e2ee` section: the encrypted media type, server keys (ids, rotation),
 * registered app keys (senders), size and time bounds. Strict, so a typo is a
 * startup error naming the key.
 */
import { z } from 'zod';

const mediaType = z
  .string()
  .regex(/^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/, 'must be a lowercase media type without parameters, e.g. application/vnd.passgate.e2ee');

const serverKeySchema = z
  .strictObject({
    /** One byte, carried in every envelope (RFC 9458 key id). */
    id: z.number().int().min(0).max(255),
    /** X25519 private key: PKCS#8 PEM or a JWK (`kty: OKP, crv: X25519, d`) file, e.g. a mounted Secret. */
    file: z.string().min(1).optional(),
    /** Generate a key pair at start (development); kept across reloads, lost on restart. */
    generate: z.literal(true).optional(),
    /** Published in the key config (apps encrypt to it). Set false while a key is being retired. */
    publish: z.boolean().default(true),
    /** Rotation grace: after this instant (ISO 8601) the key no longer decrypts. */
    decryptUntil: z.iso.datetime({ offset: true }).optional(),
  })
  .refine((k) => (k.file === undefined) !== (k.generate === undefined), {
    message: 'set exactly one of file (a PEM or JWK file) or generate: true',
  });

const senderSchema = z
  .strictObject({
    /** The sender id carried in the envelope (1-64 of [A-Za-z0-9._~-]). */
    id: z.string().regex(/^[A-Za-z0-9._~-]{1,64}$/, 'use 1-64 characters of A-Z a-z 0-9 . _ ~ -'),
    /** Which app this key belongs to; becomes the identity subject `app:<app>`. */
    app: z.string().regex(/^[a-z][a-z0-9-]{0,63}$/, 'use 1-64 lowercase letters, digits and "-", starting with a letter'),
    /** The app instance's X25519 public key: SPKI PEM or JWK file ... */
    file: z.string().min(1).optional(),
    /** ... or inline, base64url of the raw 32 bytes. */
    publicKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be base64url of 32 raw bytes (43 characters)').optional(),
  })
  .refine((s) => (s.file === undefined) !== (s.publicKey === undefined), { message: 'set exactly one of file or publicKey' });

const sectionSchema = z
  .strictObject({
    /** The content-type of encrypted request bodies; only these requests are decrypted (others pass untouched). */
    contentType: mediaType.default('application/vnd.passgate.e2ee'),
    /** The content-type of encrypted responses. */
    responseContentType: mediaType.default('application/vnd.passgate.e2ee-response'),
    /** Largest encrypted body accepted; bigger is a 413 `e2ee_too_large`. Must fit `server.maxMessageBytes`. */
    maxBodyBytes: z.number().int().min(64).max(32 * 1024 * 1024).default(1024 * 1024),
    /** AEADs accepted (the KEM and KDF are pinned: X25519 + HKDF-SHA256). */
    aeads: z.array(z.enum(['aes-128-gcm', 'aes-256-gcm'])).min(1).default(['aes-128-gcm', 'aes-256-gcm']),
    /** How far the envelope's `created` time may be from ours; replay records are kept twice as long. */
    maxSkewSeconds: z.number().int().min(5).max(3600).default(300),
    /** Accept envelopes with no sender (HPKE base mode, no app authentication). Off: every body must come from a registered app key. */
    allowAnonymous: z.boolean().default(false),
    /** Encrypt response bodies of decrypted requests with a key exported from the request's HPKE context. */
    encryptResponses: z.boolean().default(false),
    /** Bound on the single-use check of `enc` (Redis round trip); past it the request is refused (503). */
    replayTimeoutMs: z.number().int().min(1).max(10_000).default(100),
    /** How long the facts header handed to Check stays valid. */
    factsTtlMs: z.number().int().min(100).max(60_000).default(10_000),
    /**
     * File with the secret (>= 32 bytes) that authenticates the facts header between the
     * processor and Check; required when several replicas serve (Envoy may send ext_proc and
     * Check of one request to different ones). Without it each process draws its own.
     */
    factsSecretFile: z.string().min(1).optional(),
    keys: z.array(serverKeySchema).min(1, 'at least one server key is needed'),
    senders: z.array(senderSchema).default([]),
  })
  .superRefine((c, ctx) => {
    const ids = new Set<number>();
    c.keys.forEach((k, i) => {
      if (ids.has(k.id)) ctx.addIssue({ code: 'custom', path: ['keys', i, 'id'], message: `key id ${k.id} is used twice` });
      ids.add(k.id);
    });
    if (!c.keys.some((k) => k.publish)) ctx.addIssue({ code: 'custom', path: ['keys'], message: 'no key has publish: true; apps would have nothing to encrypt to' });
    const senders = new Set<string>();
    c.senders.forEach((s, i) => {
      if (senders.has(s.id)) ctx.addIssue({ code: 'custom', path: ['senders', i, 'id'], message: `sender id ${s.id} is used twice` });
      senders.add(s.id);
    });
    if (c.contentType === c.responseContentType) ctx.addIssue({ code: 'custom', path: ['responseContentType'], message: 'must differ from contentType' });
  });

export const e2eeConfigSchema = sectionSchema.optional();
export type E2eeConfig = z.infer<typeof sectionSchema>;

declare module '../config/schema.js' {
  interface ConfigSections {
    /** End-to-end encrypted bodies (ext_proc): keys, senders, limits. */
    e2ee?: E2eeConfig;
  }
}
