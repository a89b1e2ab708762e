/**
 * What the authorization server said about a credential, cached per replica.
 *
 * - Keys are digests, never the credential: a token is keyed by its SHA-256
 *   (the same hash an operator revokes by), client credentials by an HMAC
 *   under a per-process random key (a secret's plain hash could be attacked
 *   offline from a memory dump; the HMAC key dies with the process).
 * - Entries hold the server's answer (active, client, scopes, exp), never a
 *   decision: each route checks its own scopes against it on every request.
 * - Bounded by bytes and by count (lru-cache); a positive entry lives
 *   min(maxTtl, exp - now), a negative one negativeTtl; past that it may
 *   still serve for staleIfError while the server is unreachable.
 * - Revocation leaves tombstones (token hash, client id) so a revoked
 *   credential stays refused even if the server still calls it active.
 * - One lookup per key in flight at a time (single flight).
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';

export interface Grant {
  readonly active: boolean;
  /** Why it is not usable, when not active: inactive, wrong_audience, wrong_issuer, invalid_client. */
  readonly reason: string;
  readonly clientId: string;
  readonly scopes: ReadonlySet<string>;
  readonly scopeText: string;
  /** The token's `sub`, when it has one. */
  readonly subject: string | undefined;
  /** Epoch seconds, when known. */
  readonly exp: number | undefined;
}

export interface CachedGrant {
  readonly grant: Grant;
  /** True when past its TTL (usable only while the server is unreachable). */
  readonly stale: boolean;
}

interface Entry {
  readonly grant: Grant;
  readonly freshUntil: number;
}

export interface CacheLimits {
  readonly maxTtlMs: number;
  readonly negativeTtlMs: number;
  readonly staleIfErrorMs: number;
  readonly maxEntries: number;
  readonly maxBytes: number;
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

const OVERHEAD = 160;

/** The strings of an entry, and the scope Set beside its text (each scope a string and a Set slot again). */
function sizeOf(key: string, e: Entry): number {
  return OVERHEAD + 2 * (key.length + 2 * e.grant.scopeText.length + e.grant.clientId.length + (e.grant.subject?.length ?? 0)) + 48 * e.grant.scopes.size;
}

export class GrantCache {
  private readonly lru: LRUCache<string, Entry>;
  /** Revoked token hashes and client ids (`t:` / `c:`), each until its tombstone runs out. */
  private readonly tombstones: LRUCache<string, true>;
  private readonly inflight = new Map<string, Promise<Grant>>();
  private readonly hmacKey = randomBytes(32);
  hits = 0;
  misses = 0;

  constructor(
    readonly limits: CacheLimits,
    tombstoneMs: number,
  ) {
    this.lru = new LRUCache<string, Entry>({ max: limits.maxEntries, maxSize: limits.maxBytes, sizeCalculation: (e, k) => sizeOf(k, e), ttlAutopurge: false });
    this.tombstones = new LRUCache<string, true>({ max: 100_000, ttl: tombstoneMs });
  }

  tokenKey(server: string, token: string): { key: string; hash: string } {
    const hash = tokenHash(token);
    return { key: `t:${server}:${hash}`, hash };
  }

  /** HMAC of id and secret; the secret is not kept beyond the request. */
  clientKey(server: string, id: string, secret: string): string {
    return `c:${server}:${createHmac('sha256', this.hmacKey).update(id).update('\0').update(secret).digest('base64url')}`;
  }

  get size(): number {
    return this.lru.size;
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }

  lookup(key: string, now = Date.now()): CachedGrant | undefined {
    const e = this.lru.get(key);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    const stale = now >= e.freshUntil;
    if (!stale) this.hits++;
    return { grant: e.grant, stale };
  }

  store(key: string, grant: Grant, now = Date.now()): void {
    let ttl = grant.active ? this.limits.maxTtlMs : this.limits.negativeTtlMs;
    if (grant.active && grant.exp !== undefined) ttl = Math.min(ttl, grant.exp * 1000 - now);
    if (ttl <= 0) {
      this.lru.delete(key);
      return;
    }
    // An expired token is never served stale: its life ends at exp whatever the server's health.
    const staleMs = grant.active && grant.exp !== undefined ? Math.min(this.limits.staleIfErrorMs, Math.max(0, grant.exp * 1000 - now - ttl)) : this.limits.staleIfErrorMs;
    this.lru.set(key, { grant, freshUntil: now + ttl }, { ttl: ttl + staleMs });
  }

  /** Runs `load` once per key at a time; concurrent callers share its promise. */
  singleFlight(key: string, load: () => Promise<Grant>): Promise<Grant> {
    const running = this.inflight.get(key);
    if (running !== undefined) return running;
    const p = load().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  isRevokedToken(hash: string): boolean {
    return this.tombstones.has(`t:${hash}`);
  }

  isRevokedClient(id: string): boolean {
    return this.tombstones.size > 0 && this.tombstones.has(`c:${id}`);
  }

  /** Drops every server's entry for this token hash and refuses it from now on. */
  revokeToken(hash: string): number {
    this.tombstones.set(`t:${hash}`, true);
    let n = 0;
    for (const key of [...this.lru.keys()]) if (key.startsWith('t:') && key.endsWith(`:${hash}`) && this.lru.delete(key)) n++;
    return n;
  }

  /** Drops every entry of this client (its tokens and its credentials) and refuses it from now on. */
  revokeClient(id: string): number {
    this.tombstones.set(`c:${id}`, true);
    let n = 0;
    for (const [key, e] of [...this.lru.entries()]) if (e.grant.clientId === id && this.lru.delete(key)) n++;
    return n;
  }

  /** An operator lifted a client's revocation (e.g. after rotating its secret). */
  restoreClient(id: string): void {
    this.tombstones.delete(`c:${id}`);
  }

  clear(): void {
    this.lru.clear();
  }
}
