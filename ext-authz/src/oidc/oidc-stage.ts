/**
 * The `oidc` stage: single sign-on for browser tools behind the gateway
 * (Passgate is the OIDC relying party; the tool needs no login code).
 *
 * - Valid session cookie, session cached at this replica: synchronous, no
 *   I/O in `run`; the identity (sub, email, groups) is set for authorize and
 *   passport, our cookies are stripped before upstream, and the session is
 *   left as a watched key: the fds stage's one store call (or this stage's
 *   finish on a route without one) checks that it still exists with the
 *   cached version and renews its idle TTL. Gone (logout, back-channel
 *   logout elsewhere): the allow becomes "session ended".
 * - Session not cached here: one read (and touch) of the store.
 * - No session: top-level navigations get a 302 to the provider (code + PKCE
 *   S256, state, nonce), with the flow's state stored per flow and bound to
 *   the browser by a per-flow cookie; other requests (fetch/XHR) get 401 JSON.
 * - Callback, logout, back-channel logout and login paths are answered by the
 *   stage itself (local replies), never sent upstream.
 */
import type { CheckContext } from '../pipeline/context.js';
import { CONTINUE, deny, fail, type Decision, type Denial, type StageResult } from '../pipeline/decision.js';
import type { RouteInfo } from '../pipeline/context.js';
import type { FinishResult, Stage, StageDefinition } from '../stages/stage.js';
import { PENDING_WATCH, type PendingWatch } from '../fds/facts.js';
import { pendingWatch } from '../fds/claims.js';
import type { WatchState } from '../fds/store/store.js';
import * as oauth from 'oauth4webapi';
import { oidcStageSchema, type OidcStageOptions } from './config.js';
import { clearCookie, cookieValue, setCookie, withoutOurCookies } from './cookies.js';
import { OidcError, type OidcProvider } from './provider.js';
import { hashText, isId, newId, parseTicket, randomToken, ticketText, type Ticket } from './seal.js';
import type { LiveSession, SessionManager } from './sessions.js';
import type { OidcState } from './state.js';
import { timingSafeEqual } from 'node:crypto';

/** Stored per login flow (single use, short TTL). */
interface Flow {
  /** PKCE code_verifier, nonce, return path, browser binding (sha256 of the flow cookie), provider, redirect_uri. */
  readonly v: string;
  readonly n: string;
  readonly r: string;
  readonly b: string;
  readonly p: string;
  readonly u: string;
}


/** Only a same-origin path may be returned to: `/x?y`, never `//host`, `/\host`, another scheme or origin. */
export function sameOriginPath(raw: string, origin: string): string | undefined {
  if (raw === '' || raw.length > 2048 || /[\u0000-\u001f\u007f\\]/.test(raw)) return undefined;
  if (raw.startsWith('/')) return raw.startsWith('//') ? undefined : raw;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return undefined;
  }
  return u.origin === origin ? `${u.pathname}${u.search}` : undefined;
}

/** Top-level navigations may be redirected to the provider; fetch/XHR get a 401 they can act on. */
function isNavigation(ctx: CheckContext): boolean {
  const r = ctx.request;
  if (r.method !== 'GET' && r.method !== 'HEAD') return false;
  const mode = r.headers['sec-fetch-mode'];
  if (mode !== undefined && mode !== 'navigate') return false;
  if (r.headers['x-requested-with'] !== undefined) return false;
  const accept = r.headers['accept'];
  return !(accept !== undefined && accept.includes('application/json') && !accept.includes('text/html'));
}

/**
 * Logout only when the browser says the request comes from our own origin (or
 * was typed): the session cookie is SameSite=Lax, so a link or an image on
 * another site would otherwise end the user's session (logout CSRF).
 * Sec-Fetch-Site when the browser sends it; else Origin, else Referer; a
 * request carrying none of them (curl, a typed URL in an old browser) passes.
 */
function logoutFromOwnOrigin(ctx: CheckContext, origin: string): boolean {
  const h = ctx.request.headers;
  const site = h['sec-fetch-site'];
  if (site !== undefined) return site === 'same-origin' || site === 'none';
  const from = h['origin'] ?? h['referer'];
  if (from === undefined) return true;
  try {
    return new URL(from).origin === origin;
  } catch {
    return false;
  }
}

function digestEquals(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

class OidcStage implements Stage {
  readonly type = 'oidc';
  private readonly flowPrefix: string;
  private readonly hasFds = new WeakMap<RouteInfo, boolean>();
  private readonly headers: ReadonlyArray<readonly [string, OidcStageOptions['identityHeaders'][string]]>;

  constructor(
    private readonly o: OidcStageOptions,
    private readonly provider: OidcProvider,
    private readonly sessions: SessionManager,
  ) {
    this.flowPrefix = `${sessions.settings.cookieName}-f-`;
    this.headers = Object.entries(o.identityHeaders);
  }

  private get cookieName(): string {
    return this.sessions.settings.cookieName;
  }

  private origin(ctx: CheckContext): string {
    if (this.o.externalUrl !== undefined) return new URL(this.o.externalUrl).origin;
    const h = ctx.request.headers;
    const scheme = ctx.request.scheme || h['x-forwarded-proto'] || 'https';
    return `${scheme}://${h[':authority'] ?? h['host'] ?? ctx.request.host}`;
  }

  private here(ctx: CheckContext): string {
    const q = ctx.request.query;
    return q === '' ? ctx.request.path : `${ctx.request.path}?${q}`;
  }

  private failure(ctx: CheckContext, status: 400 | 403 | 502, reason: string, detail: string): StageResult {
    ctx.report('oidc_failure', 'ip', ctx.request.source.address);
    ctx.audit['oidc'] = { event: 'refused', reason };
    return deny(status, reason, detail);
  }

  run(ctx: CheckContext): StageResult | Promise<StageResult> {
    const path = ctx.request.path;
    const o = this.o;
    if (path === o.callbackPath) return this.callback(ctx);
    if (path === o.logoutPath) {
      if (!logoutFromOwnOrigin(ctx, this.origin(ctx))) return this.failure(ctx, 403, 'oidc_logout_cross_site', 'logout requested from another site (Sec-Fetch-Site, Origin or Referer): refused, the session stays');
      return this.logout(ctx);
    }
    if (path === o.backchannelLogoutPath) return this.backchannel(ctx);
    if (path === o.loginPath) {
      const to = new URLSearchParams(ctx.request.query).get('return_to') ?? '/';
      const safe = sameOriginPath(to, this.origin(ctx));
      if (safe === undefined) return this.failure(ctx, 400, 'oidc_return_to_invalid', `return_to is not a path on ${this.origin(ctx)}`);
      return this.startLogin(ctx, safe, true);
    }
    const header = ctx.request.headers['cookie'];
    if (header !== undefined && header.length > this.sessions.settings.maxCookieHeaderBytes) {
      return deny(431, 'cookie_too_large', `Cookie header of ${header.length} bytes (oidc.session.maxCookieHeaderBytes ${this.sessions.settings.maxCookieHeaderBytes})`);
    }
    const value = cookieValue(header, this.cookieName);
    if (value === undefined) return this.startLogin(ctx, this.here(ctx), false);
    const ticket = parseTicket(value);
    if (ticket === undefined) return this.restart(ctx, 'oidc_cookie_invalid');
    const cached = this.sessions.cached(ticket);
    if (cached === 'forged') return this.restart(ctx, 'oidc_cookie_forged');
    if (cached !== undefined) {
      if (cached.data.ae <= Date.now()) {
        void this.sessions.end(cached.id).catch(() => undefined);
        return this.restart(ctx, 'oidc_session_expired');
      }
      return this.admit(ctx, cached, true);
    }
    return this.sessions.load(ticket).then(
      (r) => (r.kind === 'live' ? this.admit(ctx, r.session, false) : this.restart(ctx, r.kind === 'gone' ? 'oidc_session_ended' : 'oidc_cookie_forged')),
      (err: unknown) => fail('oidc_store_unavailable', `oidc session read: ${(err as Error).message}`),
    );
  }

  private admit(ctx: CheckContext, s: LiveSession, watch: boolean): StageResult {
    ctx.identity = s.identity;
    for (const [name, field] of this.headers) {
      const v = field === 'sub' ? s.data.sub : field === 'groups' ? (s.data.groups.length > 0 ? groupsHeader(s.data.groups) : undefined) : s.identity.attributes[field];
      if (v !== undefined) ctx.setUpstreamHeader(name, v);
      else (ctx.removeUpstream ??= []).push(name);
    }
    const cookies = ctx.request.headers['cookie']!;
    const rest = withoutOurCookies(cookies, this.cookieName, this.flowPrefix);
    if (rest === undefined) (ctx.removeUpstream ??= []).push('cookie');
    else ctx.setUpstreamHeader('cookie', rest);
    // The login flow that made this session left its binding cookie: clear it now (Set-Cookie on the allowed response).
    if (s.data.f !== undefined && cookieValue(cookies, this.flowPrefix + s.data.f) !== undefined) ctx.addResponseHeader('set-cookie', clearCookie(this.flowPrefix + s.data.f));
    if (watch) ctx.set(PENDING_WATCH, this.watchFor(ctx, s));
    if (this.sessions.needsRefresh(s)) this.sessions.refreshInBackground(s);
    return CONTINUE;
  }

  private watchFor(ctx: CheckContext, s: LiveSession): PendingWatch {
    const stage = this;
    const cache = this.sessions.cache;
    return {
      watch: { id: s.id, version: s.version, ttlMs: this.sessions.ttlFor(s.data.ae) },
      // Built only when needed: the common answer is "live".
      get goneDenial(): Denial {
        return stage.endedDenial(ctx, 'oidc_session_ended');
      },
      settle(state: WatchState) {
        // Changed: refreshed elsewhere; the next Check reads the new version. Gone: ended everywhere.
        if (state !== 'live') cache.delete(s.id);
      },
      sent: false,
    };
  }

  /** The session is unusable: clear the cookie and send the browser back to the same URL (which then logs in); 401 for fetch/XHR. */
  private endedDenial(ctx: CheckContext, reason: string): Denial {
    const clear: [string, string] = ['set-cookie', clearCookie(this.cookieName)];
    if (!isNavigation(ctx)) return { status: 401, reason, headers: [clear, ['x-passgate-login', this.loginLink(ctx)]] };
    return { status: 302, reason, headers: [['location', this.here(ctx)], clear] };
  }

  private restart(ctx: CheckContext, reason: string): StageResult {
    if (reason !== 'oidc_session_ended' && reason !== 'oidc_session_expired') ctx.report('oidc_failure', 'ip', ctx.request.source.address);
    ctx.audit['oidc'] = { event: 'session_refused', reason };
    return { kind: 'deny', denial: this.endedDenial(ctx, reason) };
  }

  private loginLink(ctx: CheckContext): string {
    return `${this.o.loginPath}?return_to=${encodeURIComponent(this.here(ctx))}`;
  }

  finish(ctx: CheckContext, decision: Decision): FinishResult | Promise<FinishResult> {
    if (decision.kind !== 'allow') return;
    let hasFds = this.hasFds.get(ctx.route);
    if (hasFds === undefined) this.hasFds.set(ctx.route, (hasFds = ctx.route.stages.some((s) => s.type === 'fds')));
    if (hasFds) return; // the fds stage sends the watch in its one call
    const w = pendingWatch(ctx);
    if (w === undefined) return;
    w.sent = true;
    return this.sessions.watchAlone(w.watch.id, w.watch.version, w.watch.ttlMs, Math.max(1, ctx.remainingMs() - 2)).then(
      (res): FinishResult => {
        const state = res.watched?.[0] ?? 'gone';
        w.settle(state);
        return state === 'gone' ? { kind: 'deny', denial: w.goneDenial } : undefined;
      },
      (err: unknown) => fail('oidc_store_unavailable', `oidc session check: ${(err as Error).message}`),
    );
  }

  // ---- login

  private startLogin(ctx: CheckContext, returnTo: string, explicit: boolean): StageResult | Promise<StageResult> {
    if (!explicit && !isNavigation(ctx)) {
      ctx.audit['oidc'] = { event: 'login_required' };
      return deny(401, 'oidc_login_required', undefined, { headers: [['x-passgate-login', this.loginLink(ctx)]] });
    }
    return this.beginFlow(ctx, returnTo).catch((err: unknown) => this.unavailable(err, 'login'));
  }

  private unavailable(err: unknown, what: string): StageResult {
    if (err instanceof OidcError) return fail(err.reason, err.message);
    return fail('oidc_store_unavailable', `oidc ${what}: ${(err as Error).message}`);
  }

  private async beginFlow(ctx: CheckContext, returnTo: string): Promise<StageResult> {
    const s = this.sessions.settings;
    const flowId = newId();
    const binding = randomToken();
    const flow: Flow = {
      v: oauth.generateRandomCodeVerifier(),
      n: oauth.generateRandomNonce(),
      r: returnTo,
      b: hashText(binding),
      p: this.provider.name,
      u: `${this.origin(ctx)}${this.o.callbackPath}`,
    };
    const url = await this.provider.authorizationUrl(flow.u, flowId, flow.n, flow.v);
    await this.sessions.store.putFlow(flowId, JSON.stringify(flow), s.loginTimeoutMs);
    ctx.audit['oidc'] = { event: 'login_started', provider: this.provider.name };
    return deny(302, 'oidc_login', undefined, {
      headers: [
        ['location', url],
        ['set-cookie', setCookie(this.flowPrefix + flowId, binding, s.loginTimeoutMs / 1000)],
      ],
    });
  }

  private callback(ctx: CheckContext): StageResult | Promise<StageResult> {
    if (ctx.request.method !== 'GET') return this.failure(ctx, 400, 'oidc_bad_callback', `callback with method ${ctx.request.method}`);
    const params = new URLSearchParams(ctx.request.query);
    const state = params.get('state');
    if (state === null || !isId(state)) return this.failure(ctx, 400, 'oidc_state_invalid', 'callback without a state this gateway could have made');
    return this.completeLogin(ctx, params, state).catch((err: unknown) => {
      if (err instanceof OidcError) {
        if (err.unavailable) return deny(502, err.reason, err.message);
        return this.failure(ctx, err.reason === 'oidc_login_refused' ? 403 : 400, err.reason, err.message);
      }
      return fail('oidc_store_unavailable', `oidc callback: ${(err as Error).message}`);
    });
  }

  private async completeLogin(ctx: CheckContext, params: URLSearchParams, state: string): Promise<StageResult> {
    const raw = await this.sessions.store.takeFlow(state);
    if (raw === undefined) return this.failure(ctx, 400, 'oidc_state_unknown', 'no login flow with this state (forged, replayed or expired)');
    const flow = JSON.parse(raw) as Flow;
    const cookies = ctx.request.headers['cookie'];
    const binding = cookieValue(cookies, this.flowPrefix + state);
    if (binding === undefined || !digestEquals(hashText(binding), flow.b)) {
      return this.failure(ctx, 400, 'oidc_state_unbound', 'the callback came from a browser that did not start this login');
    }
    const provider = this.provider.name === flow.p ? this.provider : undefined;
    if (provider === undefined) return this.failure(ctx, 400, 'oidc_state_unknown', `login flow of another provider (${flow.p})`);
    const tokens = await provider.exchange(params, state, flow.u, flow.v, flow.n);
    // A session cookie the browser still had is ended: the login makes a new session id (no fixation).
    const old = parseTicket(cookieValue(cookies, this.cookieName) ?? '');
    if (old !== undefined && this.sessions.cached(old) !== 'forged') await this.sessions.end(old.id).catch(() => undefined);
    const { ticket } = await this.sessions.create(provider, tokens, state);
    ctx.audit['oidc'] = { event: 'login', provider: provider.name, sub: tokens.claims.sub };
    return deny(302, 'oidc_logged_in', undefined, {
      headers: [
        ['location', flow.r],
        ['set-cookie', setCookie(this.cookieName, ticketText(ticket), this.sessions.settings.absoluteTimeoutMs / 1000)],
      ],
    });
  }

  // ---- logout

  private logout(ctx: CheckContext): Promise<StageResult> {
    return this.endSession(ctx).catch((err: unknown) => this.unavailable(err, 'logout'));
  }

  private async endSession(ctx: CheckContext): Promise<StageResult> {
    const ticket: Ticket | undefined = parseTicket(cookieValue(ctx.request.headers['cookie'], this.cookieName) ?? '');
    let idToken: string | undefined;
    if (ticket !== undefined) {
      let s = this.sessions.cached(ticket);
      if (s === undefined) {
        const r = await this.sessions.load(ticket);
        if (r.kind === 'live') s = r.session;
      }
      if (s !== undefined && s !== 'forged') {
        idToken = s.data.idt;
        await this.sessions.end(s.id);
        ctx.audit['oidc'] = { event: 'logout', sub: s.data.sub };
      }
    }
    const back = `${this.origin(ctx)}${this.o.postLogoutPath}`;
    const location = (idToken === undefined ? undefined : await this.provider.endSessionUrl(idToken, back)) ?? this.o.postLogoutPath;
    return deny(302, 'oidc_logged_out', undefined, { headers: [['location', location], ['set-cookie', clearCookie(this.cookieName)]] });
  }

  private backchannel(ctx: CheckContext): Promise<StageResult> | StageResult {
    const r = ctx.request;
    if (r.method !== 'POST') return this.failure(ctx, 400, 'oidc_logout_token_missing', 'back-channel logout must be a POST');
    const body = r.body === undefined ? '' : typeof r.body === 'string' ? r.body : Buffer.from(r.body).toString('utf8');
    if (body === '') return this.failure(ctx, 400, 'oidc_logout_token_missing', 'no body in the Check: configure Envoy ext_authz with_request_body (Istio includeRequestBodyInCheck)');
    const token = new URLSearchParams(body).get('logout_token');
    if (token === null || token === '') return this.failure(ctx, 400, 'oidc_logout_token_missing', 'no logout_token in the form body');
    return this.backchannelLogout(ctx, token).catch((err: unknown) => {
      if (err instanceof OidcError && !err.unavailable) return this.failure(ctx, 400, err.reason, err.message);
      return this.unavailable(err, 'back-channel logout');
    });
  }

  private async backchannelLogout(ctx: CheckContext, token: string): Promise<StageResult> {
    const claims = await this.provider.verifyLogoutToken(token);
    const fresh = await this.sessions.claimJti(this.provider.name, claims.jti, claims.expiresAt, Math.max(1, ctx.remainingMs() - 2));
    if (!fresh) return this.failure(ctx, 400, 'oidc_logout_token_replayed', 'this logout token (jti) was used already');
    const as = await this.provider.as();
    const ended = await this.sessions.endIndexed(as.issuer, claims.sid, claims.sub);
    ctx.audit['oidc'] = { event: 'backchannel_logout', sessions: ended };
    return deny(200, 'oidc_backchannel_logout');
  }
}

export const oidcStage: StageDefinition<OidcStageOptions, OidcState> = {
  type: 'oidc',
  schema: oidcStageSchema,
  description: 'OIDC single sign-on: browser sessions (encrypted in the FDS store), login, callback, refresh, logout and back-channel logout answered by the stage.',
  events: [{ event: 'oidc_failure', kinds: ['ip'] }],
  validate(options, config) {
    const providers = Object.keys(config.oidc?.providers ?? {});
    if (config.oidc === undefined) return ['the oidc stage needs an `oidc:` section (providers and session settings)'];
    if (options.provider === undefined && providers.length !== 1) return [`name the provider (one of ${providers.join(', ')})`];
    if (options.provider !== undefined && !providers.includes(options.provider)) return [`provider "${options.provider}" is not in oidc.providers (${providers.join(', ')})`];
    const paths = [options.callbackPath, options.logoutPath, options.backchannelLogoutPath, options.loginPath];
    if (new Set(paths).size !== paths.length) return ['callbackPath, logoutPath, backchannelLogoutPath and loginPath must differ'];
    // A header that is not internal is not stripped from client requests: on any route where this stage
    // does not run (or does not set it), a client could send its own `x-auth-request-email`.
    const h = config.headers;
    const notInternal = Object.keys(options.identityHeaders).filter((n) => !h.internal.includes(n) && !h.internalPrefixes.some((p) => n.startsWith(p)));
    if (notInternal.length > 0) return [`identityHeaders ${notInternal.map((n) => `"${n}"`).join(', ')}: list them in headers.internal (or use a headers.internalPrefixes prefix) so every client copy is stripped`];
    return [];
  },
  create(options, factory): Stage {
    const st = factory.state;
    if (st.sessions === undefined) throw new Error(`${factory.path}: no oidc sessions were prepared (is there an oidc section?)`);
    const name = options.provider ?? [...st.providers.keys()][0]!;
    const provider = st.providers.get(name);
    if (provider === undefined) throw new Error(`${factory.path}.provider: "${name}" is not in oidc.providers`);
    return new OidcStage(options, provider, st.sessions);
  },
};

/** A group name's characters that would change a comma-split, trimmed list: the separator, the escape, whitespace at an end. */
const GROUP_SPECIAL = /[%,]|^[ \t]|[ \t]$/;

/**
 * The groups as one header value, comma-joined: in a name, `%`, `,` and a space or tab at either end are
 * percent-encoded, so a consumer that splits on commas and trims gets each name back (a group the provider
 * names "staff,admins" must not reach the upstream as two groups, nor " admins" as "admins").
 */
export function groupsHeader(groups: readonly string[]): string {
  let out = '';
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    const safe = GROUP_SPECIAL.test(g) ? g.replace(/%/g, '%25').replace(/,/g, '%2C').replace(/^[ \t]+|[ \t]+$/g, (ws) => ws.replace(/ /g, '%20').replace(/\t/g, '%09')) : g;
    out += i === 0 ? safe : `,${safe}`;
  }
  return out;
}
