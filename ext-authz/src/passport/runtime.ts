/**
 * The long-lived passport parts (key ring, issuer cache, source with its
 * cache and circuit breaker, relay providers), kept in the service registry
 * so they survive config reloads. A reload builds a new state; parts whose
 * config did not change are carried over, so caches stay warm and a reload
 * never silently rotates a generated key.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { PassportConfig, RelayProviderConfig } from './config.js';
import { loadKeyRing, type KeyRing } from './keys.js';
import { PassportIssuer } from './issuer.js';
import type { PassportSource } from './sources/source.js';
import { StaticSource } from './sources/static-source.js';
import { HttpSource } from './sources/http-source.js';
import { RelayProvider } from './relay-provider.js';
import type { ServiceRegistry } from '../stages/services.js';
import type { StageFactoryContext } from '../stages/stage.js';

const PASSPORT_RUNTIME = 'passport.runtime';

export interface PassportState {
  readonly config: PassportConfig;
  readonly ring: KeyRing;
  readonly issuer: PassportIssuer;
  readonly source: PassportSource;
  readonly relays: ReadonlyMap<string, RelayProvider>;
}

export class PassportMetrics {
  readonly signatures: Counter;
  readonly sourceRequests: Counter<'result'>;
  readonly sourceCircuitOpen: Gauge;
  readonly relayRequests: Counter<'provider' | 'result'>;
  constructor(registry: Registry) {
    this.signatures = new Counter({ name: 'passgate_passport_signatures_total', help: 'Passports signed (cache misses)', registers: [registry] });
    this.sourceRequests = new Counter({
      name: 'passgate_passport_source_requests_total',
      help: 'Passport source lookups that left the cache, by result (found, not_found, error, stale, circuit_open)',
      labelNames: ['result'] as const,
      registers: [registry],
    });
    this.sourceCircuitOpen = new Gauge({ name: 'passgate_passport_source_circuit_open', help: '1 while the auth service circuit is open', registers: [registry] });
    this.relayRequests = new Counter({
      name: 'passgate_relay_requests_total',
      help: 'Relay provider lookups that left the cache, by provider and result',
      labelNames: ['provider', 'result'] as const,
      registers: [registry],
    });
  }
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const issuerSettings = (c: PassportConfig) => [c.issuer, c.audience, c.ttlSeconds, c.reuseFraction, c.cacheEntries, c.limits.maxHeaderBytes, c.authLevels];
/** Old parts may still serve Checks running on the previous table; close them after those are surely done. */
const RETIRE_AFTER_MS = 30_000;

export class PassportRuntime {
  private current: PassportState | undefined;

  constructor(private readonly metrics: PassportMetrics) {}

  get state(): PassportState | undefined {
    return this.current;
  }

  /** The state for this exact config object, building it when needed. Throws KeyLoadError on bad keys. */
  stateFor(config: PassportConfig): PassportState {
    if (this.current?.config === config) return this.current;
    return this.update(config);
  }

  update(config: PassportConfig): PassportState {
    const prev = this.current;
    const ring = loadKeyRing(config.keys, prev?.ring);
    // An unrelated reload must not flush every cached Passport (a signing burst): keep the issuer when nothing it signs with changed.
    const issuer =
      prev && prev.ring.etag === ring.etag && prev.ring.active.kid === ring.active.kid && same(issuerSettings(prev.config), issuerSettings(config))
        ? prev.issuer
        : new PassportIssuer(
            ring,
            config.issuer,
            config.audience,
            config.reuseFraction,
            config.cacheEntries,
            config.limits.maxHeaderBytes,
            () => this.metrics.signatures.inc(),
            config.cacheBytes,
          );
    const source = prev && same(prev.config.source, config.source) && same(prev.config.limits, config.limits) ? prev.source : this.buildSource(config);
    const relays = new Map<string, RelayProvider>();
    for (const [name, p] of Object.entries(config.relay.providers)) {
      const old = prev?.relays.get(name);
      relays.set(name, old && same(old.config, p) ? old : this.buildRelay(name, p));
    }
    const next: PassportState = { config, ring, issuer, source, relays };
    this.current = next;
    if (prev) this.retire(prev, next);
    return next;
  }

  private buildSource(config: PassportConfig): PassportSource {
    const m = this.metrics;
    if (config.source.type === 'static') return new StaticSource(config.source);
    return new HttpSource(config.source, config.limits, {
      onBreakerChange: (s) => m.sourceCircuitOpen.set(s === 'open' ? 1 : 0),
      onFetch: (r) => m.sourceRequests.inc({ result: r }),
    });
  }

  private buildRelay(name: string, config: RelayProviderConfig): RelayProvider {
    return new RelayProvider(name, config, { onFetch: (r) => this.metrics.relayRequests.inc({ provider: name, result: r }) });
  }

  private retire(prev: PassportState, next: PassportState): void {
    const old: Array<{ close?(): void }> = [];
    if (prev.source !== next.source) old.push(prev.source);
    for (const [name, r] of prev.relays) if (next.relays.get(name) !== r) old.push(r);
    if (old.length === 0) return;
    setTimeout(() => old.forEach((o) => o.close?.()), RETIRE_AFTER_MS).unref();
  }

  close(): void {
    const s = this.current;
    this.current = undefined;
    if (!s) return;
    s.source.close?.();
    for (const r of s.relays.values()) r.close();
  }
}

export function passportRuntime(services: ServiceRegistry, registry: Registry): PassportRuntime {
  return services.get(PASSPORT_RUNTIME, () => new PassportRuntime(new PassportMetrics(registry)));
}

/** The passport parts a stage being built uses (its validate() already required the section). */
export function passportStateFor(f: StageFactoryContext, stage: string): PassportState {
  const section = f.config.passport;
  if (section === undefined) throw new Error(`${f.path}: the ${stage} stage needs the top-level "passport" section`);
  return passportRuntime(f.services, f.metrics.registry).stateFor(section);
}
