/**
 * Verification keys of one issuer or client, by `kid`: static JWKs from the
 * config, or a JWKS URL (directly or found through OIDC discovery).
 *
 * - Warm path is synchronous: a Map lookup returning cached KeyObjects.
 * - An unknown `kid` triggers one refresh (single flight), at most once per
 *   `minRefreshMs`, so a flood of made-up kids costs one fetch per interval.
 * - Keys older than `refreshMs` are refreshed in the background while the
 *   old ones keep answering; a failed fetch keeps the last good set
 *   (stale-if-error) and is retried after `minRefreshMs`.
 * - Bounded: the JWKS body by `maxBytes`, the set by `maxKeys`.
 */
import type { KeyObject } from 'node:crypto';
import { importPublicJwk } from './jwk.js';

export interface KeySetOptions {
  readonly jwksUri?: string;
  /** OIDC issuer whose discovery document names the JWKS URL. */
  readonly discoveryIssuer?: string;
  readonly staticKeys?: readonly Record<string, unknown>[];
  readonly refreshMs: number;
  readonly minRefreshMs: number;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  readonly maxKeys: number;
}

export interface KeyEntry {
  readonly kid: string | undefined;
  readonly key: KeyObject;
  /** The JWK's own `alg`, when it names one: the token must then use exactly that. */
  readonly alg: string | undefined;
}

export type KeyLookup = readonly KeyEntry[];

const NONE: KeyLookup = Object.freeze([]);

export class KeySet {
  private byKid = new Map<string, KeyEntry[]>();
  private all: KeyEntry[] = [];
  private fetchedAt = 0;
  private lastAttempt = 0;
  private inflight: Promise<void> | undefined;
  private jwksUri: string | undefined;
  /** Last fetch error, for the audit detail and the admin view. */
  lastError: string | undefined;

  constructor(
    readonly name: string,
    private readonly options: KeySetOptions,
  ) {
    this.jwksUri = options.jwksUri;
    if (options.staticKeys) {
      const problems = this.install(options.staticKeys);
      if (problems.length > 0) throw new Error(problems.join('; '));
    }
  }

  get remote(): boolean {
    return this.jwksUri !== undefined || this.options.discoveryIssuer !== undefined;
  }

  /** Keys for `kid` (all keys when the token names none). Sync when known; a Promise when a refresh is needed. */
  lookup(kid: string | undefined, now = Date.now()): KeyLookup | Promise<KeyLookup> {
    const found = this.find(kid);
    if (!this.remote) return found;
    if (this.fetchedAt !== 0 && now - this.fetchedAt > this.options.refreshMs) void this.refresh(now);
    if (found.length > 0) return found;
    if (this.inflight === undefined && now - this.lastAttempt < this.options.minRefreshMs) return NONE;
    return this.refresh(now).then(() => this.find(kid));
  }

  private find(kid: string | undefined): KeyLookup {
    if (kid === undefined) return this.all;
    return this.byKid.get(kid) ?? NONE;
  }

  /** Fetches now (single flight); never rejects: an error keeps the old keys. */
  refresh(now = Date.now()): Promise<void> {
    if (this.inflight) return this.inflight;
    this.lastAttempt = now;
    this.inflight = this.fetchKeys()
      .then(
        (keys) => {
          const problems = this.install(keys);
          this.fetchedAt = Date.now();
          this.lastError = problems.length > 0 ? problems.join('; ') : undefined;
        },
        (err: unknown) => {
          this.lastError = err instanceof Error ? err.message : String(err);
        },
      )
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  private async fetchKeys(): Promise<readonly Record<string, unknown>[]> {
    if (this.jwksUri === undefined) {
      const base = this.options.discoveryIssuer!.replace(/\/$/, '');
      const doc = await this.getJson(`${base}/.well-known/openid-configuration`);
      if (typeof doc['jwks_uri'] !== 'string') throw new Error(`${this.name}: discovery document of ${base} names no jwks_uri`);
      if (doc['issuer'] !== this.options.discoveryIssuer) throw new Error(`${this.name}: discovery document says issuer ${String(doc['issuer'])}, expected ${this.options.discoveryIssuer}`);
      this.jwksUri = doc['jwks_uri'];
    }
    const body = await this.getJson(this.jwksUri);
    if (!Array.isArray(body['keys'])) throw new Error(`${this.name}: ${this.jwksUri} is not a JWKS (no "keys" array)`);
    return body['keys'] as Record<string, unknown>[];
  }

  private async getJson(url: string): Promise<Record<string, unknown>> {
    const res = await fetch(url, { signal: AbortSignal.timeout(this.options.timeoutMs), headers: { accept: 'application/json' }, redirect: 'error' });
    if (!res.ok) throw new Error(`${this.name}: GET ${url} answered ${res.status}`);
    const declared = Number(res.headers.get('content-length') ?? 0);
    if (declared > this.options.maxBytes) throw new Error(`${this.name}: ${url} is larger than ${this.options.maxBytes} bytes`);
    const text = await res.text();
    if (text.length > this.options.maxBytes) throw new Error(`${this.name}: ${url} is larger than ${this.options.maxBytes} bytes`);
    const v: unknown = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${this.name}: ${url} is not a JSON object`);
    return v as Record<string, unknown>;
  }

  /** Replaces the set with the usable signing keys of `keys`; returns what was skipped and why. */
  private install(keys: readonly Record<string, unknown>[]): string[] {
    const problems: string[] = [];
    const byKid = new Map<string, KeyEntry[]>();
    const all: KeyEntry[] = [];
    for (const [i, jwk] of keys.entries()) {
      if (all.length >= this.options.maxKeys) {
        problems.push(`${this.name}: more than ${this.options.maxKeys} keys, the rest are ignored`);
        break;
      }
      if (jwk['use'] !== undefined && jwk['use'] !== 'sig') continue;
      const r = importPublicJwk(jwk);
      if (!r.ok) {
        problems.push(`${this.name}: keys[${i}]: ${r.detail}`);
        continue;
      }
      const kid = typeof jwk['kid'] === 'string' ? jwk['kid'] : undefined;
      const entry: KeyEntry = { kid, key: r.key, alg: typeof jwk['alg'] === 'string' ? jwk['alg'] : undefined };
      all.push(entry);
      if (kid !== undefined) {
        const list = byKid.get(kid);
        if (list) list.push(entry);
        else byKid.set(kid, [entry]);
      }
    }
    // An empty or wholly broken answer must not wipe keys that worked (stale-if-error).
    if (all.length > 0 || this.all.length === 0) {
      this.byKid = byKid;
      this.all = all;
    }
    return problems;
  }

  get size(): number {
    return this.all.length;
  }
}
