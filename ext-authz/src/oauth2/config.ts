/**
 * The `oauth2` section (owned by the oauth2 capability): the authorization
 * servers the gateway asks (discovery or explicit endpoints, and how the
 * gateway authenticates itself to them), the introspection cache, the
 * client_id → identity table, cross-replica revocation and the admin token.
 * Reference: docs/oauth2.md.
 */
import { z } from 'zod';

const secretRef = z
  .strictObject({
    /** Inline secret (tests only; prefer secretEnv / secretFile). */
    secret: z.string().min(1).optional(),
    secretEnv: z.string().min(1).optional(),
    secretFile: z.string().min(1).optional(),
  })
  .refine((s) => [s.secret, s.secretEnv, s.secretFile].filter((v) => v !== undefined).length === 1, {
    message: 'give exactly one of secret, secretEnv, secretFile',
  });

const url = z.url({ protocol: /^https?$/ });

export const serverSchema = z
  .strictObject({
    /** The issuer identifier; with `discovery` its metadata is fetched (RFC 8414 or OIDC discovery). */
    issuer: url,
    discovery: z.enum(['oauth2', 'oidc', 'none']).default('oauth2'),
    /** Explicit endpoints (required with discovery: none; override discovered ones). */
    introspectionEndpoint: url.optional(),
    tokenEndpoint: url.optional(),
    revocationEndpoint: url.optional(),
    /** How the gateway authenticates itself to the introspection (and revocation) endpoint. */
    client: secretRef.and(
      z.object({
        id: z.string().min(1).max(256),
        auth: z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
      }),
    ),
    /**
     * Client credentials in headers are checked with a client_credentials grant at the token endpoint;
     * this scope is requested (the granted scope becomes the client's), none when absent.
     */
    clientCredentialsScope: z.string().min(1).max(2048).optional(),
    /** When set, an introspected token must list one of these in `aud`. */
    audience: z.array(z.string().min(1)).min(1).optional(),
    /** http:// endpoints are refused unless this is true (loopback tests, a sidecar). */
    allowInsecureHttp: z.boolean().default(false),
    /** One call to the server (discovery, introspection, token): aborted after this. */
    timeoutMs: z.number().int().min(10).max(30_000).default(1_000),
    breaker: z
      .strictObject({
        failureThreshold: z.number().int().min(1).max(1000).default(5),
        openMs: z.number().int().min(100).max(600_000).default(5_000),
      })
      .prefault({}),
  })
  .refine((s) => s.discovery !== 'none' || s.introspectionEndpoint !== undefined || s.tokenEndpoint !== undefined, {
    message: 'with discovery: none, give introspectionEndpoint and/or tokenEndpoint',
  });
export type OAuth2ServerConfig = z.infer<typeof serverSchema>;

const clientSchema = z.strictObject({
  /** `partner` (an external company) or `service` (an internal one); both give Identity.kind `service`. */
  kind: z.enum(['partner', 'service']).default('partner'),
  /** Identity subject; defaults to the client id. */
  subject: z.string().min(1).max(256).optional(),
  org: z.string().min(1).max(256).optional(),
  attributes: z.record(z.string(), z.string().max(1024)).default({}),
});
export type OAuth2ClientConfig = z.infer<typeof clientSchema>;

export const oauth2ConfigSchema = z
  .strictObject({
    servers: z.record(z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/, 'server names are lowercase letters, digits, _ and -'), serverSchema),
    cache: z
      .strictObject({
        /** Upper bound of a positive entry's life; a token's own `exp` shortens it. */
        maxTtlMs: z.number().int().min(0).max(86_400_000).default(60_000),
        /** Life of a negative answer (inactive token, rejected client). */
        negativeTtlMs: z.number().int().min(0).max(600_000).default(5_000),
        /** How long past its TTL an entry may still serve while the server is unreachable (0: never). */
        staleIfErrorMs: z.number().int().min(0).max(3_600_000).default(0),
        maxEntries: z.number().int().min(1).max(10_000_000).default(50_000),
        maxBytes: z.number().int().min(4096).max(1 << 30).default(32 * 1024 * 1024),
      })
      .prefault({}),
    /** client_id → identity. A client not listed gets kind partner with subject = client id, or is denied (unknownClients). */
    clients: z.record(z.string().min(1).max(256), clientSchema).default({}),
    unknownClients: z.enum(['allow', 'deny']).default('allow'),
    revocation: z
      .strictObject({
        /** Redis for the revocation channel; without it revocation reaches only this replica. */
        redisUrl: z.string().min(1).optional(),
        channel: z.string().min(1).default('passgate:oauth2:revoke'),
        /** How long a revoked token hash or client id stays refused (should exceed the longest token life). */
        tombstoneMs: z.number().int().min(1000).max(30 * 86_400_000).default(86_400_000),
      })
      .prefault({}),
    admin: z
      .strictObject({
        /** Bearer token for /admin/oauth2/ (prefer tokenEnv or tokenFile). None: the endpoint answers 503. */
        token: z.string().min(16, 'must be at least 16 characters').optional(),
        tokenEnv: z.string().default('PASSGATE_OAUTH2_ADMIN_TOKEN'),
        tokenFile: z.string().optional(),
      })
      .prefault({}),
  })
  .optional();
export type OAuth2Config = NonNullable<z.infer<typeof oauth2ConfigSchema>>;

declare module '../config/schema.js' {
  interface ConfigSections {
    /** Partner access: OAuth 2.0 introspection and client credentials (docs/oauth2.md). */
    oauth2?: z.infer<typeof oauth2ConfigSchema>;
  }
}
