/**
 * Redis store (single node, Sentinel or Cluster). Commands are bounded
 * (commandTimeout, no offline queue, no retries), so a slow or absent Redis
 * costs a Check at most `commandTimeoutMs` before the route's failure mode
 * applies; the client reconnects with capped backoff in the background.
 * A second connection per instance subscribes to the FDS channel so an
 * unblock or CIDR change reaches every replica's in-process cache at once.
 */
import { randomBytes } from 'node:crypto';
import { Redis, Cluster, type RedisOptions, type ClusterOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { FdsSettings } from '../config.js';
import { keySubject, type SubjectKind } from '../subjects.js';
import { EVALUATE_LUA } from '../lua/evaluate.js';
import { redisDevices, type DeviceStore } from './devices.js';
import {
  isCidr,
  type BlockRecord,
  type Claim,
  type CounterOp,
  type EvaluateResult,
  type FdsStore,
  type Inspection,
  type ListPage,
  type RuleWindow,
  type StoreEvent,
  type SubjectRef,
} from './store.js';

type RedisSettings = NonNullable<FdsSettings['redis']>;
type Client = Redis | Cluster;
type EvalClient = Client & { fdsEvaluate(numKeys: number, ...args: Array<string | number>): Promise<string[]> };

export interface RedisStoreHooks {
  /** Called for every failed command (for the error counter). */
  onError(op: string, err: Error): void;
}

/** Escapes SCAN MATCH glob characters in a literal prefix. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

export class RedisStore implements FdsStore {
  readonly kind = 'redis' as const;
  readonly base: string;
  private readonly client: EvalClient;
  private readonly subscriber: Client;
  private readonly channel: string;
  private readonly listeners: Array<(e: StoreEvent) => void> = [];
  private readonly nonceBase = randomBytes(6).toString('base64url');
  private seq = 0;
  private closed = false;
  private lastErrorLog = 0;
  readonly devices: DeviceStore;

  constructor(
    private readonly settings: RedisSettings,
    private readonly logger: Logger,
    private readonly hooks: RedisStoreHooks,
  ) {
    this.base = `${settings.keyPrefix}{${settings.hashTag}}:`;
    this.channel = `${this.base}events`;
    this.client = this.connect(false) as EvalClient;
    this.client.defineCommand('fdsEvaluate', { lua: EVALUATE_LUA });
    this.subscriber = this.connect(true);
    this.subscriber.on('message', (_channel: string, message: string) => this.onMessage(message));
    // Every (re)subscription may follow a gap in which unblocks were missed: resync caches.
    this.subscriber.on('ready', () => this.emit({ type: 'resync' }));
    this.subscriber.subscribe(this.channel).catch((err: Error) => this.logError('subscribe', err));
    this.devices = redisDevices(this.client, settings.keyPrefix, (op, err) => this.logError(op, err));
  }

  private connect(subscriber: boolean): Client {
    const s = this.settings;
    const password = s.passwordEnv ? process.env[s.passwordEnv] ?? s.password : s.password;
    const common: RedisOptions = {
      ...(s.username ? { username: s.username } : {}),
      ...(password ? { password } : {}),
      ...(s.tls ? { tls: {} } : {}),
      connectTimeout: s.connectTimeoutMs,
      // The subscriber has no deadline to meet; its SUBSCRIBE may wait for the connection.
      ...(subscriber ? {} : { commandTimeout: s.commandTimeoutMs }),
      maxRetriesPerRequest: subscriber ? null : 0,
      enableOfflineQueue: subscriber,
      retryStrategy: (times: number) => Math.min(times * s.reconnectBaseMs, s.reconnectMaxMs),
      lazyConnect: false,
    };
    let client: Client;
    if (s.mode === 'cluster') {
      const options: ClusterOptions = {
        enableOfflineQueue: subscriber,
        clusterRetryStrategy: (times: number) => Math.min(times * s.reconnectBaseMs, s.reconnectMaxMs),
        enableAutoPipelining: !subscriber,
        redisOptions: { ...common, db: undefined } as ClusterOptions['redisOptions'],
      };
      client = new Cluster(s.nodes!.map((n) => ({ host: n.host, port: n.port })), options);
    } else if (s.mode === 'sentinel') {
      client = new Redis({
        ...common,
        db: s.db,
        sentinels: s.sentinels!.map((n) => ({ host: n.host, port: n.port })),
        name: s.name!,
        sentinelRetryStrategy: (times: number) => Math.min(times * s.reconnectBaseMs, s.reconnectMaxMs),
        enableAutoPipelining: !subscriber,
      });
    } else {
      client = new Redis(s.url!, { ...common, db: s.db, enableAutoPipelining: !subscriber });
    }
    // Without a listener ioredis would print every reconnect failure; we log them rate-limited.
    client.on('error', (err: Error) => this.logError(subscriber ? 'subscriber' : 'connection', err, false));
    return client;
  }

  private logError(op: string, err: Error, count = true): void {
    if (count) this.hooks.onError(op, err);
    if (this.closed) return;
    const now = Date.now();
    if (now - this.lastErrorLog < 5000) return;
    this.lastErrorLog = now;
    this.logger.warn({ op, err: err.message }, 'FDS Redis error (routes apply their failure mode while it lasts)');
  }

  ready(limitMs: number): Promise<boolean> {
    if (this.client.status === 'ready') return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), limitMs);
      this.client.once('ready', onReady);
    });
  }

  private blockKey(kind: string, subject: string): string {
    return `${this.base}b:${kind}:${keySubject(subject)}`;
  }

  async evaluate(check: readonly SubjectRef[], ops: readonly CounterOp[], claims: readonly Claim[] = NO_CLAIMS): Promise<EvaluateResult> {
    const keys: string[] = [];
    for (const s of check) keys.push(this.blockKey(s.kind, s.subject));
    const args: Array<string | number> = [`${this.nonceBase}${(this.seq = (this.seq + 1) % 1e15)}`, check.length, ops.length, claims.length];
    for (const op of ops) {
      const subject = keySubject(op.subject);
      keys.push(`${this.base}c:${op.rule}:${op.kind}:${subject}`, `${this.base}o:${op.kind}:${subject}`, this.blockKey(op.kind, op.subject));
      const head = `{"kind":${JSON.stringify(op.kind)},"subject":${JSON.stringify(op.subject)},"reason":${JSON.stringify(op.reason)},"createdBy":${JSON.stringify(`rule:${op.rule}`)},`;
      args.push(op.increment, op.windowMs, op.threshold, op.ttls.join(','), op.memoryMs, op.rule, head, op.when === undefined ? '' : op.when === 'fresh' ? 'f' : 'r');
    }
    for (const c of claims) {
      keys.push(`${this.base}j:${c.key}`);
      args.push(Math.ceil(c.expiresAt), Math.max(1, Math.ceil(c.minTtlMs)));
    }
    let reply: string[];
    try {
      reply = await this.client.fdsEvaluate(keys.length, ...keys, ...args);
    } catch (err) {
      this.logError('evaluate', err as Error);
      throw err;
    }
    const blocked = reply[0] ? parseRecord(reply[0]) : undefined;
    const created: BlockRecord[] = [];
    for (let i = 2; i < reply.length; i++) {
      const r = parseRecord(reply[i]!);
      if (r) created.push(r);
    }
    return reply[1] === '1' ? { blocked, created, replayed: true } : { blocked, created };
  }

  private async run<T>(op: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (err) {
      this.logError(op, err as Error);
      throw err;
    }
  }

  async block(record: BlockRecord): Promise<void> {
    const json = JSON.stringify(record);
    await this.run('block', async () => {
      if (isCidr(record.kind, record.subject)) {
        await this.client.hset(`${this.base}cidr`, record.subject, json);
        await this.client.publish(this.channel, JSON.stringify({ type: 'cidr' }));
      } else if (record.ttlMs === null) await this.client.set(this.blockKey(record.kind, record.subject), json);
      else await this.client.set(this.blockKey(record.kind, record.subject), json, 'PX', record.ttlMs);
    });
  }

  async unblock(kind: SubjectKind, subject: string): Promise<boolean> {
    return this.run('unblock', async () => {
      let removed: number;
      let event: StoreEvent;
      if (isCidr(kind, subject)) {
        const cidrKey = `${this.base}cidr`;
        const old = await this.client.hget(cidrKey, subject);
        removed = await this.client.hdel(cidrKey, subject);
        const rec = old ? parseRecord(old) : undefined;
        if (rec && rec.expiresAt !== null && rec.expiresAt <= Date.now()) removed = 0;
        event = { type: 'cidr' };
      } else {
        removed = await this.client.del(this.blockKey(kind, subject));
        event = { type: 'unblock', kind, subject };
      }
      // Published even when nothing was removed: a replica may still cache an expired-in-Redis block.
      await this.client.publish(this.channel, JSON.stringify(event));
      return removed > 0;
    });
  }

  async inspect(kind: SubjectKind, subject: string, rules: readonly RuleWindow[]): Promise<Inspection> {
    return this.run('inspect', async () => {
      const ks = keySubject(subject);
      const raw = isCidr(kind, subject) ? await this.client.hget(`${this.base}cidr`, subject) : await this.client.get(this.blockKey(kind, subject));
      let block = raw ? parseRecord(raw) : undefined;
      if (block && block.expiresAt !== null && block.expiresAt <= Date.now()) block = undefined;
      const now = Date.now();
      const counters = [];
      for (const rule of rules) {
        const count = await this.client.zcount(`${this.base}c:${rule.name}:${kind}:${ks}`, `(${now - rule.windowMs}`, '+inf');
        counters.push({ rule: rule.name, count });
      }
      const offenses = Number((await this.client.get(`${this.base}o:${kind}:${ks}`)) ?? 0);
      return { block, counters, offenses };
    });
  }

  /** Nodes holding FDS keys: the one node, or every Cluster master (all keys share one slot, but SCAN is per node). */
  private scanNodes(): Redis[] {
    return this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
  }

  /**
   * Cursor: `k.<node>.<scan cursor>` while scanning exact block keys, then
   * `c.<hscan cursor>` over the CIDR hash. SCAN may return a key twice across
   * pages (Redis guarantees completeness, not uniqueness); callers dedupe if needed.
   */
  async list(cursor: string | null, count: number, kind?: SubjectKind): Promise<ListPage> {
    return this.run('list', async () => {
      const now = Date.now();
      let phase = 'k';
      let node = 0;
      let scan = '0';
      if (cursor) {
        const parts = cursor.split('.');
        phase = parts[0] === 'c' ? 'c' : 'k';
        if (phase === 'k') {
          node = Number(parts[1]) || 0;
          scan = parts[2] ?? '0';
        } else scan = parts[1] ?? '0';
      }
      const items: BlockRecord[] = [];
      if (phase === 'k') {
        const nodes = this.scanNodes();
        const target = nodes[node];
        if (target) {
          const match = `${globEscape(this.base)}b:${kind === undefined ? '' : `${kind}:`}*`;
          const [nextCursor, keys] = await target.scan(scan, 'MATCH', match, 'COUNT', Math.max(count, 10));
          if (keys.length > 0) {
            const values = await target.mget(...keys);
            for (const v of values) {
              const r = v ? parseRecord(v) : undefined;
              if (r) items.push(r);
            }
          }
          if (nextCursor !== '0') return { items, next: `k.${node}.${nextCursor}` };
          if (node + 1 < nodes.length) return { items, next: `k.${node + 1}.0` };
        }
        if (kind !== undefined && kind !== 'ip') return { items, next: null };
        scan = '0';
      }
      const [nextCursor, flat] = await this.client.hscan(`${this.base}cidr`, scan, 'COUNT', Math.max(count, 10));
      for (let i = 1; i < flat.length; i += 2) {
        const r = parseRecord(flat[i]!);
        if (r && (r.expiresAt === null || r.expiresAt > now)) items.push(r);
      }
      return { items, next: nextCursor === '0' ? null : `c.${nextCursor}` };
    });
  }

  async loadCidrs(): Promise<BlockRecord[]> {
    return this.run('load_cidrs', async () => {
      const cidrKey = `${this.base}cidr`;
      const all = await this.client.hgetall(cidrKey);
      const now = Date.now();
      const out: BlockRecord[] = [];
      const expired: string[] = [];
      for (const [field, value] of Object.entries(all)) {
        const r = parseRecord(value);
        if (r && (r.expiresAt === null || r.expiresAt > now)) out.push(r);
        else expired.push(field);
      }
      // Hash fields cannot expire on Redis 7.0; drop expired ranges as we see them.
      if (expired.length > 0) await this.client.hdel(cidrKey, ...expired);
      return out;
    });
  }

  async countActive(): Promise<number> {
    return this.run('count', async () => {
      let n = 0;
      for (const node of this.scanNodes()) {
        let cursor = '0';
        let rounds = 0;
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', `${globEscape(this.base)}b:*`, 'COUNT', 1000);
          n += keys.length;
          cursor = next;
        } while (cursor !== '0' && ++rounds < 1000);
      }
      return n + (await this.client.hlen(`${this.base}cidr`));
    });
  }

  onEvent(listener: (event: StoreEvent) => void): void {
    this.listeners.push(listener);
  }

  private emit(e: StoreEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.logger.error({ err: (err as Error).message }, 'FDS event listener failed');
      }
    }
  }

  private onMessage(message: string): void {
    let e: unknown;
    try {
      e = JSON.parse(message);
    } catch {
      return;
    }
    const ev = e as Partial<StoreEvent> & { kind?: unknown; subject?: unknown };
    if (ev.type === 'cidr') this.emit({ type: 'cidr' });
    else if (ev.type === 'unblock' && typeof ev.kind === 'string' && typeof ev.subject === 'string')
      this.emit({ type: 'unblock', kind: ev.kind as SubjectKind, subject: ev.subject });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.subscriber.disconnect();
    this.client.disconnect();
  }
}

const NO_CLAIMS: readonly Claim[] = Object.freeze([]);

function parseRecord(json: string): BlockRecord | undefined {
  try {
    const r = JSON.parse(json) as BlockRecord;
    return typeof r === 'object' && r !== null && typeof r.subject === 'string' ? r : undefined;
  } catch {
    return undefined;
  }
}
