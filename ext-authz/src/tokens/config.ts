/**
 * The `tokens` section: who may issue bearer tokens (`issuers`), which
 * clients may sign request JWTs (`clients`), and the proof key cache and
 * DPoP nonce settings. Stages name issuers and clients; a name that does not
 * exist is a startup error.
 */
import { z } from 'zod';
import { duration } from '../fds/config.js';
import { JWS_ALGORITHMS } from './algorithms.js';

const algorithms = z.array(z.enum(JWS_ALGORITHMS)).min(1, 'pin at least one algorithm (they are never taken from the token)');

const jwk = z.record(z.string(), z.unknown()).refine((k) => typeof k['kty'] === 'string', { message: 'a JWK needs "kty"' });

const jwksFetch = z
  .strictObject({
    /** Refetch in the background after this long (keys keep answering meanwhile). */
    refresh: duration(10_000, 86_400_000).default(600_000),
    /** Least time between two fetches (unknown-kid refreshes are rate-limited by this). */
    minRefresh: duration(1_000, 3_600_000).default(30_000),
    timeout: duration(100, 30_000).default(2_000),
    maxBytes: z.number().int().min(1024).max(4 * 1024 * 1024).default(256 * 1024),
    maxKeys: z.number().int().min(1).max(1000).default(64),
  })
  .prefault({});

/** How claims become the Identity later stages (authorize, passport, fds) read. */
export const identityMapping = z
  .strictObject({
    subject: z.string().min(1).default('sub'),
    kind: z.enum(['user', 'service', 'developer']).default('user'),
    /** Claim holding groups (array of strings, or one space-separated string). */
    groups: z.string().min(1).optional(),
    /** Claim holding scopes; they are added to groups as `scope:<name>`. */
    scopes: z.string().min(1).default('scope'),
    deviceId: z.string().min(1).optional(),
    /** attribute name → claim name (string, number or boolean claims). */
    attributes: z.record(z.string().min(1), z.string().min(1)).default({}),
  })
  .prefault({});
export type IdentityMapping = z.infer<typeof identityMapping>;

const keySource = {
  /** Static public JWKs. */
  keys: z.array(jwk).min(1).optional(),
  jwksUri: z.url().optional(),
  jwks: jwksFetch,
};

const issuerSchema = z
  .strictObject({
    /** Expected `iss`, exactly. */
    issuer: z.string().min(1),
    /** Find the JWKS through `<issuer>/.well-known/openid-configuration` (default when neither keys nor jwksUri is set). */
    discovery: z.boolean().optional(),
    ...keySource,
    algorithms,
    /** Accepted `aud` values; the token must name at least one. */
    audience: z.array(z.string().min(1)).min(1, 'name the audience this gateway accepts'),
    /** Accepted `typ` header values (e.g. `at+jwt`); any when unset. */
    typ: z.array(z.string().min(1)).min(1).optional(),
    clockSkew: duration(0, 300_000).default(30_000),
    maxTokenBytes: z.number().int().min(256).max(64 * 1024).default(8 * 1024),
    requiredClaims: z.array(z.string().min(1)).default([]),
    /** claim → accepted values (a string claim equals one; an array claim contains one). */
    claims: z.record(z.string().min(1), z.array(z.union([z.string(), z.number(), z.boolean()])).min(1)).default({}),
    identity: identityMapping,
  })
  .refine((i) => !(i.keys && i.jwksUri) && !(i.discovery && (i.keys || i.jwksUri)), { message: 'use one key source: keys, jwksUri, or discovery' });
export type IssuerConfig = z.infer<typeof issuerSchema>;

const clientSchema = z
  .strictObject({
    ...keySource,
    algorithms,
    /** The `iss` a request JWT of this client carries (defaults to the client's name). */
    issuer: z.string().min(1).optional(),
    /** Accepted `aud` values of request JWTs, when they must carry one. */
    audience: z.array(z.string().min(1)).min(1).optional(),
    identity: identityMapping,
  })
  .refine((c) => c.keys !== undefined || c.jwksUri !== undefined, { message: 'a client needs keys or jwksUri' })
  .refine((c) => !(c.keys && c.jwksUri), { message: 'use one key source: keys or jwksUri' });
export type ClientConfig = z.infer<typeof clientSchema>;

const sectionSchema = z.strictObject({
  issuers: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/), issuerSchema).default({}),
  clients: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/), clientSchema).default({}),
  /** Bearer tokens whose signature verified (claims are still checked per request). maxEntries 0 turns it off. */
  verifiedTokens: z
    .strictObject({
      maxEntries: z.number().int().min(0).max(1_000_000).default(10_000),
      maxBytes: z.number().int().min(64 * 1024).max(512 * 1024 * 1024).default(32 * 1024 * 1024),
      ttl: duration(1_000, 600_000).default(60_000),
    })
    .prefault({}),
  /** DPoP keys imported from proof headers, reused by their text. */
  proofKeys: z
    .strictObject({
      maxEntries: z.number().int().min(16).max(1_000_000).default(10_000),
      maxBytes: z.number().int().min(64 * 1024).max(512 * 1024 * 1024).default(8 * 1024 * 1024),
    })
    .prefault({}),
  /** Stateless DPoP nonces (HMAC of a time window); every replica must share the secret. */
  nonce: z
    .strictObject({
      secretEnv: z.string().min(1).default('PASSGATE_DPOP_NONCE_SECRET'),
      window: duration(10_000, 3_600_000).default(300_000),
    })
    .prefault({}),
});
export type TokensConfig = z.infer<typeof sectionSchema>;

export const tokensConfigSchema = sectionSchema.optional();

declare module '../config/schema.js' {
  interface ConfigSections {
    /** Bearer JWT issuers, request-JWT clients, proof key cache and DPoP nonces. */
    tokens?: TokensConfig | undefined;
  }
}
