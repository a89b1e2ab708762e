/**
 * The `passport` section of the config: issuer facts, signing keys, where
 * user/device facts come from, relay providers and size limits. Strict
 * everywhere so a typo is a startup error naming the key. The worst-case
 * Passport size is computed here, so a config whose Passport could exceed
 * the header limit is rejected at load, not at the first big user.
 */
import { z } from 'zod';
import { headerNameSchema } from '../config/common.js';
import { worstCasePassportBytes, checkClaimValue } from './claims.js';
import { AUTH_LEVELS, PASSPORT_ALGORITHMS } from './model.js';

const headerName = headerNameSchema;
const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });
const name = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'use 1-32 lowercase letters, digits and "-", starting with a letter');
export const authLevelSchema = z.enum(AUTH_LEVELS);
const algorithm = z.enum(PASSPORT_ALGORITHMS);

const keySchema = z
  .strictObject({
    /** Key id (`kid`): published in the JWKS and the JWS header. */
    id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'use 1-64 letters, digits, . _ -'),
    alg: algorithm.default('EdDSA'),
    /** PEM (PKCS#8 private or SPKI public) or JWK JSON file, e.g. a mounted Kubernetes Secret. */
    file: z.string().min(1).optional(),
    /** Generate a key pair at start (embedded default, development); kept across reloads, lost on restart. */
    generate: z.literal(true).optional(),
  })
  .refine((k) => (k.file === undefined) !== (k.generate === undefined), {
    message: 'set exactly one of file (a PEM or JWK file) or generate: true',
  });

const cacheSchema = z
  .strictObject({
    maxEntries: z.number().int().min(1).max(10_000_000).default(100_000),
    /** Estimated heap bytes for cached facts (charged by their JSON size). */
    maxBytes: z.number().int().min(64 * 1024).max(4 * 1024 * 1024 * 1024).default(32 * 1024 * 1024),
    /** How long fetched facts are fresh. */
    ttlSeconds: z.number().int().min(1).max(86_400).default(60),
    /** How long "user not found" is remembered. */
    negativeTtlSeconds: z.number().int().min(0).max(3_600).default(10),
    /** After expiry, facts may still be served this long while the service errors (stale-if-error). 0 disables. */
    staleIfErrorSeconds: z.number().int().min(0).max(86_400).default(300),
  })
  .prefault({});

const breakerSchema = z
  .strictObject({
    /** Consecutive failures that open the circuit. */
    failureThreshold: z.number().int().min(1).max(1_000).default(5),
    /** How long the circuit stays open before one trial request. */
    openMs: z.number().int().min(100).max(600_000).default(5_000),
  })
  .prefault({});

const httpSourceSchema = z.strictObject({
  type: z.literal('http'),
  /** GET {url}?subject=..&source=..[&device=..]; 200 = facts JSON, 404 = unknown user. */
  url: httpUrl,
  /** Upper bound per request; the Check's remaining deadline lowers it further. */
  timeoutMs: z.number().int().min(1).max(60_000).default(150),
  /** Extra request headers (e.g. a static API key). */
  headers: z.record(headerName, z.string()).default({}),
  maxResponseBytes: z.number().int().min(256).max(1_048_576).default(65_536),
  cache: cacheSchema,
  circuitBreaker: breakerSchema,
});

const staticDevice = z.strictObject({
  type: z.string().min(1).default('unknown'),
  os: z.string().min(1).optional(),
  appVersion: z.string().min(1).optional(),
});
const staticUser = z.strictObject({
  /** User id in the Passport; defaults to the identity subject (the map key). */
  id: z.string().min(1).optional(),
  roles: z.array(z.string().min(1)).default([]),
  scopes: z.array(z.string().min(1)).default([]),
  devices: z.record(z.string().min(1), staticDevice).default({}),
});
const staticSourceSchema = z.strictObject({
  type: z.literal('static'),
  /** Identity subject → user facts. */
  users: z.record(z.string().min(1), staticUser).default({}),
});

const relayProviderSchema = z.strictObject({
  /** GET {url} with `{user}` and `{device}` placeholders (URL-encoded on substitution). */
  url: z.string().min(1).refine((u) => {
    try {
      const p = new URL(u.replaceAll('{user}', 'u').replaceAll('{device}', 'd'));
      return p.protocol === 'http:' || p.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL; {user} and {device} are substituted'),
  /** Top-level JSON field of the answer holding the fact (string, number or boolean). */
  field: z.string().min(1).max(64),
  ttlSeconds: z.number().int().min(1).max(86_400).default(60),
  timeoutMs: z.number().int().min(1).max(60_000).default(100),
  headers: z.record(headerName, z.string()).default({}),
  /** Longest string value accepted (longer answers are a provider failure); bounds the Passport size. */
  maxValueLength: z.number().int().min(1).max(1_024).default(64),
  maxEntries: z.number().int().min(1).max(10_000_000).default(100_000),
  /** Estimated heap bytes for this provider's cached answers. */
  cacheBytes: z.number().int().min(64 * 1024).max(4 * 1024 * 1024 * 1024).default(8 * 1024 * 1024),
  circuitBreaker: breakerSchema,
});

const passportLimitsSchema = z
  .strictObject({
    maxRoles: z.number().int().min(0).max(1_000).default(16),
    maxScopes: z.number().int().min(0).max(1_000).default(32),
    /** Longest id / role / scope / device field accepted from a source (longer = invalid answer). */
    maxValueLength: z.number().int().min(8).max(1_024).default(64),
    /** Reject the config when a worst-case Passport header would be longer than this. */
    maxHeaderBytes: z.number().int().min(512).max(65_536).default(8_192),
  })
  .prefault({});

const sectionSchema = z
  .strictObject({
    /** `iss` claim: a URL or name identifying this gateway fleet. */
    issuer: z.string().min(1).max(256),
    /** `aud` claim: who may accept these Passports. */
    audience: z.union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).min(1).max(16)]),
    /** Upstream request header carrying the Passport; must also be listed in headers.internal. */
    header: headerName.default('x-passport'),
    ttlSeconds: z.number().int().min(5).max(3_600).default(300),
    /** A cached Passport is reused until this fraction of its TTL has passed, then re-signed. */
    reuseFraction: z.number().min(0).max(0.95).default(0.75),
    cacheEntries: z.number().int().min(1).max(10_000_000).default(100_000),
    /** Estimated heap bytes for cached Passports (charged by token and claims size). */
    cacheBytes: z.number().int().min(64 * 1024).max(4 * 1024 * 1024 * 1024).default(64 * 1024 * 1024),
    keys: z
      .strictObject({
        /** The `id` of the key that signs; the others stay in the JWKS for verification during rotation. */
        active: z.string().min(1),
        entries: z.array(keySchema).min(1).max(16),
      })
      .superRefine((k, ctx) => {
        const ids = k.entries.map((e) => e.id);
        ids.forEach((id, i) => {
          if (ids.indexOf(id) !== i) ctx.addIssue({ code: 'custom', path: ['entries', i, 'id'], message: `duplicate key id "${id}"` });
        });
        if (!ids.includes(k.active)) ctx.addIssue({ code: 'custom', path: ['active'], message: `names no key; key ids: ${ids.join(', ')}` });
      }),
    jwks: z
      .strictObject({
        /** Admin-port path of the JWKS. */
        path: z.string().startsWith('/').default('/.well-known/jwks.json'),
        /** `cache-control: max-age` for verifiers; keep it below the key-publication lead time of a rotation. */
        maxAgeSeconds: z.number().int().min(0).max(86_400).default(300),
      })
      .prefault({}),
    /** Auth level per auth method (identity `source`, or its `authMethod` attribute); unlisted methods get LOW. */
    authLevels: z.record(z.string().min(1), authLevelSchema).default({ mtls: 'HIGH' }),
    source: z.discriminatedUnion('type', [httpSourceSchema, staticSourceSchema], {
      error: 'must be {type: http, url: ...} or {type: static, users: {...}}',
    }),
    relay: z.strictObject({ providers: z.record(name, relayProviderSchema).default({}) }).prefault({}),
    limits: passportLimitsSchema,
  })
  .superRefine((p, ctx) => {
    if (p.source.type === 'static') {
      const L = p.limits;
      const check = (path: PropertyKey[], value: string) => {
        const why = checkClaimValue(value, L.maxValueLength);
        if (why !== undefined) ctx.addIssue({ code: 'custom', path: ['source', 'users', ...path], message: `${why} (limits.maxValueLength)` });
      };
      for (const [subject, u] of Object.entries(p.source.users)) {
        check([subject, 'id'], u.id ?? subject);
        if (u.roles.length > L.maxRoles) ctx.addIssue({ code: 'custom', path: ['source', 'users', subject, 'roles'], message: `has ${u.roles.length} roles, over limits.maxRoles (${L.maxRoles})` });
        if (u.scopes.length > L.maxScopes) ctx.addIssue({ code: 'custom', path: ['source', 'users', subject, 'scopes'], message: `has ${u.scopes.length} scopes, over limits.maxScopes (${L.maxScopes})` });
        u.roles.forEach((r, i) => check([subject, 'roles', i], r));
        u.scopes.forEach((r, i) => check([subject, 'scopes', i], r));
        for (const [id, d] of Object.entries(u.devices)) {
          check([subject, 'devices', id], id);
          check([subject, 'devices', id, 'type'], d.type);
          if (d.os !== undefined) check([subject, 'devices', id, 'os'], d.os);
          if (d.appVersion !== undefined) check([subject, 'devices', id, 'appVersion'], d.appVersion);
        }
      }
    }
    const bytes = worstCasePassportBytes(p);
    if (bytes > p.limits.maxHeaderBytes) {
      ctx.addIssue({
        code: 'custom',
        path: ['limits', 'maxHeaderBytes'],
        message: `a worst-case Passport is ${bytes} bytes, over the ${p.limits.maxHeaderBytes}-byte limit; lower limits.maxRoles / maxScopes / maxValueLength or relay maxValueLength, or raise limits.maxHeaderBytes`,
      });
    }
  });

export const passportConfigSchema = sectionSchema.optional();
export type PassportConfig = z.infer<typeof sectionSchema>;
export type PassportKeyConfig = PassportConfig['keys']['entries'][number];
export type HttpSourceConfig = z.infer<typeof httpSourceSchema>;
export type StaticSourceConfig = z.infer<typeof staticSourceSchema>;
export type RelayProviderConfig = z.infer<typeof relayProviderSchema>;

declare module '../config/schema.js' {
  interface ConfigSections {
    /** Passport issuing: keys, sources, TTL. */
    passport?: PassportConfig | undefined;
  }
}
