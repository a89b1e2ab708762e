/**
 * The `oidc` section (owned by the oidc capability): the OpenID Providers
 * the gateway logs users in with (it is their relying party, a confidential
 * client), and how browser sessions are kept. The stage options (which
 * provider, the callback/logout paths, identity headers) live on the stage.
 * Reference: docs/oidc.md.
 */
import { z } from 'zod';
import { headerNameSchema } from '../config/common.js';

const url = z.url({ protocol: /^https?$/ });

const providerSchema = z
  .strictObject({
    /** The issuer identifier; its metadata comes from OIDC discovery (/.well-known/openid-configuration). */
    issuer: url,
    clientId: z.string().min(1).max(256),
    /** Inline secret (tests only; prefer clientSecretEnv / clientSecretFile). */
    clientSecret: z.string().min(1).optional(),
    clientSecretEnv: z.string().min(1).optional(),
    clientSecretFile: z.string().min(1).optional(),
    clientAuth: z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
    /** Requested scopes; `openid` is required, `offline_access` asks for a refresh token. */
    scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/)).default(['openid', 'email', 'profile']),
    /** Accepted ID token and logout token signature algorithms (pinned; `none` and HMAC never). */
    algorithms: z.array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'])).min(1).default(['RS256', 'ES256', 'PS256', 'EdDSA']),
    /** Which ID token claims become the identity's email, name and groups. */
    claims: z
      .strictObject({
        email: z.string().min(1).default('email'),
        name: z.string().min(1).default('name'),
        groups: z.string().min(1).default('groups'),
      })
      .prefault({}),
    /** http:// issuers are refused unless this is true (loopback tests, the npm start demo). */
    allowInsecureHttp: z.boolean().default(false),
    /** One call to the provider (discovery, token, JWKS): aborted after this. */
    timeoutMs: z.number().int().min(10).max(30_000).default(3_000),
  })
  .refine((p) => [p.clientSecret, p.clientSecretEnv, p.clientSecretFile].filter((v) => v !== undefined).length === 1, {
    message: 'give exactly one of clientSecret, clientSecretEnv, clientSecretFile',
  })
  .refine((p) => p.scopes.includes('openid'), { message: 'scopes must include openid', path: ['scopes'] })
  .refine((p) => p.allowInsecureHttp || p.issuer.startsWith('https:'), {
    message: 'an http:// issuer needs allowInsecureHttp: true (codes and tokens would travel in the clear)',
    path: ['issuer'],
  });
export type OidcProviderConfig = z.infer<typeof providerSchema>;

const sessionSchema = z
  .strictObject({
    /** The session cookie; the `__Host-` prefix makes browsers insist on Secure, Path=/ and no Domain. */
    cookieName: z
      .string()
      .regex(/^__Host-[A-Za-z0-9_-]{1,40}$/, 'must start with __Host- followed by letters, digits, _ or - (at most 40)')
      .default('__Host-passgate'),
    /** Ended after this long without a request (sliding, renewed in the Check's one store call). */
    idleTimeoutMs: z.number().int().min(10_000).max(30 * 86_400_000).default(30 * 60_000),
    /** Ended this long after login whatever the activity (the cookie's Max-Age too). */
    absoluteTimeoutMs: z.number().int().min(10_000).max(90 * 86_400_000).default(12 * 3_600_000),
    /** How long a started login may take (its state in the store, its browser-binding cookie). */
    loginTimeoutMs: z.number().int().min(10_000).max(3_600_000).default(10 * 60_000),
    /** Refresh the tokens this long before the access token expires (in the background, under a lock). */
    refreshBeforeExpiryMs: z.number().int().min(0).max(86_400_000).default(60_000),
    /** The refresh lock's TTL; renewed every third of it while the refresh runs. */
    refreshLockMs: z.number().int().min(100).max(120_000).default(5_000),
    /** Decrypted sessions kept per replica. */
    cacheMaxEntries: z.number().int().min(1).max(10_000_000).default(100_000),
    cacheMaxBytes: z.number().int().min(4096).max(4 * 1024 ** 3).default(64 * 1024 * 1024),
    /** A Cookie header longer than this is refused (431) before it is parsed. */
    maxCookieHeaderBytes: z.number().int().min(256).max(65_536).default(16_384),
  })
  .refine((s) => s.idleTimeoutMs <= s.absoluteTimeoutMs, { message: 'idleTimeoutMs cannot exceed absoluteTimeoutMs', path: ['idleTimeoutMs'] });
export type OidcSessionSettings = z.infer<typeof sessionSchema>;

export const oidcConfigSchema = z.strictObject({
  providers: z.record(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/), providerSchema).refine((p) => Object.keys(p).length > 0, { message: 'name at least one provider' }),
  session: sessionSchema.prefault({}),
}).optional();
export type OidcConfig = NonNullable<z.infer<typeof oidcConfigSchema>>;

declare module '../config/schema.js' {
  interface ConfigSections {
    oidc?: OidcConfig;
  }
}

/** A path the stage answers itself: absolute, no query, no dot segments. */
const endpointPath = z.string().regex(/^\/[A-Za-z0-9._~!$&'()*+,;=:@/-]*$/, 'an absolute path without query (e.g. /oauth2/callback)');

/** Identity facts a header may carry upstream. */
export const IDENTITY_FIELDS = ['sub', 'email', 'name', 'groups'] as const;

export const oidcStageSchema = z.strictObject({
  type: z.literal('oidc'),
  /** Which oidc.providers entry logs users in here; may be left out when there is only one. */
  provider: z.string().optional(),
  /** The redirect_uri's path (register `<origin><callbackPath>` at the provider). Answered by the stage, never sent upstream. */
  callbackPath: endpointPath.default('/oauth2/callback'),
  /** Ends the session here and at the provider (RP-initiated logout). */
  logoutPath: endpointPath.default('/oauth2/logout'),
  /** OIDC Back-Channel Logout endpoint (POST, needs the body in the Check: Envoy with_request_body). */
  backchannelLogoutPath: endpointPath.default('/oauth2/backchannel-logout'),
  /** Starts a login explicitly: `<loginPath>?return_to=/some/page` (same origin only). */
  loginPath: endpointPath.default('/oauth2/login'),
  /** Where the provider sends the browser after logout (a path on this origin; register it as post_logout_redirect_uri). */
  postLogoutPath: endpointPath.default('/'),
  /**
   * The public origin (https://tool.corp.example) of redirect_uri and of the
   * same-origin check; by default the request's own :scheme and :authority.
   */
  externalUrl: z.url({ protocol: /^https?$/ }).optional(),
  /** Identity headers set on the upstream request (e.g. x-auth-request-email: email); add them to headers.internal. */
  identityHeaders: z.record(headerNameSchema, z.enum(IDENTITY_FIELDS)).default({}),
});
export type OidcStageOptions = z.infer<typeof oidcStageSchema>;
