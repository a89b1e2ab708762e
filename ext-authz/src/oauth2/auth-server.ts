/**
 * One authorization server as the gateway sees it, spoken to with
 * oauth4webapi: metadata (RFC 8414 / OIDC discovery, once, retried after a
 * failure), token introspection (RFC 7662, the gateway authenticated with
 * client_secret_basic or _post), client credentials checked by a
 * client_credentials grant (RFC 6749 §4.4), and revocation (RFC 7009).
 * Every call is bounded by `timeoutMs` and goes through a circuit breaker;
 * answers become `Grant`s, garbage becomes an `AuthServerError`.
 */
import * as oauth from 'oauth4webapi';
import { CircuitBreaker } from '../resilience/circuit-breaker.js';
import type { OAuth2ServerConfig } from './config.js';
import type { Grant } from './cache.js';

/** The server could not give an answer (down, slow, garbage, breaker open): not a verdict on the credential. */
export class AuthServerError extends Error {}

const EMPTY_SCOPES: ReadonlySet<string> = new Set();

function negative(reason: string, clientId = ''): Grant {
  return { active: false, reason, clientId, scopes: EMPTY_SCOPES, scopeText: '', subject: undefined, exp: undefined };
}

function scopesOf(text: string): ReadonlySet<string> {
  return text === '' ? EMPTY_SCOPES : new Set(text.split(' ').filter((s) => s !== ''));
}

function optString(v: unknown, field: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new AuthServerError(`"${field}" is not a string`);
  return v;
}

export class AuthServer {
  readonly breaker: CircuitBreaker;
  private metadata: Promise<oauth.AuthorizationServer> | undefined;
  private readonly client: oauth.Client;
  private readonly clientAuth: oauth.ClientAuth;
  calls = 0;

  constructor(
    readonly name: string,
    readonly config: OAuth2ServerConfig,
    clientSecret: string,
  ) {
    this.breaker = new CircuitBreaker(config.breaker.failureThreshold, config.breaker.openMs);
    this.client = { client_id: config.client.id };
    this.clientAuth = config.client.auth === 'client_secret_post' ? oauth.ClientSecretPost(clientSecret) : oauth.ClientSecretBasic(clientSecret);
  }

  private options(): { signal: AbortSignal; [oauth.allowInsecureRequests]: boolean } {
    return { signal: AbortSignal.timeout(this.config.timeoutMs), [oauth.allowInsecureRequests]: this.config.allowInsecureHttp };
  }

  private as(): Promise<oauth.AuthorizationServer> {
    this.metadata ??= this.discover().catch((err: unknown) => {
      this.metadata = undefined; // retried by the next call
      throw err;
    });
    return this.metadata;
  }

  private async discover(): Promise<oauth.AuthorizationServer> {
    const c = this.config;
    let as: oauth.AuthorizationServer = { issuer: c.issuer };
    if (c.discovery !== 'none') {
      const issuer = new URL(c.issuer);
      const res = await oauth.discoveryRequest(issuer, { ...this.options(), algorithm: c.discovery });
      as = await oauth.processDiscoveryResponse(issuer, res);
    }
    return {
      ...as,
      ...(c.introspectionEndpoint ? { introspection_endpoint: c.introspectionEndpoint } : {}),
      ...(c.tokenEndpoint ? { token_endpoint: c.tokenEndpoint } : {}),
      ...(c.revocationEndpoint ? { revocation_endpoint: c.revocationEndpoint } : {}),
    };
  }

  /** Runs one call through the breaker; anything but an answer counts as a failure. */
  private async guarded<T>(what: string, call: () => Promise<T>): Promise<T> {
    if (!this.breaker.allow()) throw new AuthServerError(`oauth2 server "${this.name}": circuit open after repeated failures`);
    this.calls++;
    try {
      const v = await call();
      this.breaker.success();
      return v;
    } catch (err) {
      this.breaker.failure();
      const e = err as Error;
      const why = e.name === 'TimeoutError' || e.name === 'AbortError' ? `no answer within ${this.config.timeoutMs} ms` : e.message;
      throw new AuthServerError(`oauth2 server "${this.name}" ${what}: ${why}`);
    }
  }

  /** RFC 7662: what the server says about an access token, checked for types, issuer and audience. */
  introspect(token: string): Promise<Grant> {
    return this.guarded('introspection', async () => {
      const as = await this.as();
      if (as.introspection_endpoint === undefined) throw new AuthServerError('has no introspection_endpoint');
      const res = await oauth.introspectionRequest(as, this.client, this.clientAuth, token, this.options());
      const body = await oauth.processIntrospectionResponse(as, this.client, res);
      return this.grantOf(as, body);
    });
  }

  private grantOf(as: oauth.AuthorizationServer, body: oauth.IntrospectionResponse): Grant {
    if (typeof body.active !== 'boolean') throw new AuthServerError('"active" is not a boolean');
    const clientId = optString(body.client_id, 'client_id') ?? '';
    if (!body.active) return negative('inactive', clientId);
    const scopeText = optString(body.scope, 'scope') ?? '';
    const subject = optString(body.sub, 'sub');
    const iss = optString(body.iss, 'iss');
    if (body.exp !== undefined && (typeof body.exp !== 'number' || !Number.isFinite(body.exp))) throw new AuthServerError('"exp" is not a number');
    const aud = body.aud;
    if (aud !== undefined && typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((a) => typeof a === 'string'))) {
      throw new AuthServerError('"aud" is neither a string nor an array of strings');
    }
    if (clientId === '') return negative('no_client_id');
    if (iss !== undefined && iss !== as.issuer) return negative('wrong_issuer', clientId);
    const want = this.config.audience;
    if (want !== undefined) {
      const auds = aud === undefined ? [] : typeof aud === 'string' ? [aud] : aud;
      if (!auds.some((a) => want.includes(a))) return negative('wrong_audience', clientId);
    }
    if (body.exp !== undefined && body.exp * 1000 <= Date.now()) return negative('expired', clientId);
    return { active: true, reason: '', clientId, scopes: scopesOf(scopeText), scopeText, subject, exp: body.exp };
  }

  /**
   * Client credentials presented to the gateway: valid when the server grants
   * them an access token (the secret is compared by the server, not here).
   */
  checkClient(id: string, secret: string): Promise<Grant> {
    return this.guarded('client_credentials grant', async () => {
      const as = await this.as();
      if (as.token_endpoint === undefined) throw new AuthServerError('has no token_endpoint');
      const client: oauth.Client = { client_id: id };
      const params: Record<string, string> = {};
      if (this.config.clientCredentialsScope) params['scope'] = this.config.clientCredentialsScope;
      const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(secret), params, this.options());
      try {
        const body = await oauth.processClientCredentialsResponse(as, client, res);
        const scopeText = typeof body.scope === 'string' ? body.scope : (this.config.clientCredentialsScope ?? '');
        const exp = typeof body.expires_in === 'number' ? Math.floor(Date.now() / 1000) + body.expires_in : undefined;
        return { active: true, reason: '', clientId: id, scopes: scopesOf(scopeText), scopeText, subject: undefined, exp };
      } catch (err) {
        // A 4xx with an OAuth error body is the server's verdict on the client, not an outage.
        if (err instanceof oauth.ResponseBodyError && err.status >= 400 && err.status < 500) return negative(err.error === 'invalid_client' ? 'invalid_client' : err.error, id);
        // A 401 with a WWW-Authenticate challenge: the server refused the client's authentication.
        if (err instanceof oauth.WWWAuthenticateChallengeError && err.status === 401) return negative('invalid_client', id);
        throw err;
      }
    });
  }

  /** RFC 7009: tells the server too, so a replica that never saw the revocation message still refuses the token. */
  revoke(token: string): Promise<void> {
    return this.guarded('revocation', async () => {
      const as = await this.as();
      if (as.revocation_endpoint === undefined) throw new AuthServerError('has no revocation_endpoint');
      const res = await oauth.revocationRequest(as, this.client, this.clientAuth, token, this.options());
      await oauth.processRevocationResponse(res);
    });
  }
}
