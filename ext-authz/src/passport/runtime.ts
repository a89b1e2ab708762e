/**
 * The long-lived passport parts (key ring, issuer cache, source with its
 * cache and circuit breaker, relay providers). A reload builds a new state;
 * parts whose config did not change are carried over from the serving one,
 * so caches stay warm and a reload never silently rotates a generated key.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { PassportConfig, RelayProviderConfig } from './config.js';
import { loadKeyRing, type KeyRing } from './keys.js';
import { PassportIssuer } from './issuer.js';
import type { PassportSource } from './sources/source.js';
import { StaticSource } from './sources/static-source.js';
import { HttpSource } from './sources/http-source.js';
import { RelayProvider } from './relay-provider.js';
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

/** One set of metrics per registry (states come and go with reloads; prom-client refuses a second registration). */
const metricsByRegistry = new WeakMap<Registry, PassportMetrics>();
export function passportMetrics(registry: Registry): PassportMetrics {
  let m = metricsByRegistry.get(registry);
  if (m === undefined) {
    m = new PassportMetrics(registry);
    metricsByRegistry.set(registry, m);
  }
  return m;
}

/**
 * Builds the state for `config`, taking over from `prev` (never changing it)
 * every part whose config did not change. Throws a ConfigError naming passport.keys on bad keys.
 */
export function buildPassportState(config: PassportConfig, prev: PassportState | undefined, metrics: PassportMetrics): PassportState {
  const ring = loadKeyRing(config.keys, prev?.ring);
  // An unrelated reload must not flush every cached Passport (a signing burst): keep the issuer when nothing it signs with changed.
  const issuer =
    prev && prev.ring.etag === ring.etag && prev.ring.active.kid === ring.active.kid && same(issuerSettings(prev.config), issuerSettings(config))
      ? prev.issuer
      : new PassportIssuer(ring, config.issuer, config.audience, config.reuseFraction, config.cacheEntries, config.limits.maxHeaderBytes, () =>
          metrics.signatures.inc(),
          config.cacheBytes,
        );
  const source = prev && same(prev.config.source, config.source) && same(prev.config.limits, config.limits) ? prev.source : buildSource(config, metrics);
  const relays = new Map<string, RelayProvider>();
  for (const [name, p] of Object.entries(config.relay.providers)) {
    const old = prev?.relays.get(name);
    relays.set(name, old && same(old.config, p) ? old : buildRelay(name, p, metrics));
  }
  return { config, ring, issuer, source, relays };
}

function buildSource(config: PassportConfig, m: PassportMetrics): PassportSource {
  if (config.source.type === 'static') return new StaticSource(config.source);
  return new HttpSource(config.source, config.limits, {
    onBreakerChange: (s) => m.sourceCircuitOpen.set(s === 'open' ? 1 : 0),
    onFetch: (r) => m.sourceRequests.inc({ result: r }),
  });
}

function buildRelay(name: string, config: RelayProviderConfig, metrics: PassportMetrics): RelayProvider {
  return new RelayProvider(name, config, { onFetch: (r) => metrics.relayRequests.inc({ provider: name, result: r }) });
}

/** The parts of `state` that `keep` does not hold (so closing them cannot hurt `keep`). */
function partsNotIn(state: PassportState, keep: PassportState | undefined): Array<{ close?(): void }> {
  const out: Array<{ close?(): void }> = [];
  if (state.source !== keep?.source) out.push(state.source);
  for (const [name, r] of state.relays) if (keep?.relays.get(name) !== r) out.push(r);
  return out;
}

/** `prev` was replaced by `next`: close what `next` did not take over, once in-flight Checks are done with it. */
export function retirePassportState(prev: PassportState, next: PassportState | undefined): void {
  const old = partsNotIn(prev, next);
  if (old.length === 0) return;
  setTimeout(() => old.forEach((o) => o.close?.()), RETIRE_AFTER_MS).unref();
}

/** `state` was never committed (the config was rejected): close what it opened that `prev` does not hold. */
export function discardPassportState(state: PassportState, prev: PassportState | undefined): void {
  for (const part of partsNotIn(state, prev)) part.close?.();
}

export function closePassportState(state: PassportState): void {
  state.source.close?.();
  for (const r of state.relays.values()) r.close();
}

/** The passport parts a stage being built uses (its validate() already required the section). */
export function requirePassportState(f: StageFactoryContext<PassportState | undefined>, stage: string): PassportState {
  if (f.state === undefined) throw new Error(`${f.path}: the ${stage} stage needs the top-level "passport" section`);
  return f.state;
}
