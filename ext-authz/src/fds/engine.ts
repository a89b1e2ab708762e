/**
 * The long-lived FDS component shared by every fds stage: the store, the
 * in-process cache of known-blocked subjects, the CIDR set, compiled rules
 * and metrics. Lives in the service registry under FDS_ENGINE so it survives
 * config reloads.
 */
import { readFileSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { FdsSettings } from './config.js';
import { CidrSet } from './cidr.js';
import { MemoryStore } from './store/memory-store.js';
import { RedisStore } from './store/redis-store.js';
import type { BlockRecord, CounterOp, EvaluateResult, FdsStore, SubjectRef } from './store/store.js';
import { compileRules, type CompiledRules } from './rules.js';
import { CircuitBreaker } from '../resilience/circuit-breaker.js';
import { TIMED_OUT, within } from '../resilience/within.js';
import type { SubjectKind } from './subjects.js';

export const FDS_ENGINE = 'fds.engine';
export const FDS_METRICS = 'fds.metrics';

/** prom-client metrics, created once per registry (engines come and go with reloads). */
export class FdsMetrics {
  readonly redisErrors: Counter<'op'>;
  readonly degraded: Counter<'mode'>;
  readonly blocksCreated: Counter<'kind' | 'source'>;
  readonly blockedChecks: Counter<'kind' | 'cached'>;
  readonly active: Gauge;
  readonly cacheEntries: Gauge;
  engine: FdsEngine | undefined;

  constructor(registry: Registry) {
    const registers = [registry];
    this.redisErrors = new Counter({ name: 'passgate_fds_redis_errors_total', help: 'FDS Redis commands that failed or timed out, by operation', labelNames: ['op'], registers });
    this.degraded = new Counter({
      name: 'passgate_fds_degraded_decisions_total',
      help: 'Checks decided without FDS because its store was unavailable, by the failure mode applied',
      labelNames: ['mode'],
      registers,
    });
    this.blocksCreated = new Counter({ name: 'passgate_fds_blocks_created_total', help: 'Blocks created, by subject kind and source (rule, admin)', labelNames: ['kind', 'source'], registers });
    this.blockedChecks = new Counter({ name: 'passgate_fds_blocked_checks_total', help: 'Checks denied as blocked, by subject kind and whether the in-process cache answered', labelNames: ['kind', 'cached'], registers });
    const self = this;
    let last = 0;
    let lastAt = 0;
    this.active = new Gauge({
      name: 'passgate_fds_blocks_active',
      help: 'Blocks currently in force (exact subjects and CIDR ranges) in the FDS store',
      registers,
      async collect() {
        try {
          // Counting pages through SCAN: at most every 30 s, however often Prometheus scrapes.
          if (self.engine && Date.now() - lastAt >= 30_000) {
            last = await self.engine.store.countActive();
            lastAt = Date.now();
          }
        } catch {
          // Keep the last known value while the store is unreachable; the error counter shows why.
        }
        this.set(last);
      },
    });
    this.cacheEntries = new Gauge({
      name: 'passgate_fds_blocked_cache_entries',
      help: 'Known-blocked subjects cached in this process',
      registers,
      collect() {
        this.set(self.engine?.cacheSize ?? 0);
      },
    });
  }
}

/** A stable reference to the current engine (see engineFor); closing it closes the engine. */
export class FdsHandle {
  constructor(public engine: FdsEngine) {}

  /** Puts `next` in service, then closes the previous engine. */
  async swap(next: FdsEngine): Promise<void> {
    const old = this.engine;
    this.engine = next;
    await old.close();
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}

export const BLOCKED_DENIAL = Object.freeze({ status: 403 as const, reason: 'blocked' });

export class FdsEngine {
  readonly store: FdsStore;
  private cache: LRUCache<string, BlockRecord> | undefined;
  private cidrs = new CidrSet([]);
  private cidrTimer: NodeJS.Timeout | undefined;
  private cidrLoading: Promise<void> | undefined;
  rules: CompiledRules;
  settings: FdsSettings;
  adminToken: Buffer | undefined;
  private closed = false;
  /** Over the Check script, Redis only: fail fast while it is down instead of waiting out a timeout per Check. */
  private readonly breaker: CircuitBreaker | undefined;

  constructor(
    settings: FdsSettings,
    readonly logger: Logger,
    readonly metrics: FdsMetrics,
  ) {
    this.settings = settings;
    this.rules = compileRules(settings.rules);
    this.adminToken = resolveAdminToken(settings);
    const useRedis = (settings.store ?? (settings.redis ? 'redis' : 'memory')) === 'redis';
    this.store = useRedis
      ? new RedisStore(settings.redis!, logger, { onError: (op) => metrics.redisErrors.inc({ op }) })
      : new MemoryStore();
    const b = useRedis ? settings.redis?.breaker : undefined;
    this.breaker = b ? new CircuitBreaker(b.failures, b.openMs) : undefined;
    this.cache = makeCache(settings);
    this.store.onEvent((e) => {
      if (e.type === 'unblock') this.cache?.delete(cacheKey(e.kind, e.subject));
      else if (e.type === 'cidr') void this.reloadCidrs();
      else {
        this.cache?.clear();
        void this.reloadCidrs();
      }
    });
    metrics.engine = this;
    // First load once connected: loading earlier only logs a spurious "not writeable" error.
    void this.store.ready(settings.redis?.connectTimeoutMs ?? 1_000).then(() => this.reloadCidrs());
    this.cidrTimer = setInterval(() => void this.reloadCidrs(), settings.cidrRefreshMs);
    this.cidrTimer.unref();
  }

  /** Settings that can change without reconnecting (rules, cache, token); false when the store itself changed. */
  update(settings: FdsSettings): boolean {
    if (!sameStore(this.settings, settings)) return false;
    const token = resolveAdminToken(settings); // throws (rejecting the reload) before anything changes
    this.rules = compileRules(settings.rules);
    this.adminToken = token;
    if (settings.blockedCacheMs !== this.settings.blockedCacheMs || settings.blockedCacheMax !== this.settings.blockedCacheMax) this.cache = makeCache(settings);
    if (settings.cidrRefreshMs !== this.settings.cidrRefreshMs) {
      clearInterval(this.cidrTimer);
      this.cidrTimer = setInterval(() => void this.reloadCidrs(), settings.cidrRefreshMs);
      this.cidrTimer.unref();
    }
    this.settings = settings;
    return true;
  }

  get cacheSize(): number {
    return this.cache?.size ?? 0;
  }

  /** Reloads the CIDR list; on failure the previous list stays (a stale list beats an empty one). */
  reloadCidrs(): Promise<void> {
    if (this.closed) return Promise.resolve();
    // Coalesce: a burst of pub/sub messages costs one HGETALL.
    this.cidrLoading ??= this.store
      .loadCidrs()
      .then(
        (records) => {
          this.cidrs = new CidrSet(records);
        },
        () => undefined,
      )
      .finally(() => {
        this.cidrLoading = undefined;
      });
    return this.cidrLoading;
  }

  /** In-process answers only (no I/O): a cached block, or a CIDR range for ips. */
  cached(kind: SubjectKind, subject: string): BlockRecord | undefined {
    if (kind === 'ip') {
      const r = this.cidrs.match(subject);
      if (r) return r;
    }
    const cache = this.cache;
    // Nothing blocked is known (the usual case): skip building the key.
    return cache === undefined || cache.size === 0 ? undefined : cache.get(cacheKey(kind, subject));
  }

  remember(record: BlockRecord): void {
    if (!this.cache) return;
    const ttl = record.expiresAt === null ? this.settings.blockedCacheMs : Math.min(this.settings.blockedCacheMs, record.expiresAt - Date.now());
    if (ttl > 0) this.cache.set(cacheKey(record.kind, record.subject), record, { ttl });
  }

  forget(kind: SubjectKind, subject: string): void {
    this.cache?.delete(cacheKey(kind, subject));
  }

  /**
   * The one store call of a Check. Bounded by `limitMs` as well as by the
   * Redis command timeout, so a Check whose deadline is shorter than the
   * timeout still gets the failure mode, not a late answer.
   */
  evaluate(check: readonly SubjectRef[], ops: readonly CounterOp[], limitMs: number): Promise<EvaluateResult> {
    if (this.breaker && !this.breaker.allow()) {
      this.metrics.redisErrors.inc({ op: 'breaker_open' });
      return Promise.reject(new Error('Redis circuit open after consecutive failures; retrying shortly'));
    }
    const p = this.store.evaluate(check, ops).then(this.evaluated, this.evaluateFailed);
    // Only Redis can be slow, and its command timeout bounds it: race a timer only when the Check has less time left.
    if (this.store.kind === 'memory' || limitMs >= this.settings.redis!.commandTimeoutMs) return p;
    return within(p, limitMs).then((r) => {
      if (r === TIMED_OUT) throw new Error(`FDS store did not answer within the ${limitMs} ms left before the Check deadline`);
      return r;
    });
  }

  // Created once per engine, not per Check.
  private readonly evaluated = (r: EvaluateResult): EvaluateResult => {
    this.breaker?.success();
    if (r.blocked) this.remember(r.blocked);
    for (const c of r.created) {
      this.metrics.blocksCreated.inc({ kind: c.kind, source: 'rule' });
      this.logger.info({ fds: 'block', kind: c.kind, subject: c.subject, rule: c.rule, offenseLevel: c.level, ttlMs: c.ttlMs }, 'FDS rule blocked a subject');
      this.remember(c);
    }
    return r;
  };

  private readonly evaluateFailed = (err: unknown): never => {
    this.breaker?.failure();
    throw err;
  };

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.cidrTimer);
    if (this.metrics.engine === this) this.metrics.engine = undefined;
    await this.store.close();
  }
}

function cacheKey(kind: string, subject: string): string {
  return `${kind}\u0000${subject}`;
}

function makeCache(settings: FdsSettings): LRUCache<string, BlockRecord> | undefined {
  return settings.blockedCacheMs > 0 ? new LRUCache<string, BlockRecord>({ max: settings.blockedCacheMax, ttl: settings.blockedCacheMs }) : undefined;
}

function sameStore(a: FdsSettings, b: FdsSettings): boolean {
  return a.store === b.store && JSON.stringify(a.redis) === JSON.stringify(b.redis);
}

/** The admin bearer token: inline, else the environment variable, else the file. Undefined disables the admin API. */
export function resolveAdminToken(settings: FdsSettings): Buffer | undefined {
  const a = settings.admin;
  if (a.token) return Buffer.from(a.token);
  const fromEnv = process.env[a.tokenEnv];
  if (fromEnv && fromEnv.trim() !== '') return Buffer.from(fromEnv.trim());
  if (a.tokenFile) {
    let text: string;
    try {
      text = readFileSync(a.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new Error(`fds.admin.tokenFile: cannot read ${a.tokenFile}: ${(err as Error).message}`);
    }
    if (text.length < 16) throw new Error(`fds.admin.tokenFile: the token in ${a.tokenFile} is shorter than 16 characters`);
    return Buffer.from(text);
  }
  return undefined;
}
