/**
 * One relay provider: fetches a common fact once at the gateway (e.g. "has
 * this user accepted the current terms") from an HTTP API, cached per user
 * (and device, when the URL names it) with a TTL.
 */
import type { Identity } from '../pipeline/context.js';
import type { RelayProviderConfig } from './config.js';
import { checkClaimValue } from './claims.js';
import { CachedHttpLookup, InvalidAnswer, type LookupResult } from './sources/cached-http.js';

export type RelayValue = string | number | boolean;

export class RelayProvider {
  private readonly lookup: CachedHttpLookup<RelayValue>;
  private readonly usesUser: boolean;
  private readonly usesDevice: boolean;
  /** Upstream header name: `x-passgate-relay-<name>`. */
  readonly header: string;

  constructor(
    readonly name: string,
    readonly config: RelayProviderConfig,
    hooks: { onFetch?: (result: string) => void; now?: () => number } = {},
  ) {
    this.header = `x-passgate-relay-${name}`;
    this.usesUser = config.url.includes('{user}');
    this.usesDevice = config.url.includes('{device}');
    const field = config.field;
    this.lookup = new CachedHttpLookup<RelayValue>({
      name: `relay provider "${name}"`,
      maxEntries: config.maxEntries,
      maxBytes: config.cacheBytes,
      ttlMs: config.ttlSeconds * 1000,
      negativeTtlMs: 0,
      staleMs: 0,
      timeoutMs: config.timeoutMs,
      maxResponseBytes: 16_384,
      headers: config.headers,
      failureThreshold: config.circuitBreaker.failureThreshold,
      openMs: config.circuitBreaker.openMs,
      notFoundOn404: false,
      ...(hooks.onFetch ? { onFetch: hooks.onFetch } : {}),
      ...(hooks.now ? { now: hooks.now } : {}),
      parse: (body) => {
        if (typeof body !== 'object' || body === null || Array.isArray(body)) return new InvalidAnswer('answer is not a JSON object');
        const v = (body as Record<string, unknown>)[field];
        if (typeof v === 'boolean') return v;
        if (typeof v === 'number' && Number.isFinite(v)) return v;
        if (typeof v === 'string') {
          const why = checkClaimValue(v, config.maxValueLength);
          return why === undefined ? v : new InvalidAnswer(`field "${field}" ${why}`);
        }
        return new InvalidAnswer(`field "${field}" is missing or not a string, number or boolean`);
      },
    });
  }

  /** Whether this provider can answer for the request (it needs a user or device it does not have). */
  canServe(identity: Identity | undefined): boolean {
    if (this.usesUser && identity === undefined) return false;
    if (this.usesDevice && identity?.deviceId === undefined) return false;
    return true;
  }

  get(identity: Identity | undefined, remainingMs: number): LookupResult<RelayValue> | Promise<LookupResult<RelayValue>> {
    const key = `${this.usesUser ? identity!.subject : ''}\u0000${this.usesDevice ? identity!.deviceId! : ''}`;
    return this.lookup.get(key, remainingMs, this.urlFor, identity);
  }

  private readonly urlFor = (identity: Identity | undefined): string => {
    let url = this.config.url;
    if (this.usesUser) url = url.replaceAll('{user}', encodeURIComponent(identity!.subject));
    if (this.usesDevice) url = url.replaceAll('{device}', encodeURIComponent(identity!.deviceId!));
    return url;
  };

  close(): void {
    this.lookup.close();
  }
}
