/**
 * The `appSignature` section: how Passgate signs device credentials, who may
 * attest a device at registration, and where the registration listener
 * runs. Strict: a typo is a startup error naming the key.
 */
import { z } from 'zod';
import { duration } from '../fds/config.js';

const port = z.number().int().min(0).max(65535);

const authority = z.strictObject({
  /** The registration authority's public key (SPKI PEM, P-256 or Ed25519): your backend's, which vouches for app instances. */
  publicKey: z.string().min(1).optional(),
  publicKeyFile: z.string().min(1).optional(),
  /** The attestation level a device registered by this authority carries (into the credential and the Passport). */
  level: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'must be a short lowercase word like basic, strong').default('basic'),
  /** Platforms this authority may vouch for. */
  platforms: z.array(z.enum(['ios', 'android', 'web', 'desktop'])).min(1).default(['ios', 'android', 'web', 'desktop']),
  /** How old an attestation token may be. */
  maxAge: duration(10_000, 3_600_000).default(300_000),
}).refine((a) => (a.publicKey === undefined) !== (a.publicKeyFile === undefined), { message: 'set exactly one of publicKey (PEM text) or publicKeyFile' });

const sectionSchema = z
  .strictObject({
    credentials: z
      .strictObject({
        /** `iss` of device credentials, checked on every request. */
        issuer: z.string().min(1).default('passgate'),
        /** Lifetime of a device credential; the app rotates (re-issues) before it ends. */
        ttl: duration(60_000, 7 * 86_400_000).default(3_600_000),
        /** PKCS#8 PEM of the ES256 (P-256) key credentials are signed with; the same on every replica. */
        keyFile: z.string().min(1).optional(),
        /** Name of an environment variable holding that PEM (instead of keyFile). */
        keyEnv: z.string().min(1).optional(),
      })
      .refine((c) => !(c.keyFile !== undefined && c.keyEnv !== undefined), { message: 'set keyFile or keyEnv, not both' })
      .prefault({}),
    registration: z
      .strictObject({
        /** The registration listener (its own port: apps reach it through the gateway; it never serves admin endpoints). */
        listen: z.strictObject({ host: z.string().min(1).default('127.0.0.1'), port: port.default(9092) }).prefault({}),
        /** Attestation verifiers by name; `offline` tokens name one of these authorities. */
        authorities: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/), authority).default({}),
        maxBodyBytes: z.number().int().min(512).max(64 * 1024).default(16 * 1024),
      })
      .prefault({}),
    /** Verified credentials and imported device keys, bounded by entries and bytes. */
    cache: z
      .strictObject({ maxEntries: z.number().int().min(1).max(1_000_000).default(50_000), maxBytes: z.number().int().min(65_536).max(1 << 30).default(32 * 1024 * 1024) })
      .prefault({}),
  });

/** Absent = no registration listener (the stage still works with the section's defaults). */
export const appSignatureConfigSchema = sectionSchema.optional();

export type AppSignatureConfig = z.infer<typeof sectionSchema>;

declare module '../config/schema.js' {
  interface ConfigSections {
    appSignature?: AppSignatureConfig;
  }
}

/** The section's defaults, for a config that uses the stage without the section. */
export function appSignatureDefaults(): AppSignatureConfig {
  return sectionSchema.parse({});
}
