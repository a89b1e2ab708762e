/**
 * Asks the auth/user service for the user and device behind an identity:
 *   GET {url}?subject=<s>&source=<identity source>[&device=<id>]
 *   200 {"user": {"id", "roles"?, "scopes"?, "created"?, "expires"?},
 *        "device"?: {"id", "type"?, "os"?, "appVersion"?, "created"?, "expires"?}}
 *   404 = no such user (cached for negativeTtlSeconds)
 * Anything else (5xx, garbage, a field over the limits, timeout) is a fault:
 * stale facts are served within staleIfErrorSeconds, else the stage fails.
 */
import type { Identity } from '../../pipeline/context.js';
import type { HttpSourceConfig, PassportConfig } from '../config.js';
import { checkClaimValue } from '../claims.js';
import { CachedHttpLookup, InvalidAnswer, type LookupResult } from './cached-http.js';
import { factsFingerprint, type DeviceFacts, type PassportSource, type SourceFacts, type UserFacts } from './source.js';
import type { BreakerState } from '../../resilience/circuit-breaker.js';

type Limits = PassportConfig['limits'];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function time(v: unknown, where: string): number | undefined | InvalidAnswer {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 9_999_999_999) return new InvalidAnswer(`${where} must be epoch seconds`);
  return v;
}

function strings(v: unknown, where: string, max: number, limits: Limits): readonly string[] | InvalidAnswer {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) return new InvalidAnswer(`${where} must be an array of strings`);
  if (v.length > max) return new InvalidAnswer(`${where} has ${v.length} entries, over the limit of ${max}`);
  for (let i = 0; i < v.length; i++) {
    const why = checkClaimValue(v[i], limits.maxValueLength);
    if (why !== undefined) return new InvalidAnswer(`${where}[${i}] ${why}`);
  }
  return v as string[];
}

/** Validates the auth service's answer against the Passport limits. */
function parseFacts(body: unknown, limits: Limits): SourceFacts | InvalidAnswer {
  if (!isObject(body) || !isObject(body['user'])) return new InvalidAnswer('answer has no "user" object');
  const u = body['user'];
  const idWhy = checkClaimValue(u['id'], limits.maxValueLength);
  if (idWhy !== undefined) return new InvalidAnswer(`user.id ${idWhy}`);
  const roles = strings(u['roles'], 'user.roles', limits.maxRoles, limits);
  if (roles instanceof InvalidAnswer) return roles;
  const scopes = strings(u['scopes'], 'user.scopes', limits.maxScopes, limits);
  if (scopes instanceof InvalidAnswer) return scopes;
  const created = time(u['created'], 'user.created');
  if (created instanceof InvalidAnswer) return created;
  const expires = time(u['expires'], 'user.expires');
  if (expires instanceof InvalidAnswer) return expires;
  const user: UserFacts = {
    id: u['id'] as string,
    roles,
    scopes,
    ...(created !== undefined ? { created } : {}),
    ...(expires !== undefined ? { expires } : {}),
  };
  let device: DeviceFacts | undefined;
  const d = body['device'];
  if (d !== undefined && d !== null) {
    if (!isObject(d)) return new InvalidAnswer('"device" must be an object');
    const fields: Record<string, string> = {};
    for (const f of ['id', 'type', 'os', 'appVersion'] as const) {
      const v = d[f];
      if (v === undefined || v === null) {
        if (f === 'id') return new InvalidAnswer('device.id is required when device is present');
        continue;
      }
      const why = checkClaimValue(v, limits.maxValueLength);
      if (why !== undefined) return new InvalidAnswer(`device.${f} ${why}`);
      fields[f] = v as string;
    }
    const dc = time(d['created'], 'device.created');
    if (dc instanceof InvalidAnswer) return dc;
    const de = time(d['expires'], 'device.expires');
    if (de instanceof InvalidAnswer) return de;
    device = {
      id: fields['id']!,
      type: fields['type'] ?? 'unknown',
      ...(fields['os'] !== undefined ? { os: fields['os'] } : {}),
      ...(fields['appVersion'] !== undefined ? { appVersion: fields['appVersion'] } : {}),
      ...(dc !== undefined ? { created: dc } : {}),
      ...(de !== undefined ? { expires: de } : {}),
    };
  }
  return { user, ...(device ? { device } : {}), fingerprint: factsFingerprint(user, device), fetchedAt: Math.floor(Date.now() / 1000) };
}

export class HttpSource implements PassportSource {
  readonly type = 'http' as const;
  private readonly lookupCache: CachedHttpLookup<SourceFacts>;
  private readonly base: string;

  constructor(
    readonly config: HttpSourceConfig,
    limits: Limits,
    hooks: { onBreakerChange?: (s: BreakerState) => void; onFetch?: (r: string) => void; now?: () => number } = {},
  ) {
    this.base = config.url + (config.url.includes('?') ? '&' : '?');
    this.lookupCache = new CachedHttpLookup<SourceFacts>({
      name: `passport source ${new URL(config.url).host}`,
      maxEntries: config.cache.maxEntries,
      maxBytes: config.cache.maxBytes,
      ttlMs: config.cache.ttlSeconds * 1000,
      negativeTtlMs: config.cache.negativeTtlSeconds * 1000,
      staleMs: config.cache.staleIfErrorSeconds * 1000,
      timeoutMs: config.timeoutMs,
      maxResponseBytes: config.maxResponseBytes,
      headers: config.headers,
      failureThreshold: config.circuitBreaker.failureThreshold,
      openMs: config.circuitBreaker.openMs,
      notFoundOn404: true,
      parse: (body) => parseFacts(body, limits),
      ...(hooks.onBreakerChange ? { onBreakerChange: hooks.onBreakerChange } : {}),
      ...(hooks.onFetch ? { onFetch: hooks.onFetch } : {}),
      ...(hooks.now ? { now: hooks.now } : {}),
    });
  }

  lookup(identity: Identity, remainingMs: number): LookupResult<SourceFacts> | Promise<LookupResult<SourceFacts>> {
    const device = identity.deviceId ?? '';
    const key = `${identity.source}\u0000${identity.subject}\u0000${device}`;
    return this.lookupCache.get(key, remainingMs, this.urlFor, identity);
  }

  private readonly urlFor = (identity: Identity): string => {
    let url = `${this.base}subject=${encodeURIComponent(identity.subject)}&source=${encodeURIComponent(identity.source)}`;
    if (identity.deviceId !== undefined) url += `&device=${encodeURIComponent(identity.deviceId)}`;
    return url;
  };

  close(): void {
    this.lookupCache.close();
  }
}
