/**
 * Sessions: created at login, read once per replica (then served from a
 * byte-bounded cache of decrypted sessions), refreshed in the background
 * under a store lock, ended by logout or back-channel logout.
 *
 * Stored per session (FDS store, key built by its sessionKey): a version, the
 * absolute expiry, and the sealed payload (claims and tokens, seal.ts). The
 * idle TTL is the key's TTL: every Check renews it, inside the Check's one
 * store call (the watch, fds/facts.ts), or in the cold read.
 */
import type { Logger } from 'pino';
import type { LRUCache } from 'lru-cache';
import type { Identity } from '../pipeline/context.js';
import { byteLru, stringBytes } from '../resilience/byte-lru.js';
import type { FdsEngine } from '../fds/engine.js';
import type { SessionRecord } from '../fds/store/store.js';
import type { OidcSessionSettings } from './config.js';
import type { OidcProvider, TokenSet } from './provider.js';
import { OidcError } from './provider.js';
import { hashText, newTicket, randomToken, seal, secretDigest, secretMatches, sessionKey, unseal, type Ticket } from './seal.js';

/** What is sealed: claims and tokens. Short keys: it is stored once per session. */
export interface SessionData {
  /** Provider name, issuer, subject, provider session id (sid). */
  readonly p: string;
  readonly iss: string;
  readonly sub: string;
  readonly sid?: string;
  readonly email?: string;
  readonly name?: string;
  readonly groups: readonly string[];
  readonly idt: string;
  readonly at: string;
  readonly rt?: string;
  /** Access token expiry, epoch ms. */
  readonly ate?: number;
  readonly ca: number;
  readonly ae: number;
  /** The login flow that made it (its browser-binding cookie is cleared on the first allow). */
  readonly f?: string;
}

export interface LiveSession {
  readonly id: string;
  /** sha256 of the ticket's secret (compared in constant time); the secret itself is not kept. */
  readonly digest: Buffer;
  /** The AES key derived from the secret (to reseal after a refresh). */
  readonly key: Buffer;
  readonly version: string;
  readonly data: SessionData;
  readonly identity: Identity;
  refreshing: boolean;
}

export type SessionLookup =
  | { readonly kind: 'live'; readonly session: LiveSession; readonly cached: boolean }
  | { readonly kind: 'gone' }
  /** The cookie names a session but its secret does not open it. */
  | { readonly kind: 'forged' };

function identityOf(d: SessionData): Identity {
  const attributes: Record<string, string> = { iss: d.iss };
  if (d.email !== undefined) attributes['email'] = d.email;
  if (d.name !== undefined) attributes['name'] = d.name;
  return Object.freeze({ subject: d.sub, kind: 'user', source: 'oidc', attributes: Object.freeze(attributes), groups: Object.freeze([...d.groups]) });
}

function liveBytes(s: LiveSession): number {
  const d = s.data;
  return 400 + stringBytes(d.idt) + stringBytes(d.at) + (d.rt === undefined ? 0 : stringBytes(d.rt)) + stringBytes(d.sub) + d.groups.reduce((n, g) => n + stringBytes(g), 0) + (d.email === undefined ? 0 : stringBytes(d.email)) + (d.name === undefined ? 0 : stringBytes(d.name));
}

function claimString(claims: Record<string, unknown>, name: string): string | undefined {
  const v = claims[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function claimGroups(claims: Record<string, unknown>, name: string): string[] {
  const v = claims[name];
  if (Array.isArray(v)) return v.filter((g): g is string => typeof g === 'string' && g !== '').slice(0, 256);
  return typeof v === 'string' && v !== '' ? [v] : [];
}

/** Index entries for back-channel logout: by provider session id, and by subject. */
export function sidIndex(iss: string, sid: string): string {
  return hashText(`sid\u0000${iss}\u0000${sid}`);
}
export function subIndex(iss: string, sub: string): string {
  return hashText(`sub\u0000${iss}\u0000${sub}`);
}

export class SessionManager {
  readonly cache: LRUCache<string, LiveSession>;
  /** Refreshes done (tests, bench). */
  refreshes = 0;

  constructor(
    readonly settings: OidcSessionSettings,
    private readonly engine: FdsEngine,
    private providers: ReadonlyMap<string, OidcProvider>,
    private readonly logger: Logger,
  ) {
    this.cache = byteLru<string, LiveSession>({ max: settings.cacheMaxEntries, maxBytes: settings.cacheMaxBytes, sizeOf: liveBytes });
  }

  /** A reload's providers (the cache is kept). */
  retarget(providers: ReadonlyMap<string, OidcProvider>): void {
    this.providers = providers;
  }

  get store() {
    return this.engine.store;
  }

  /** The TTL to give the session key now: the idle timeout, never past the absolute expiry. */
  ttlFor(absoluteExpiresAt: number, now = Date.now()): number {
    return Math.max(1, Math.min(this.settings.idleTimeoutMs, absoluteExpiresAt - now));
  }

  /** A new session for a completed login; always a new id (no fixation). */
  async create(provider: OidcProvider, tokens: TokenSet, flowId: string): Promise<{ ticket: Ticket; session: LiveSession }> {
    const now = Date.now();
    const claims = tokens.claims as Record<string, unknown>;
    const c = provider.config.claims;
    const sid = claimString(claims, 'sid');
    const data: SessionData = {
      p: provider.name,
      iss: tokens.claims.iss,
      sub: tokens.claims.sub,
      ...(sid === undefined ? {} : { sid }),
      ...(claimString(claims, c.email) === undefined ? {} : { email: claimString(claims, c.email)! }),
      ...(claimString(claims, c.name) === undefined ? {} : { name: claimString(claims, c.name)! }),
      groups: claimGroups(claims, c.groups),
      idt: tokens.idToken,
      at: tokens.accessToken,
      ...(tokens.refreshToken === undefined ? {} : { rt: tokens.refreshToken }),
      ...(tokens.accessExpiresAt === undefined ? {} : { ate: tokens.accessExpiresAt }),
      ca: now,
      ae: now + this.settings.absoluteTimeoutMs,
      f: flowId,
    };
    const ticket = newTicket();
    const key = sessionKey(ticket);
    const version = randomToken().slice(0, 12);
    const record: SessionRecord = { version, sealed: seal(key, ticket.id, JSON.stringify(data)), absoluteExpiresAt: data.ae };
    const index = [subIndex(data.iss, data.sub), ...(sid === undefined ? [] : [sidIndex(data.iss, sid)])];
    await this.store.putSession(ticket.id, record, this.ttlFor(data.ae, now), index);
    const session: LiveSession = { id: ticket.id, digest: secretDigest(ticket.secret), key, version, data, identity: identityOf(data), refreshing: false };
    this.cache.set(ticket.id, session);
    return { ticket, session };
  }

  /** The cached session when the ticket opens it (no I/O); undefined when not cached here. */
  cached(ticket: Ticket): LiveSession | 'forged' | undefined {
    const s = this.cache.get(ticket.id);
    if (s === undefined) return undefined;
    return secretMatches(ticket.secret, s.digest) ? s : 'forged';
  }

  /** Reads (and touches) the session in the store: the first request of a session at this replica. */
  async load(ticket: Ticket): Promise<SessionLookup> {
    const ttl = this.settings.idleTimeoutMs;
    const rec = await this.store.readSession(ticket.id, ttl);
    if (rec === undefined) return { kind: 'gone' };
    const s = this.open(ticket.id, sessionKey(ticket), secretDigest(ticket.secret), rec);
    if (s === undefined) return { kind: 'forged' };
    if (s.data.ae <= Date.now()) {
      await this.end(ticket.id);
      return { kind: 'gone' };
    }
    this.cache.set(ticket.id, s);
    return { kind: 'live', session: s, cached: false };
  }

  private open(id: string, key: Buffer, digest: Buffer, rec: SessionRecord): LiveSession | undefined {
    const text = unseal(key, id, rec.sealed);
    if (text === undefined) return undefined;
    let data: SessionData;
    try {
      data = JSON.parse(text) as SessionData;
    } catch {
      return undefined;
    }
    return { id, digest, key, version: rec.version, data, identity: identityOf(data), refreshing: false };
  }

  /** Ends one session everywhere: the store entry (other replicas see it gone on their next Check) and this cache. */
  async end(id: string): Promise<boolean> {
    this.cache.delete(id);
    return this.store.deleteSession(id);
  }

  /** Back-channel logout: every session listed under the provider's sid (or, without one, the subject). */
  async endIndexed(iss: string, sid: string | undefined, sub: string | undefined): Promise<number> {
    const ids = new Set<string>();
    if (sid !== undefined) for (const id of await this.store.indexedSessions(sidIndex(iss, sid))) ids.add(id);
    else if (sub !== undefined) for (const id of await this.store.indexedSessions(subIndex(iss, sub))) ids.add(id);
    let n = 0;
    for (const id of ids) {
      const cached = this.cache.get(id);
      // A sid-and-sub token ends only the sessions of that subject.
      if (sid !== undefined && sub !== undefined && cached !== undefined && cached.data.sub !== sub) continue;
      if (await this.end(id)) n++;
    }
    return n;
  }

  /** Whether the access token is close enough to expiry to refresh (and can be). */
  needsRefresh(s: LiveSession, now = Date.now()): boolean {
    return s.data.rt !== undefined && s.data.ate !== undefined && s.data.ate - now <= this.settings.refreshBeforeExpiryMs;
  }

  /**
   * Refreshes in the background (the Check that noticed goes on with the
   * session it has). One refresh per session at a time across replicas: the
   * store lock, renewed every third of its TTL while the provider answers;
   * under the lock the session is read again, so a replica whose cache was
   * stale finds the other's refresh done and calls nobody. A refusal (the
   * refresh token revoked, the user disabled) ends the session: the next
   * Check re-logs in. An unreachable provider leaves the session as it is.
   */
  refreshInBackground(s: LiveSession): void {
    if (s.refreshing) return;
    s.refreshing = true;
    void this.refresh(s)
      .catch((err: unknown) => this.logger.warn({ oidc: 'refresh_failed', session: hashText(s.id).slice(0, 12), err: (err as Error).message }, 'oidc refresh failed; retried on a later request'))
      .finally(() => {
        s.refreshing = false;
      });
  }

  private async refresh(s: LiveSession): Promise<void> {
    const settings = this.settings;
    const token = randomToken();
    if (!(await this.store.lock(s.id, token, settings.refreshLockMs))) return; // another request or replica is at it
    const renew = setInterval(() => void this.store.renewLock(s.id, token, settings.refreshLockMs).catch(() => undefined), Math.max(10, Math.floor(settings.refreshLockMs / 3)));
    renew.unref();
    try {
      const rec = await this.store.readSession(s.id, this.ttlFor(s.data.ae));
      if (rec === undefined) {
        this.cache.delete(s.id);
        return;
      }
      let current = s;
      if (rec.version !== s.version) {
        const fresh = this.open(s.id, s.key, s.digest, rec);
        if (fresh === undefined) return;
        this.cache.set(s.id, fresh);
        if (!this.needsRefresh(fresh)) return; // refreshed elsewhere meanwhile
        current = fresh;
      }
      const provider = this.providers.get(current.data.p);
      if (provider === undefined) return;
      let tokens;
      try {
        tokens = await provider.refresh(current.data.rt!, current.data.sub);
      } catch (err) {
        if (err instanceof OidcError && !err.unavailable) {
          this.logger.info({ oidc: 'refresh_refused', reason: err.reason, session: hashText(s.id).slice(0, 12) }, 'oidc refresh refused; session ended (the user logs in again)');
          await this.end(s.id);
          return;
        }
        throw err;
      }
      this.refreshes++;
      const claims = tokens.claims as Record<string, unknown>;
      const c = provider.config.claims;
      const d = current.data;
      const data: SessionData = {
        ...d,
        ...(tokens.idToken === undefined ? {} : { idt: tokens.idToken }),
        at: tokens.accessToken,
        ...(tokens.refreshToken === undefined ? {} : { rt: tokens.refreshToken }),
        ...(tokens.accessExpiresAt === undefined ? {} : { ate: tokens.accessExpiresAt }),
        // A new ID token may carry new groups (per-page authorization follows the provider).
        ...(tokens.idToken !== undefined && claims[c.groups] !== undefined ? { groups: claimGroups(claims, c.groups) } : {}),
      };
      const version = randomToken().slice(0, 12);
      const next: SessionRecord = { version, sealed: seal(current.key, s.id, JSON.stringify(data)), absoluteExpiresAt: d.ae };
      if (await this.store.replaceSession(s.id, rec.version, next, this.ttlFor(d.ae))) {
        this.cache.set(s.id, { ...current, version, data, identity: identityOf(data), refreshing: false });
      }
    } finally {
      clearInterval(renew);
      await this.store.unlock(s.id, token).catch(() => undefined);
    }
  }

  /** The Check's own store call on a route without an fds stage (the watch alone). */
  watchAlone(id: string, version: string, ttlMs: number, limitMs: number) {
    return this.engine.evaluate([], [], limitMs, undefined, [{ id, version, ttlMs }]);
  }

  /** Burns a logout token's jti (single use) in the store's claim set. */
  async claimJti(provider: string, jti: string, expiresAt: number, limitMs: number): Promise<boolean> {
    const r = await this.engine.evaluate([], [], limitMs, [{ key: `oidc-logout:${provider}:${hashText(jti)}`, expiresAt, minTtlMs: 120_000 }]);
    return r.replayed !== true;
  }
}
