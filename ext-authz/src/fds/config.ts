/**
 * The `fds` section of the config (owned by the fds capability): where block
 * lists and counters live (memory or Redis), how the client IP is found, the
 * detection rules and the admin API token.
 */
import { z } from 'zod';
import { exemptSchema } from './exempt.js';
import { SUBJECT_KINDS } from './subjects.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** `1500`, `"1500ms"`, `"90s"`, `"15m"`, `"1h"`, `"7d"` → milliseconds; undefined when malformed. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  if (typeof value !== 'string') return undefined;
  const m = DURATION.exec(value.trim());
  if (!m) return /^\d+$/.test(value.trim()) ? Number(value.trim()) : undefined;
  return Math.round(Number(m[1]) * UNITS[m[2]!]!);
}

export const MIN_BLOCK_TTL_MS = 1000;
export const MAX_BLOCK_TTL_MS = 365 * 86_400_000;

/**
 * The TTL of a block made by hand (admin API and CLI share it): a duration, or `none` / null for a block
 * until unblocked. The error names `field` as the caller spells it (`ttl`, `--ttl`).
 */
export function blockTtl(v: unknown, field: string): { ms: number | null } | { error: string } {
  if (v === null || v === 'none') return { ms: null };
  const ms = parseDuration(v);
  if (ms === undefined) return { error: `${field} "${String(v)}" is not a duration; write e.g. 30s, 15m, 1h, 7d, or "none"` };
  if (ms < MIN_BLOCK_TTL_MS || ms > MAX_BLOCK_TTL_MS)
    return { error: `${field} ${String(v)} is out of range; must be between ${formatDuration(MIN_BLOCK_TTL_MS)} and ${formatDuration(MAX_BLOCK_TTL_MS)}, or "none"` };
  return { ms };
}

/** A duration field with bounds, so an absurd value is a startup error naming the key. */
export function duration(minMs: number, maxMs: number) {
  return z.union([z.number(), z.string()]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `"${String(v)}" is not a duration; write e.g. 500ms, 60s, 15m, 1h, 7d or a number of ms` });
      return z.NEVER;
    }
    if (ms < minMs || ms > maxMs) {
      ctx.addIssue({ code: 'custom', message: `${String(v)} is out of range; must be between ${formatDuration(minMs)} and ${formatDuration(maxMs)}` });
      return z.NEVER;
    }
    return ms;
  });
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const hostPort = z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) });

const redisSchema = z
  .strictObject({
    mode: z.enum(['single', 'sentinel', 'cluster']).default('single'),
    /** single: `redis://[:password@]host:port/db` (or rediss://). */
    url: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').optional(),
    /** cluster: seed nodes. */
    nodes: z.array(hostPort).min(1).optional(),
    /** sentinel: sentinel addresses and the master group name. */
    sentinels: z.array(hostPort).min(1).optional(),
    name: z.string().min(1).optional(),
    username: z.string().optional(),
    password: z.string().optional(),
    /** Name of an environment variable holding the password (keeps secrets out of the file). */
    passwordEnv: z.string().optional(),
    tls: z.boolean().default(false),
    db: z.number().int().min(0).max(15).default(0),
    /** Every key starts with this, then the hash tag: `passgate:fds:{fds}:b:ip:1.2.3.4`. */
    keyPrefix: z.string().regex(/^[^{}\s]*$/, 'must not contain braces or spaces (the hash tag is added after it)').default('passgate:fds:'),
    /** The hash tag of the keys every replica shares (CIDR ranges, event channel), and of every key in the single-tag layout. */
    hashTag: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'use letters, digits, _ . : -').default('fds'),
    /**
     * per-subject: each subject's keys have their own hash tag (`{user:alice}`), so they spread over a cluster's
     * masters; single-tag: every key under `{hashTag}` (one slot: the layout before this option). Default:
     * per-subject in cluster mode, single-tag in single and Sentinel mode (one server holds every key there anyway).
     */
    keyLayout: z.enum(['per-subject', 'single-tag']).optional(),
    /**
     * ioredis auto-pipelining of the Check connection (commands issued in one event-loop tick go out as one
     * write). Default on: on the h2 transport the full chain measured 1.02–1.20x the throughput of off over
     * three runs of interleaved rounds (figures in docs/fds.md); on a cluster ioredis groups per node.
     */
    autoPipelining: z.boolean().optional(),
    /** Bound on every Redis command; the route's failure mode applies past it. */
    commandTimeoutMs: z.number().int().min(1).max(5000).default(50),
    /**
     * Commands that may wait on Redis at once for sessions, login flows, locks, devices and admin calls:
     * a command that timed out stays queued until Redis answers, so on a hung Redis each Check with a
     * session cookie would leave one behind. Past the bound such calls fail at once (the route's failure
     * mode). Check scripts are held back by the breaker instead.
     */
    maxBacklog: z.number().int().min(10).max(1_000_000).default(2_000),
    connectTimeoutMs: z.number().int().min(10).max(60_000).default(1000),
    /** Reconnect backoff: min(attempt × base, max). */
    reconnectBaseMs: z.number().int().min(1).max(60_000).default(100),
    reconnectMaxMs: z.number().int().min(1).max(600_000).default(2000),
    /**
     * After `failures` consecutive failed Check scripts, stop sending for `openMs` (Checks get the failure
     * mode at once instead of each waiting out the timeout), then let one probe through.
     */
    breaker: z
      .strictObject({
        failures: z.number().int().min(1).max(10_000).default(5),
        openMs: z.number().int().min(10).max(60_000).default(500),
      })
      .prefault({}),
  })
  .superRefine((r, ctx) => {
    if (r.mode === 'cluster' && !r.nodes) ctx.addIssue({ code: 'custom', path: ['nodes'], message: 'is required when mode is cluster' });
    if (r.mode === 'sentinel') {
      if (!r.sentinels) ctx.addIssue({ code: 'custom', path: ['sentinels'], message: 'is required when mode is sentinel' });
      if (!r.name) ctx.addIssue({ code: 'custom', path: ['name'], message: 'is required when mode is sentinel (the master group name)' });
    }
  });

const ruleSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'use 1-64 letters, digits, _ . -'),
    /** Outcome events counted: auth_failure, bad_signature, denied_scope, request, ... */
    events: z.array(z.string().regex(/^[a-z][a-z0-9_]*$/, 'events are lowercase words like auth_failure')).min(1),
    /** Which subject the counter is kept for. */
    subject: z.enum(SUBJECT_KINDS),
    threshold: z.number().int().min(1).max(100_000),
    window: duration(100, 86_400_000),
    /** Block TTL the first time the threshold is crossed. */
    block: duration(MIN_BLOCK_TTL_MS, MAX_BLOCK_TTL_MS),
    /** Longer blocks for repeat offenders: the 2nd block uses ttls[0], the 3rd ttls[1], ... (the last repeats). */
    escalate: z
      .strictObject({
        ttls: z.array(duration(MIN_BLOCK_TTL_MS, MAX_BLOCK_TTL_MS)).min(1),
        /** How long a subject's earlier blocks are remembered. */
        memory: duration(MIN_BLOCK_TTL_MS, MAX_BLOCK_TTL_MS).default(86_400_000),
      })
      .optional(),
    /** Only count on these routes (route names); all routes when absent. */
    routes: z.array(z.string().min(1)).min(1).optional(),
    /** Short text stored with the block (audit only; the client only sees `blocked`). */
    reason: z.string().max(200).optional(),
  });

export type FdsRuleConfig = z.infer<typeof ruleSchema>;

const adminSchema = z
  .strictObject({
    /** Bearer token for /admin/fds/ (prefer tokenEnv or tokenFile). No token: the admin API answers 503. */
    token: z.string().min(16, 'must be at least 16 characters').optional(),
    tokenEnv: z.string().default('PASSGATE_FDS_ADMIN_TOKEN'),
    tokenFile: z.string().optional(),
  })
  .prefault({});

export const fdsConfigSchema = z
  .strictObject({
    /** memory: in-process (single instance, lost on restart; the embedded default). redis: shared. Default: redis when `redis` is set. */
    store: z.enum(['memory', 'redis']).optional(),
    redis: redisSchema.optional(),
    /** Where the client IP comes from: the socket peer, or x-forwarded-for behind trusted proxies. */
    clientIp: z
      .strictObject({
        source: z.enum(['peer', 'xff']).default('peer'),
        /** The client is entry N+1 from the right of x-forwarded-for (N = trusted proxies in front of the gateway). */
        xffTrustedHops: z.number().int().min(0).max(10).default(0),
      })
      .prefault({}),
    /** Where the client id and certificate fingerprint/serial come from: a pipeline fact of that name (cert.fingerprint, cert.serial), else the identity attribute. */
    attributes: z
      .strictObject({
        client: z.string().default('client_id'),
        certFingerprint: z.string().default('cert.fingerprint'),
        certSerial: z.string().default('cert.serial'),
      })
      .prefault({}),
    /** Known-blocked subjects are remembered in process this long (0 disables), so repeat offenders skip Redis. */
    blockedCacheMs: z.number().int().min(0).max(600_000).default(5000),
    blockedCacheMax: z.number().int().min(1).max(10_000_000).default(100_000),
    /** Estimated heap bytes for each of the two block caches (fresh answers, and blocks kept through a store outage). */
    blockedCacheBytes: z.number().int().min(64 * 1024).max(4 * 1024 * 1024 * 1024).default(16 * 1024 * 1024),
    /** CIDR blocks are kept in memory and reloaded this often (and at once on pub/sub). */
    cidrRefreshMs: z.number().int().min(100).max(3_600_000).default(30_000),
    /** A deny with one of these statuses counts as auth_failure for the source IP when no stage reported one; [] disables. */
    authFailureStatuses: z.array(z.number().int().min(400).max(599)).default([401]),
    rules: z.array(ruleSchema).default([]),
    /** Source IPs/ranges never counted by the rules, so never auto-blocked (manual blocks still apply). */
    exempt: exemptSchema,
    admin: adminSchema,
  })
  .superRefine((c, ctx) => {
    if (c.store === 'redis' && !c.redis) ctx.addIssue({ code: 'custom', path: ['redis'], message: 'is required when store is redis' });
    if (c.redis?.mode === 'single' && !c.redis.url && c.store !== 'memory')
      ctx.addIssue({ code: 'custom', path: ['redis', 'url'], message: 'is required when mode is single (e.g. redis://127.0.0.1:6379)' });
    const seen = new Set<string>();
    c.rules.forEach((r, i) => {
      if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'name'], message: `duplicate rule name "${r.name}"` });
      seen.add(r.name);
    });
  })
  .optional();

export type FdsConfig = z.infer<typeof fdsConfigSchema>;
export type FdsSettings = NonNullable<FdsConfig>;

/** The settings used when a config names the fds stage but has no `fds:` section: memory store, no rules. */
export function defaultFdsSettings(): FdsSettings {
  return fdsConfigSchema.parse({})!;
}

declare module '../config/schema.js' {
  interface ConfigSections {
    /** Fraud detection: Redis, block lists, detection rules. */
    fds?: FdsConfig;
  }
}
