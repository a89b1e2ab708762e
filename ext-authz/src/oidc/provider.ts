/**
 * One OpenID Provider as the gateway (its relying party) speaks to it, with
 * oauth4webapi for the protocol: discovery (once, retried after a failure),
 * the authorization request (code + PKCE S256, state, nonce), the
 * authorization response (state, RFC 9207 `iss`, errors), the code exchange
 * and ID token checks (iss, aud, azp, exp, iat, nonce; the signature against
 * the provider's JWKS), refresh, and the RP-initiated logout URL. Logout
 * tokens (OIDC Back-Channel Logout 1.0 §2.6) are verified with jose, which
 * oauth4webapi leaves to the application.
 *
 * Errors come out as `OidcError`: `unavailable` when the provider could not
 * answer (network, timeout, 5xx, garbage), otherwise a refusal with a precise
 * reason. Messages never carry a token.
 */
import { readFileSync } from 'node:fs';
import * as oauth from 'oauth4webapi';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import type { OidcProviderConfig } from './config.js';

export class OidcError extends Error {
  constructor(
    /** Short reason for the deny and the audit line. */
    readonly reason: string,
    message: string,
    /** The provider could not answer (rather than refused). */
    readonly unavailable = false,
  ) {
    super(message);
  }
}

export interface TokenSet {
  readonly idToken: string;
  readonly accessToken: string;
  readonly refreshToken: string | undefined;
  /** Epoch ms; undefined when the provider gave no expires_in. */
  readonly accessExpiresAt: number | undefined;
  readonly claims: oauth.IDToken;
}

export interface LogoutClaims {
  readonly sid: string | undefined;
  readonly sub: string | undefined;
  readonly jti: string;
  /** Epoch ms the token is no longer acceptable (exp, else iat + 2 min). */
  readonly expiresAt: number;
}

const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

function secretOf(c: OidcProviderConfig, key: string): string {
  if (c.clientSecret !== undefined) return c.clientSecret;
  if (c.clientSecretEnv !== undefined) {
    const v = process.env[c.clientSecretEnv];
    if (v === undefined || v === '') throw new Error(`${key}.clientSecretEnv: environment variable ${c.clientSecretEnv} is not set`);
    return v;
  }
  let v: string;
  try {
    v = readFileSync(c.clientSecretFile!, 'utf8').trim();
  } catch (err) {
    throw new Error(`${key}.clientSecretFile: cannot read ${c.clientSecretFile}: ${(err as Error).message}`);
  }
  if (v === '') throw new Error(`${key}.clientSecretFile: ${c.clientSecretFile} is empty`);
  return v;
}

function isNetworkError(err: unknown): boolean {
  const name = (err as Error)?.name;
  // fetch fails with a plain TypeError (cause: the socket error); oauth4webapi's own TypeErrors carry a code (bad input).
  return (err instanceof TypeError && (err as { code?: unknown }).code === undefined) || name === 'AbortError' || name === 'TimeoutError';
}

/** The alg of a compact JWS, '' when unreadable. */
function jwsAlg(jws: string): string {
  try {
    const h = JSON.parse(Buffer.from(jws.slice(0, jws.indexOf('.')), 'base64url').toString('utf8')) as { alg?: unknown };
    return typeof h.alg === 'string' ? h.alg : '';
  } catch {
    return '';
  }
}

export class OidcProvider {
  private metadata: Promise<oauth.AuthorizationServer> | undefined;
  private jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  private readonly client: oauth.Client;
  private readonly auth: oauth.ClientAuth;
  /** Token endpoint calls by grant (tests and the admin view read them). */
  readonly calls = { code: 0, refresh: 0 };

  constructor(
    readonly name: string,
    readonly config: OidcProviderConfig,
  ) {
    const secret = secretOf(config, `oidc.providers.${name}`);
    this.client = { client_id: config.clientId };
    this.auth = config.clientAuth === 'client_secret_post' ? oauth.ClientSecretPost(secret) : oauth.ClientSecretBasic(secret);
  }

  private options(): { signal: AbortSignal; [oauth.allowInsecureRequests]: boolean } {
    return { signal: AbortSignal.timeout(this.config.timeoutMs), [oauth.allowInsecureRequests]: this.config.allowInsecureHttp };
  }

  /** Discovery once; a failure is retried by the next call. */
  as(): Promise<oauth.AuthorizationServer> {
    this.metadata ??= this.discover().catch((err: unknown) => {
      this.metadata = undefined;
      throw err;
    });
    return this.metadata;
  }

  private async discover(): Promise<oauth.AuthorizationServer> {
    const issuer = new URL(this.config.issuer);
    try {
      const res = await oauth.discoveryRequest(issuer, { ...this.options(), algorithm: 'oidc' });
      return await oauth.processDiscoveryResponse(issuer, res);
    } catch (err) {
      throw this.wrap(err, 'discovery');
    }
  }

  private wrap(err: unknown, what: string): OidcError {
    if (err instanceof OidcError) return err;
    const msg = `oidc provider "${this.name}" ${what}: ${(err as Error)?.message ?? String(err)}`;
    if (isNetworkError(err)) return new OidcError('oidc_provider_unavailable', msg, true);
    if (err instanceof oauth.ResponseBodyError) {
      // 5xx is the provider failing; 4xx (invalid_grant, invalid_client) is a verdict.
      return err.status >= 500 ? new OidcError('oidc_provider_unavailable', msg, true) : new OidcError(`oidc_${what}_rejected`, `${msg} (${err.error})`);
    }
    if (err instanceof oauth.OperationProcessingError && (err.code === oauth.RESPONSE_IS_NOT_JSON || err.code === oauth.RESPONSE_IS_NOT_CONFORM || err.code === oauth.INVALID_RESPONSE)) {
      return new OidcError('oidc_provider_unavailable', msg, true);
    }
    return new OidcError(`oidc_${what}_invalid`, msg);
  }

  async authorizationUrl(redirectUri: string, state: string, nonce: string, codeVerifier: string): Promise<string> {
    const as = await this.as();
    if (as.authorization_endpoint === undefined) throw new OidcError('oidc_provider_unavailable', `oidc provider "${this.name}": metadata has no authorization_endpoint`, true);
    const u = new URL(as.authorization_endpoint);
    const q = u.searchParams;
    q.set('client_id', this.config.clientId);
    q.set('response_type', 'code');
    q.set('redirect_uri', redirectUri);
    q.set('scope', this.config.scopes.join(' '));
    q.set('state', state);
    q.set('nonce', nonce);
    q.set('code_challenge', await oauth.calculatePKCECodeChallenge(codeVerifier));
    q.set('code_challenge_method', 'S256');
    // A refresh token needs consent at most providers when offline_access is asked for.
    if (this.config.scopes.includes('offline_access')) q.set('prompt', 'consent');
    return u.href;
  }

  /** Validates the callback parameters (state, iss, error) and exchanges the code. */
  async exchange(callback: URLSearchParams, state: string, redirectUri: string, codeVerifier: string, nonce: string): Promise<TokenSet> {
    const as = await this.as();
    let params: URLSearchParams;
    try {
      params = oauth.validateAuthResponse(as, this.client, callback, state);
    } catch (err) {
      if (err instanceof oauth.AuthorizationResponseError) throw new OidcError('oidc_login_refused', `oidc provider "${this.name}" refused the login: ${err.error}`);
      throw new OidcError('oidc_bad_callback', `oidc provider "${this.name}" callback: ${(err as Error).message}`);
    }
    if (!params.get('code')) throw new OidcError('oidc_bad_callback', `oidc provider "${this.name}" callback: no code`);
    this.calls.code++;
    let res: Response;
    let tokens: oauth.TokenEndpointResponse;
    try {
      res = await oauth.authorizationCodeGrantRequest(as, this.client, this.auth, params, redirectUri, codeVerifier, this.options());
      tokens = await oauth.processAuthorizationCodeResponse(as, this.client, res, { expectedNonce: nonce, requireIdToken: true });
      await this.checkSignature(as, tokens, res);
    } catch (err) {
      throw this.wrap(err, 'code');
    }
    return this.tokenSet(tokens);
  }

  async refresh(refreshToken: string, expectedSub: string): Promise<Omit<TokenSet, 'idToken'> & { readonly idToken: string | undefined }> {
    const as = await this.as();
    this.calls.refresh++;
    let tokens: oauth.TokenEndpointResponse;
    try {
      const res = await oauth.refreshTokenGrantRequest(as, this.client, this.auth, refreshToken, this.options());
      tokens = await oauth.processRefreshTokenResponse(as, this.client, res);
      if (tokens.id_token !== undefined) await this.checkSignature(as, tokens, res);
    } catch (err) {
      throw this.wrap(err, 'refresh');
    }
    const claims = oauth.getValidatedIdTokenClaims(tokens);
    if (claims !== undefined && claims.sub !== expectedSub) throw new OidcError('oidc_refresh_invalid', `oidc provider "${this.name}" refresh: the new ID token is for another subject`);
    return {
      idToken: tokens.id_token,
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token ?? refreshToken,
      accessExpiresAt: typeof tokens.expires_in === 'number' ? Date.now() + tokens.expires_in * 1000 : undefined,
      claims: claims ?? ({} as oauth.IDToken),
    };
  }

  /** The signature is checked against the JWKS too (and its alg pinned), not only the TLS channel. */
  private async checkSignature(as: oauth.AuthorizationServer, tokens: oauth.TokenEndpointResponse, res: Response): Promise<void> {
    const alg = tokens.id_token === undefined ? '' : jwsAlg(tokens.id_token);
    if (!(this.config.algorithms as readonly string[]).includes(alg)) {
      throw new OidcError('oidc_id_token_invalid', `oidc provider "${this.name}": ID token algorithm "${alg}" is not in algorithms (${this.config.algorithms.join(', ')})`);
    }
    await oauth.validateApplicationLevelSignature(as, res, this.options());
  }

  private tokenSet(tokens: oauth.TokenEndpointResponse): TokenSet {
    const claims = oauth.getValidatedIdTokenClaims(tokens);
    if (claims === undefined || tokens.id_token === undefined) throw new OidcError('oidc_code_invalid', `oidc provider "${this.name}": no ID token in the token response`);
    return {
      idToken: tokens.id_token,
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token,
      accessExpiresAt: typeof tokens.expires_in === 'number' ? Date.now() + tokens.expires_in * 1000 : undefined,
      claims,
    };
  }

  /** RP-initiated logout (OIDC RP-Initiated Logout 1.0), or undefined when the provider has no end_session_endpoint. */
  async endSessionUrl(idToken: string | undefined, postLogoutRedirectUri: string): Promise<string | undefined> {
    let as: oauth.AuthorizationServer;
    try {
      as = await this.as();
    } catch {
      return undefined; // the local session is gone anyway; the provider's may outlive it
    }
    if (as.end_session_endpoint === undefined) return undefined;
    const u = new URL(as.end_session_endpoint);
    if (idToken !== undefined) u.searchParams.set('id_token_hint', idToken);
    u.searchParams.set('client_id', this.config.clientId);
    u.searchParams.set('post_logout_redirect_uri', postLogoutRedirectUri);
    return u.href;
  }

  /** OIDC Back-Channel Logout 1.0 §2.6: signature (pinned algs), iss, aud, iat, jti, events, sid and/or sub, no nonce. */
  async verifyLogoutToken(token: string): Promise<LogoutClaims> {
    const as = await this.as();
    if (as.jwks_uri === undefined) throw new OidcError('oidc_provider_unavailable', `oidc provider "${this.name}": metadata has no jwks_uri`, true);
    this.jwks ??= createRemoteJWKSet(new URL(as.jwks_uri), { timeoutDuration: this.config.timeoutMs });
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.jwks, {
        issuer: as.issuer,
        audience: this.config.clientId,
        algorithms: [...this.config.algorithms],
        requiredClaims: ['iat', 'jti'],
        clockTolerance: 30,
        maxTokenAge: '10 minutes',
      }));
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (code === 'ERR_JWKS_TIMEOUT' || isNetworkError(err)) throw new OidcError('oidc_provider_unavailable', `oidc provider "${this.name}" JWKS: ${(err as Error).message}`, true);
      throw new OidcError('oidc_logout_token_invalid', `logout token: ${(err as Error).message}`);
    }
    const events = payload['events'];
    if (typeof events !== 'object' || events === null || typeof (events as Record<string, unknown>)[BACKCHANNEL_EVENT] !== 'object') {
      throw new OidcError('oidc_logout_token_invalid', `logout token: "events" lacks ${BACKCHANNEL_EVENT}`);
    }
    if (payload['nonce'] !== undefined) throw new OidcError('oidc_logout_token_invalid', 'logout token: carries a nonce (it would be an ID token)');
    const sid = typeof payload['sid'] === 'string' ? payload['sid'] : undefined;
    const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
    if (sid === undefined && sub === undefined) throw new OidcError('oidc_logout_token_invalid', 'logout token: neither sid nor sub');
    if (typeof payload.jti !== 'string' || payload.jti === '') throw new OidcError('oidc_logout_token_invalid', 'logout token: no jti');
    const expiresAt = typeof payload.exp === 'number' ? payload.exp * 1000 : (payload.iat! + 120) * 1000;
    return { sid, sub, jti: payload.jti, expiresAt };
  }
}
