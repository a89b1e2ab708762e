/**
 * The `oauth2` stage: partner access with OAuth 2.0.
 *
 * - Reads one credential (credentials.ts): a bearer access token, or client
 *   credentials (HTTP Basic or configured headers).
 * - Asks the route's authorization server what it is (introspection for a
 *   token, a client_credentials grant for client credentials), through the
 *   grant cache: a warm Check is synchronous. A miss waits for the shared
 *   (single-flight) call no longer than the Check's remaining time.
 * - Checks THIS route's requiredScopes against the cached answer on every
 *   request: the cache holds what the server said, never a decision, so a
 *   token admitted on a route needing `x` is judged afresh on one needing `y`
 *   (the CVE-2021-32701 class).
 * - Sets the identity (client id → kind, subject, org, scopes) for authorize,
 *   passport and FDS, reports failures per client and IP to FDS, and strips
 *   the credential before upstream.
 *
 * Answers (RFC 6750 §3.1, RFC 6749 §5.2): 400 invalid_request for a
 * malformed credential, 401 invalid_token / invalid_client, 403
 * insufficient_scope with the scope needed, and `fail('oauth2_unavailable')`
 * when the server cannot answer (the route's failure mode applies), unless a
 * stale answer may serve (staleIfError).
 */
import { z } from 'zod';
import { headerNameSchema } from '../config/common.js';
import { CONTINUE, deny, fail, type StageResult } from '../pipeline/decision.js';
import type { CheckContext, Identity } from '../pipeline/context.js';
import type { Stage, StageDefinition } from '../stages/stage.js';
import { TIMED_OUT, within } from '../resilience/within.js';
import { readCredential, type Credential, type CredentialSources } from './credentials.js';
import type { CachedGrant, Grant } from './cache.js';
import { AuthServerError, type AuthServer } from './auth-server.js';
import type { OAuth2State } from './state.js';

const scopeName = z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'a scope is printable ASCII without space, " or \\ (RFC 6749 §3.3)');

const schema = z.strictObject({
  type: z.literal('oauth2'),
  /** Which oauth2.servers entry judges this route; may be left out when there is only one. */
  server: z.string().optional(),
  /** Accepted credential forms. */
  credentials: z.array(z.enum(['bearer', 'basic', 'headers'])).min(1).default(['bearer']),
  /** Header names for the `headers` form. */
  clientHeaders: z.strictObject({ id: headerNameSchema, secret: headerNameSchema }).optional(),
  /** A list means all of them; or {allOf, anyOf} (both must hold when both are given). */
  requiredScopes: z
    .union([z.array(scopeName), z.strictObject({ allOf: z.array(scopeName).default([]), anyOf: z.array(scopeName).default([]) })])
    .default([]),
  /** Serve a stale answer while the server is unreachable (within oauth2.cache.staleIfErrorMs). Turn off on money routes. */
  staleIfError: z.boolean().default(true),
  realm: z.string().regex(/^[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}$/).default('passgate'),
});
type Options = z.infer<typeof schema>;

/** Kept for the deadline: the answer still has to travel back to Envoy. */
const DEADLINE_MARGIN_MS = 5;

class OAuth2Stage implements Stage {
  readonly type = 'oauth2';
  private readonly sources: CredentialSources;
  private readonly allOf: readonly string[];
  private readonly anyOf: readonly string[];
  private readonly missing: StageResult;
  private readonly insufficient: StageResult;
  private readonly strip: readonly string[];
  private readonly staleOk: boolean;
  private readonly identities = new WeakMap<Grant, Identity | null>();

  constructor(
    private readonly options: Options,
    private readonly state: OAuth2State,
    private readonly server: AuthServer,
  ) {
    const forms = new Set(options.credentials);
    this.sources = {
      bearer: forms.has('bearer'),
      basic: forms.has('basic'),
      idHeader: forms.has('headers') ? options.clientHeaders!.id.toLowerCase() : undefined,
      secretHeader: forms.has('headers') ? options.clientHeaders!.secret.toLowerCase() : undefined,
    };
    const rs = options.requiredScopes;
    this.allOf = Array.isArray(rs) ? rs : rs.allOf;
    this.anyOf = Array.isArray(rs) ? [] : rs.anyOf;
    const realm = `realm="${options.realm}"`;
    const scheme = this.sources.bearer ? 'Bearer' : 'Basic';
    this.missing = deny(401, 'missing_credentials', `no credential (accepted: ${options.credentials.join(', ')})`, { challenge: `${scheme} ${realm}` });
    const needed = [...this.allOf, ...this.anyOf].join(' ');
    this.insufficient = deny(403, 'insufficient_scope', `route needs ${this.describeScopes()}`, {
      headers: [['www-authenticate', `Bearer ${realm}, error="insufficient_scope", scope="${needed}"`]],
    });
    this.strip = ['authorization', ...(this.sources.idHeader ? [this.sources.idHeader, this.sources.secretHeader!] : [])];
    this.staleOk = options.staleIfError && state.cache.limits.staleIfErrorMs > 0;
  }

  private describeScopes(): string {
    const parts: string[] = [];
    if (this.allOf.length > 0) parts.push(`all of [${this.allOf.join(' ')}]`);
    if (this.anyOf.length > 0) parts.push(`any of [${this.anyOf.join(' ')}]`);
    return parts.join(' and ') || 'no scope';
  }

  run(ctx: CheckContext): StageResult | Promise<StageResult> {
    const cred = readCredential(ctx.request.headers, this.sources);
    if (cred.kind === 'none') return this.missing;
    if (cred.kind === 'malformed') {
      ctx.audit['oauth2'] = { error: 'invalid_request', detail: cred.error };
      this.reportIp(ctx);
      return deny(400, 'invalid_request', cred.error, { headers: [['www-authenticate', `Bearer realm="${this.options.realm}", error="invalid_request"`]] });
    }
    const cache = this.state.cache;
    let key: string;
    let hash = '';
    if (cred.kind === 'bearer') {
      const t = cache.tokenKey(this.server.name, cred.token);
      if (cache.isRevokedToken(t.hash)) return this.rejected(ctx, cred, 'revoked', '', 'hit');
      key = t.key;
      hash = t.hash;
    } else {
      // A client blocked by FDS or revoked is refused before any call to the server.
      if (cache.isRevokedClient(cred.id)) return this.rejected(ctx, cred, 'revoked', cred.id, 'hit');
      key = cache.clientKey(this.server.name, cred.id, cred.secret);
    }
    const cached = cache.lookup(key);
    if (cached !== undefined && !cached.stale) return this.decide(ctx, cred, cached.grant, 'hit');
    return this.miss(ctx, cred, key, hash, cached);
  }

  private async miss(ctx: CheckContext, cred: Exclude<Credential, { kind: 'none' | 'malformed' }>, key: string, hash: string, stale: CachedGrant | undefined): Promise<StageResult> {
    const cache = this.state.cache;
    const server = this.server;
    // The secret or token is captured by this closure only until the call settles.
    const load = cred.kind === 'bearer' ? () => server.introspect(cred.token) : () => server.checkClient(cred.id, cred.secret);
    const flight = cache.singleFlight(key, async () => {
      const g = await load();
      cache.store(key, g);
      return g;
    });
    let outcome: Grant | typeof TIMED_OUT | AuthServerError;
    try {
      outcome = await within(flight, ctx.remainingMs() - DEADLINE_MARGIN_MS);
    } catch (err) {
      outcome = err instanceof AuthServerError ? err : new AuthServerError((err as Error).message);
    }
    // A revocation may have arrived while the call was out.
    if (hash !== '' && cache.isRevokedToken(hash)) return this.rejected(ctx, cred, 'revoked', '', 'miss');
    if (outcome !== TIMED_OUT && !(outcome instanceof AuthServerError)) return this.decide(ctx, cred, outcome, 'miss');
    const why = outcome === TIMED_OUT ? `oauth2 server "${server.name}": no answer before the Check's deadline` : outcome.message;
    if (stale !== undefined && this.staleOk) {
      ctx.audit['oauth2_stale'] = why;
      return this.decide(ctx, cred, stale.grant, 'stale');
    }
    ctx.audit['oauth2'] = { error: 'oauth2_unavailable', detail: why };
    return fail('oauth2_unavailable', why);
  }

  private decide(ctx: CheckContext, cred: Exclude<Credential, { kind: 'none' | 'malformed' }>, grant: Grant, cache: 'hit' | 'miss' | 'stale'): StageResult {
    if (!grant.active) return this.rejected(ctx, cred, grant.reason, grant.clientId, cache);
    // Revocation drops a client's entries, but one may have been filled by a call that was out meanwhile.
    if (this.state.cache.isRevokedClient(grant.clientId)) return this.rejected(ctx, cred, 'revoked', grant.clientId, cache);
    let identity = this.identities.get(grant);
    if (identity === undefined) {
      identity = this.identityOf(grant);
      this.identities.set(grant, identity);
    }
    if (identity === null) {
      ctx.audit['oauth2'] = { client_id: grant.clientId, error: 'unknown_client', cache };
      ctx.report('oauth2_failure', 'client', grant.clientId);
      return deny(403, 'unknown_client', `client ${grant.clientId} is not in oauth2.clients and unknownClients is deny`);
    }
    ctx.identity = identity;
    for (const h of this.strip) (ctx.removeUpstream ??= []).push(h);
    if (!this.scopesHold(grant.scopes)) {
      ctx.audit['oauth2'] = { client_id: grant.clientId, error: 'insufficient_scope', scope: grant.scopeText, cache };
      ctx.report('denied_scope', 'client', grant.clientId);
      return this.insufficient;
    }
    ctx.audit['oauth2'] = { client_id: grant.clientId, form: cred.kind, cache };
    return CONTINUE;
  }

  private scopesHold(have: ReadonlySet<string>): boolean {
    for (const s of this.allOf) if (!have.has(s)) return false;
    if (this.anyOf.length === 0) return true;
    for (const s of this.anyOf) if (have.has(s)) return true;
    return false;
  }

  private identityOf(grant: Grant): Identity | null {
    const entry = this.state.clients.get(grant.clientId);
    if (entry === undefined && this.state.unknownClients === 'deny') return null;
    const attributes: Record<string, string> = {
      ...(entry?.attributes ?? {}),
      client_id: grant.clientId,
      client_kind: entry?.kind ?? 'partner',
      scope: grant.scopeText,
    };
    if (entry?.org !== undefined) attributes['org'] = entry.org;
    if (grant.subject !== undefined && grant.subject !== grant.clientId) attributes['token_subject'] = grant.subject;
    return Object.freeze({
      subject: entry?.subject ?? grant.clientId,
      kind: 'service',
      source: 'oauth2',
      attributes: Object.freeze(attributes),
      groups: Object.freeze([...grant.scopes]),
    });
  }

  private reportIp(ctx: CheckContext): void {
    const ip = ctx.request.source.address;
    if (ip !== '') ctx.report('oauth2_failure', 'ip', ip);
  }

  /** 401 invalid_token or invalid_client, counted per client id and IP. */
  private rejected(ctx: CheckContext, cred: Exclude<Credential, { kind: 'none' | 'malformed' }>, why: string, clientId: string, cache: string): StageResult {
    const id = cred.kind === 'bearer' ? clientId : cred.id;
    if (id !== '') ctx.report('oauth2_failure', 'client', id);
    this.reportIp(ctx);
    const realm = `realm="${this.options.realm}"`;
    if (cred.kind === 'bearer') {
      ctx.audit['oauth2'] = { ...(id ? { client_id: id } : {}), error: 'invalid_token', why, cache };
      return deny(401, 'invalid_token', `access token: ${why}`, { challenge: `Bearer ${realm}, error="invalid_token"` });
    }
    ctx.audit['oauth2'] = { client_id: id, error: 'invalid_client', why, cache };
    return deny(401, 'invalid_client', `client credentials: ${why}`, { challenge: `${cred.via === 'basic' ? 'Basic' : 'Bearer'} ${realm}` });
  }
}

export const oauth2Stage: StageDefinition<Options, OAuth2State> = {
  type: 'oauth2',
  events: [
    { event: 'oauth2_failure', kinds: ['client', 'ip'] },
    { event: 'denied_scope', kinds: ['client'] },
  ],
  schema,
  description: 'Partner access: a bearer token introspected (RFC 7662) or client credentials checked at the OAuth server; scopes per route.',
  create(options, ctx) {
    const servers = ctx.state.servers;
    const name = options.server ?? (servers.size === 1 ? [...servers.keys()][0]! : undefined);
    if (name === undefined) throw new Error(`${ctx.path}.server: name one of oauth2.servers (${[...servers.keys()].join(', ') || 'none configured'})`);
    const server = servers.get(name);
    if (server === undefined) throw new Error(`${ctx.path}.server: "${name}" is not in oauth2.servers (${[...servers.keys()].join(', ') || 'none configured'})`);
    if (options.credentials.includes('headers') && options.clientHeaders === undefined) throw new Error(`${ctx.path}.clientHeaders: the headers credential form needs {id, secret} header names`);
    return new OAuth2Stage(options, ctx.state, server);
  },
};
