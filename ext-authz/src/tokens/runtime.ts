/**
 * Long-lived token state shared by every jwt/proof stage: issuer and client
 * key sets (kept across reloads while their key source is unchanged, so a
 * reload does not refetch every JWKS), the proof key cache and the nonce mint.
 */
import type { TokensConfig } from './config.js';
import { KeySet } from './key-set.js';
import { ProofKeyCache } from './key-cache.js';
import { NonceMint } from './nonce.js';
import { VerifiedTokenCache } from './token-cache.js';
import type { IssuerRuntime, VerifiedJwt } from './jwt-verifier.js';
import type { ClientRuntime } from './request-jwt.js';

type KeySource = { keys?: readonly Record<string, unknown>[] | undefined; jwksUri?: string | undefined; jwks: { refresh: number; minRefresh: number; timeout: number; maxBytes: number; maxKeys: number } };

export class TokensRuntime {
  private readonly keySets: Map<string, KeySet>;
  proofKeys: ProofKeyCache | undefined;
  private proofKeySettings = '';
  nonce: NonceMint | undefined;
  private nonceSettings = '';
  private tokens: VerifiedTokenCache<VerifiedJwt> | undefined;
  private tokenSettings = '';

  /**
   * A runtime for a new config, taking over the key sets and caches of the
   * one serving now (so a reload refetches no JWKS) without changing it: a
   * rejected reload leaves the serving runtime exactly as it was.
   */
  constructor(previous?: TokensRuntime) {
    this.keySets = new Map(previous?.keySets);
    if (previous) {
      this.proofKeys = previous.proofKeys;
      this.proofKeySettings = previous.proofKeySettings;
      this.nonce = previous.nonce;
      this.nonceSettings = previous.nonceSettings;
      this.tokens = previous.tokens;
      this.tokenSettings = previous.tokenSettings;
    }
  }

  /** Undefined when turned off (maxEntries 0). Rebuilt when its settings change: entries refer to issuer runtimes of a config. */
  verifiedTokens(config: TokensConfig): VerifiedTokenCache<VerifiedJwt> | undefined {
    const s = config.verifiedTokens;
    if (s.maxEntries === 0) return undefined;
    const id = JSON.stringify(s);
    if (!this.tokens || id !== this.tokenSettings) {
      this.tokens = new VerifiedTokenCache<VerifiedJwt>(s.maxEntries, s.maxBytes, s.ttl);
      this.tokenSettings = id;
    }
    return this.tokens;
  }

  private seen: TokensConfig | undefined;

  /** On a new config, drop key sets it no longer names (reloads must not accumulate them). */
  private sync(config: TokensConfig): void {
    if (config === this.seen) return;
    this.seen = config;
    const live = new Set<string>();
    for (const [n, c] of Object.entries(config.issuers)) live.add(keySetId(`tokens.issuers.${n}`, c, (c.discovery ?? (c.keys === undefined && c.jwksUri === undefined)) ? c.issuer : undefined));
    for (const [n, c] of Object.entries(config.clients)) live.add(keySetId(`tokens.clients.${n}`, c, undefined));
    for (const id of this.keySets.keys()) if (!live.has(id)) this.keySets.delete(id);
  }

  private keySet(name: string, source: KeySource, discoveryIssuer: string | undefined): KeySet {
    const id = keySetId(name, source, discoveryIssuer);
    let set = this.keySets.get(id);
    if (!set) {
      set = new KeySet(name, {
        ...(source.keys ? { staticKeys: source.keys } : {}),
        ...(source.jwksUri ? { jwksUri: source.jwksUri } : {}),
        ...(discoveryIssuer ? { discoveryIssuer } : {}),
        refreshMs: source.jwks.refresh,
        minRefreshMs: source.jwks.minRefresh,
        timeoutMs: source.jwks.timeout,
        maxBytes: source.jwks.maxBytes,
        maxKeys: source.jwks.maxKeys,
      });
      this.keySets.set(id, set);
    }
    return set;
  }

  issuer(config: TokensConfig, name: string): IssuerRuntime {
    this.sync(config);
    const c = config.issuers[name];
    if (!c) throw new Error(`tokens.issuers.${name} is not defined`);
    const discovery = c.discovery ?? (c.keys === undefined && c.jwksUri === undefined);
    const keys = this.keySet(`tokens.issuers.${name}`, c, discovery ? c.issuer : undefined);
    return { name, config: c, keys, algorithms: new Set(c.algorithms) };
  }

  client(config: TokensConfig, name: string): ClientRuntime {
    this.sync(config);
    const c = config.clients[name];
    if (!c) throw new Error(`tokens.clients.${name} is not defined`);
    return { name, issuer: c.issuer ?? name, config: c, keys: this.keySet(`tokens.clients.${name}`, c, undefined), algorithms: new Set(c.algorithms) };
  }

  proofKeyCache(config: TokensConfig): ProofKeyCache {
    const id = JSON.stringify(config.proofKeys);
    if (!this.proofKeys || id !== this.proofKeySettings) {
      this.proofKeys = new ProofKeyCache(config.proofKeys.maxEntries, config.proofKeys.maxBytes);
      this.proofKeySettings = id;
    }
    return this.proofKeys;
  }

  nonceMint(config: TokensConfig): NonceMint {
    const id = JSON.stringify(config.nonce);
    if (!this.nonce || id !== this.nonceSettings) {
      this.nonce = new NonceMint(process.env[config.nonce.secretEnv], config.nonce.window);
      this.nonceSettings = id;
    }
    return this.nonce;
  }
}

function keySetId(name: string, source: KeySource, discoveryIssuer: string | undefined): string {
  return JSON.stringify([name, source.keys ?? null, source.jwksUri ?? null, source.jwks, discoveryIssuer ?? null]);
}

