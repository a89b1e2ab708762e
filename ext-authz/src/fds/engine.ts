/**
 * The long-lived FDS component shared by every fds stage: the store, the
 * in-process cache of known-blocked subjects, the CIDR set, compiled rules
 * and metrics. Held by the fds capability's state; a reload that keeps the
 * store keeps the engine (and its Redis connection).
 */
import { readFileSync } from 'node:fs';
import type { LRUCache } from 'lru-cache';
import { byteLru, stringBytes } from '../resilience/byte-lru.js';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { FdsSettings } from './config.js';
import { CidrSet } from './cidr.js';
import { MemoryStore } from './store/memory-store.js';
import { RedisStore } from './store/redis-store.js';
import type { BlockRecord, Claim, CounterOp, EvaluateResult, FdsStore, PeekResult, SubjectRef, Watch } from './store/store.js';
import { compileRules, type CompiledRules } from './rules.js';
import { CircuitBreaker } from '../resilience/circuit-breaker.js';
import { TIMED_OUT, within } from '../resilience/within.js';
import type { SubjectKind } from './subjects.js';

export { BLOCKED_DENIAL } from './blocked.js';

/** prom-client metrics, created once per registry (engines come and go with reloads). */
export class FdsMetrics {
  readonly redisErrors: Counter<'op'>;
  readonly degraded: Counter<'mode'>;
  readonly blocksCreated: Counter<'kind' | 'source'>;
  readonly blockedChecks: Counter<'kind' | 'cached'>;
  readonly shadowBlocks: Counter<'kind' | 'rule'>;
  readonly active: Gauge;
  readonly cacheEntries: Gauge;
  readonly adminAuthFailures: Counter<'api' | 'why'>;
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
    this.shadowBlocks = new Counter({
      name: 'passgate_fds_shadow_blocks_total',
      help: 'Blocks a rule would have created from shadow (dry-run) routes or stages; none was created. By subject kind and rule',
      labelNames: ['kind', 'rule'],
      registers,
    });
    this.blockedChecks = new Counter({ name: 'passgate_fds_blocked_checks_total', help: 'Checks denied as blocked, by subject kind and whether the in-process cache answered', labelNames: ['kind', 'cached'], registers });
    this.adminAuthFailures = new Counter({
      name: 'passgate_admin_auth_failures_total',
      help: 'Admin API requests refused for a missing or wrong bearer token, by API and cause',
      labelNames: ['api', 'why'],
      registers,
    });
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

/** One set of metrics per registry (engines come and go with reloads; prom-client refuses a second registration). */
const metricsByRegistry = new WeakMap<Registry, FdsMetrics>();
export function fdsMetrics(registry: Registry): FdsMetrics {
  let m = metricsByRegistry.get(registry);
  if (m === undefined) {
    m = new FdsMetrics(registry);
    metricsByRegistry.set(registry, m);
  }
  return m;
}

export class FdsEngine {
  readonly store: FdsStore;
  private cache: LRUCache<string, BlockRecord> | undefined;
  /**
   * Every block this process has seen, kept until the block's own expiry:
   * consulted only while the store is failing (stale-if-error), so a subject
   * blocked before an outage stays blocked through it.
   */
  private known: LRUCache<string, BlockRecord>;
  private cidrs = new CidrSet([]);
  private cidrTimer: NodeJS.Timeout | undefined;
  private cidrLoading: Promise<void> | undefined;
  private cidrRetry: NodeJS.Timeout | undefined;
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
    this.known = makeKnown(settings);
    this.store.onEvent((e) => {
      if (e.type === 'unblock') this.forget(e.kind, e.subject);
      else if (e.type === 'cidr') void this.reloadCidrs();
      else {
        // The store answers again and unblocks may have been missed: start over from what it says.
        this.cache?.clear();
        this.known.clear();
        void this.reloadCidrs();
      }
    });
    metrics.engine = this;
    // First load once connected: loading earlier only logs a spurious "not writeable" error.
    void this.store.ready(settings.redis?.connectTimeoutMs ?? 1_000).then(() => this.reloadCidrs());
    this.cidrTimer = setInterval(() => void this.reloadCidrs(), settings.cidrRefreshMs);
    this.cidrTimer.unref();
  }

  /**
   * For settings that can change without reconnecting (rules, cache, token):
   * everything that can fail is computed now and the returned function
   * applies it (it cannot fail). Undefined when the store itself changed.
   */
  prepareUpdate(settings: FdsSettings): (() => void) | undefined {
    if (!sameStore(this.settings, settings)) return undefined;
    const token = resolveAdminToken(settings); // throws (rejecting the config) before anything changes
    const rules = compileRules(settings.rules);
    return () => {
      this.rules = rules;
      this.adminToken = token;
      if (
        settings.blockedCacheMs !== this.settings.blockedCacheMs ||
        settings.blockedCacheMax !== this.settings.blockedCacheMax ||
        settings.blockedCacheBytes !== this.settings.blockedCacheBytes
      ) {
        this.cache = makeCache(settings);
        // Known blocks outlive a cache resize: they answer while the store fails.
        const known = makeKnown(settings);
        for (const [k, v] of [...this.known.entries()].reverse()) if (v.expiresAt === null || v.expiresAt > Date.now()) known.set(k, v, ttlOf(v));
        this.known = known;
      }
      if (settings.cidrRefreshMs !== this.settings.cidrRefreshMs) {
        clearInterval(this.cidrTimer);
        this.cidrTimer = setInterval(() => void this.reloadCidrs(), settings.cidrRefreshMs);
        this.cidrTimer.unref();
      }
      this.settings = settings;
    };
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
        () => this.retryCidrsSoon(),
      )
      .finally(() => {
        this.cidrLoading = undefined;
      });
    return this.cidrLoading;
  }

  /** A failed reload (often the one a pub/sub change asked for) is tried again in a second, not only at the next refresh. */
  private retryCidrsSoon(): void {
    if (this.cidrRetry !== undefined || this.closed) return;
    this.cidrRetry = setTimeout(() => {
      this.cidrRetry = undefined;
      void this.reloadCidrs();
    }, 1000);
    this.cidrRetry.unref();
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
    const key = cacheKey(record.kind, record.subject);
    if (record.expiresAt === null || record.expiresAt > Date.now()) this.known.set(key, record, ttlOf(record));
    if (!this.cache) return;
    const ttl = record.expiresAt === null ? this.settings.blockedCacheMs : Math.min(this.settings.blockedCacheMs, record.expiresAt - Date.now());
    if (ttl > 0) this.cache.set(key, record, { ttl });
  }

  forget(kind: SubjectKind, subject: string): void {
    const key = cacheKey(kind, subject);
    this.cache?.delete(key);
    this.known.delete(key);
  }

  /** While the store fails: a block seen earlier that has not expired yet, for any of `subjects`. */
  staleBlock(subjects: readonly SubjectRef[]): BlockRecord | undefined {
    if (this.known.size === 0) return undefined;
    const now = Date.now();
    for (const s of subjects) {
      const r = this.known.get(cacheKey(s.kind, s.subject));
      if (r !== undefined && (r.expiresAt === null || r.expiresAt > now)) return r;
    }
    return undefined;
  }

  /** The store answered that none of `subjects` is blocked: drop what we remembered for them. */
  private confirmNotBlocked(subjects: readonly SubjectRef[]): void {
    if (this.known.size === 0) return;
    for (const s of subjects) this.known.delete(cacheKey(s.kind, s.subject));
  }

  get knownBlocks(): number {
    return this.known.size;
  }

  /**
   * The one store call of a Check. Bounded by `limitMs` as well as by the
   * Redis command timeout, so a Check whose deadline is shorter than the
   * timeout still gets the failure mode, not a late answer.
   */
  evaluate(check: readonly SubjectRef[], ops: readonly CounterOp[], limitMs: number, claims?: readonly Claim[], watches?: readonly Watch[]): Promise<EvaluateResult> {
    if (this.breaker && !this.breaker.allow()) {
      this.metrics.redisErrors.inc({ op: 'breaker_open' });
      return Promise.reject(new Error('Redis circuit open after consecutive failures; retrying shortly'));
    }
    // The store's answer is taken in here, in reply order, before any stage sees it: a Check of the same batch
    // that created a block after this one was answered must not have that block dropped by this one's
    // older "not blocked".
    const p = this.store.evaluate(check, ops, claims, watches).then((r) => this.evaluated(r, check), this.evaluateFailed);
    // Only Redis can be slow, and its command timeout bounds one command: race a timer only when the Check has
    // less time left, or on a cluster, where ioredis sends a command again to a failed node's successor (each
    // try with its own timeout) and a Check may need two calls: there the timeout bounds the whole call.
    if (this.store.kind === 'memory') return p;
    const redis = this.settings.redis!;
    const cluster = redis.mode === 'cluster';
    if (!cluster && limitMs >= redis.commandTimeoutMs) return p;
    const bound = cluster ? Math.min(limitMs, redis.commandTimeoutMs) : limitMs;
    return within(p, bound).then((r) => {
      if (r === TIMED_OUT)
        throw new Error(bound < limitMs ? `FDS store did not answer within fds.redis.commandTimeoutMs (${bound} ms)` : `FDS store did not answer within the ${bound} ms left before the Check deadline`);
      return r;
    });
  }

  /** Explain's read: blocks and claims, nothing written, nothing cached or counted (no breaker either: it is not traffic). */
  peek(check: readonly SubjectRef[], claims: readonly Claim[] | undefined, limitMs = this.settings.redis?.commandTimeoutMs ?? 1_000): Promise<PeekResult> {
    return within(this.store.peek(check, claims), limitMs).then((r) => {
      if (r === TIMED_OUT) throw new Error(`FDS store did not answer within ${limitMs} ms`);
      return r;
    });
  }

  private evaluated(r: EvaluateResult, check: readonly SubjectRef[]): EvaluateResult {
    this.breaker?.success();
    // None of the checked subjects is blocked now: what the outage cache remembered for them is over.
    if (r.blocked === undefined) this.confirmNotBlocked(check);
    if (r.wouldBlock !== undefined) {
      for (const c of r.wouldBlock) {
        this.metrics.shadowBlocks.inc({ kind: c.kind, rule: c.rule ?? '' });
        this.logger.info({ fds: 'shadow_block', kind: c.kind, subject: c.subject, rule: c.rule }, 'FDS rule would block a subject (shadow: no block created)');
      }
    }
    if (r.blocked) this.remember(r.blocked);
    for (const c of r.created) {
      this.metrics.blocksCreated.inc({ kind: c.kind, source: 'rule' });
      this.logger.info({ fds: 'block', kind: c.kind, subject: c.subject, rule: c.rule, offenseLevel: c.level, ttlMs: c.ttlMs }, 'FDS rule blocked a subject');
      this.remember(c);
    }
    return r;
  }

  private readonly evaluateFailed = (err: unknown): never => {
    this.breaker?.failure();
    throw err;
  };

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.cidrTimer);
    clearTimeout(this.cidrRetry);
    if (this.metrics.engine === this) this.metrics.engine = undefined;
    await this.store.close();
  }
}

function cacheKey(kind: string, subject: string): string {
  return `${kind}\u0000${subject}`;
}

function recordBytes(r: BlockRecord): number {
  return 160 + stringBytes(r.subject) + stringBytes(r.reason) + stringBytes(r.createdBy) + (r.rule === undefined ? 0 : stringBytes(r.rule));
}

function makeCache(settings: FdsSettings): LRUCache<string, BlockRecord> | undefined {
  return settings.blockedCacheMs > 0
    ? byteLru<string, BlockRecord>({ max: settings.blockedCacheMax, maxBytes: settings.blockedCacheBytes, ttl: settings.blockedCacheMs, sizeOf: recordBytes })
    : undefined;
}

function makeKnown(settings: FdsSettings): LRUCache<string, BlockRecord> {
  return byteLru<string, BlockRecord>({ max: settings.blockedCacheMax, maxBytes: settings.blockedCacheBytes, sizeOf: recordBytes });
}

/** A known block lives until its own expiry (a permanent one until unblocked or evicted). */
function ttlOf(r: BlockRecord): { ttl?: number } {
  return r.expiresAt === null ? {} : { ttl: Math.max(1, r.expiresAt - Date.now()) };
}

function sameStore(a: FdsSettings, b: FdsSettings): boolean {
  return a.store === b.store && JSON.stringify(a.redis) === JSON.stringify(b.redis);
}

/** A bad admin token source; the capability turns it into a ConfigError naming `key` (no import of config/load here: it would be a cycle). */
export class AdminTokenError extends Error {
  constructor(
    readonly key: string,
    readonly problems: readonly string[],
  ) {
    super(problems.join('; '));
    this.name = 'AdminTokenError';
  }
}

/** Shortest admin secret accepted from any source (inline, environment, file). */
export const MIN_ADMIN_TOKEN_CHARS = 16;

/**
 * The admin bearer token: inline, else the environment variable, else the
 * file. Undefined disables the admin API. Every source must give at least
 * 16 characters; a bad source is a ConfigError naming its key (exit 2 at
 * start, a rejected reload later).
 */
export function resolveAdminToken(settings: FdsSettings): Buffer | undefined {
  const a = settings.admin;
  if (a.token) return Buffer.from(a.token);
  const fromEnv = process.env[a.tokenEnv];
  if (fromEnv && fromEnv.trim() !== '') {
    const t = fromEnv.trim();
    if (t.length < MIN_ADMIN_TOKEN_CHARS) {
      throw new AdminTokenError('fds.admin.tokenEnv', [`fds.admin.tokenEnv: the token in $${a.tokenEnv} is ${t.length} characters; use at least ${MIN_ADMIN_TOKEN_CHARS}`]);
    }
    return Buffer.from(t);
  }
  if (a.tokenFile) {
    let text: string;
    try {
      text = readFileSync(a.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new AdminTokenError('fds.admin.tokenFile', [`fds.admin.tokenFile: cannot read ${a.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
    }
    if (text.length < MIN_ADMIN_TOKEN_CHARS) {
      throw new AdminTokenError('fds.admin.tokenFile', [`fds.admin.tokenFile: the token in ${a.tokenFile} is shorter than ${MIN_ADMIN_TOKEN_CHARS} characters`]);
    }
    return Buffer.from(text);
  }
  return undefined;
}
