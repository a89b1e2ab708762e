/**
 * Redis store (single node, Sentinel or Cluster). Commands are bounded
 * (commandTimeout, no offline queue, no retries), so a slow or absent Redis
 * costs a Check at most `commandTimeoutMs` before the route's failure mode
 * applies; the client reconnects with capped backoff in the background.
 * A second connection per instance subscribes to the FDS channel so an
 * unblock or CIDR change reaches every replica's in-process cache at once.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Redis, Cluster, type RedisOptions, type ClusterOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { FdsSettings } from '../config.js';
import { isSubjectKind, type SubjectKind } from '../subjects.js';
import { KeyLayout, keyLayoutOf, type SessionKeyKind } from './keys.js';
import { migrateFromSingleTag } from './migrate-layout.js';
import { checkOp, claimOp, countOp, watchOp, encodeBatch, encodeCall, argCount, type CheckCall, groupBySlot, mergeReplies, parseRecord, replayFollowUps, type CallReply, type ScriptOp } from './script-ops.js';
import { EVALUATE_LUA, LOCK_RELEASE_LUA, LOCK_RENEW_LUA, SESSION_READ_LUA, SESSION_REPLACE_LUA } from '../lua/evaluate.js';
import { redisDevices, type DeviceStore } from './devices.js';
import {
  isCidr,
  type BlockRecord,
  type Claim,
  type CounterOp,
  type EvaluateResult,
  type PeekResult,
  type FdsStore,
  type Inspection,
  type ListPage,
  type RuleWindow,
  type SessionRecord,
  type StoreEvent,
  type SubjectRef,
  type Watch,
} from './store.js';

type RedisSettings = NonNullable<FdsSettings['redis']>;
type Client = Redis | Cluster;
type EvalClient = Client & {
  fdsEvaluate(numKeys: number, ...args: Array<string | number>): Promise<unknown>;
  oidcRead(key: string, ttlMs: number): Promise<[string, string | null, string | null] | null>;
  oidcReplace(key: string, ...args: Array<string | number>): Promise<number>;
  oidcRenew(key: string, token: string, ttlMs: number): Promise<number>;
  oidcRelease(key: string, token: string): Promise<number>;
};


export interface RedisStoreHooks {
  /** Called for every failed command (for the error counter). */
  onError(op: string, err: Error): void;
}

export class RedisStore implements FdsStore {
  readonly kind = 'redis' as const;
  readonly keys: KeyLayout;
  private readonly client: EvalClient;
  private readonly subscriber: Client;
  private readonly channel: string;
  /** Cluster with per-subject keys: a Check's ops span slots, one call per slot. */
  private readonly bySlot: boolean;
  private readonly listeners: Array<(e: StoreEvent) => void> = [];
  private readonly nonceBase = randomBytes(6).toString('base64url');
  private seq = 0;
  /** Checks waiting for this event-loop turn's script call (one node or Sentinel). */
  private batch: PendingCall[] = [];
  /** KEYS+ARGV of the batch so far, its own first argument (the number of Checks) included. */
  private batchArgs = BATCH_OWN_ARGS;
  private batchScheduled = false;
  private closed = false;
  private lastErrorLog = 0;
  readonly devices: DeviceStore;

  constructor(
    private readonly settings: RedisSettings,
    private readonly logger: Logger,
    private readonly hooks: RedisStoreHooks,
  ) {
    this.keys = new KeyLayout(settings.keyPrefix, settings.hashTag, keyLayoutOf(settings));
    this.bySlot = settings.mode === 'cluster' && this.keys.layout === 'per-subject';
    this.channel = this.keys.channel;
    this.client = this.connect(false) as EvalClient;
    this.client.defineCommand('fdsEvaluate', { lua: EVALUATE_LUA });
    this.client.defineCommand('oidcRead', { lua: SESSION_READ_LUA, numberOfKeys: 1 });
    this.client.defineCommand('oidcReplace', { lua: SESSION_REPLACE_LUA, numberOfKeys: 1 });
    this.client.defineCommand('oidcRenew', { lua: LOCK_RENEW_LUA, numberOfKeys: 1 });
    this.client.defineCommand('oidcRelease', { lua: LOCK_RELEASE_LUA, numberOfKeys: 1 });
    // Warm every master's script cache, so a Check's first call on a node is one EVALSHA (not NOSCRIPT, then EVAL).
    // A node's connection may still be opening when the cluster is ready (and commands to it fail fast), so
    // each master loads the script when its own connection is ready.
    if (this.client instanceof Cluster) {
      const cluster = this.client;
      const load = (node: Redis) => node.script('LOAD', EVALUATE_LUA).catch((err: Error) => this.logError('script_load', err, false));
      cluster.on('ready', () => {
        for (const node of cluster.nodes('master')) {
          if (node.status === 'ready') void load(node);
          else node.once('ready', () => void load(node));
        }
      });
    }
    if (this.keys.layout === 'per-subject') this.client.once('ready', () => this.migrateLayout(0));
    this.subscriber = this.connect(true);
    this.subscriber.on('message', (_channel: string, message: string) => this.onMessage(message));
    // Every (re)subscription may follow a gap in which unblocks were missed: resync caches.
    this.subscriber.on('ready', () => this.emit({ type: 'resync' }));
    // On a cluster the subscription moves to another node when its node leaves (ioredis re-subscribes
    // without telling): messages of the gap are lost, so a node leaving resyncs too.
    if (this.subscriber instanceof Cluster) this.subscriber.on('-node', () => this.emit({ type: 'resync' }));
    this.subscriber.subscribe(this.channel).catch((err: Error) => this.logError('subscribe', err));
    this.devices = redisDevices(this.client, settings.keyPrefix, (op, err) => this.logError(op, err));
  }

  private connect(subscriber: boolean): Client {
    const s = this.settings;
    // The subscriber sends nothing worth batching.
    const autoPipelining = !subscriber && (s.autoPipelining ?? true);
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
        // ioredis (5.x) sends its ready check (CLUSTER INFO) to a random node and, with the offline queue off,
        // refuses it when that node's connection is still opening; the client then reconnects and draws
        // again, which on a fresh or reconnecting client can go on for many seconds. Without the check the
        // client is ready once it knows the slots; a cluster that is down answers each call with CLUSTERDOWN,
        // which the route's failure mode handles like any other Redis error.
        ...(subscriber ? {} : { enableReadyCheck: false }),
        clusterRetryStrategy: (times: number) => Math.min(times * s.reconnectBaseMs, s.reconnectMaxMs),
        enableAutoPipelining: autoPipelining,
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
        enableAutoPipelining: autoPipelining,
        autoPipeliningIgnoredCommands: BATCHED_COMMANDS,
      });
    } else {
      client = new Redis(s.url!, { ...common, db: s.db, enableAutoPipelining: autoPipelining, autoPipeliningIgnoredCommands: BATCHED_COMMANDS });
    }
    // Without a listener ioredis would print every reconnect failure; we log them rate-limited.
    client.on('error', (err: Error) => this.logError(subscriber ? 'subscriber' : 'connection', err, false));
    return client;
  }

  /** Moves keys of the single-tag layout (migrate-layout.ts); a failed pass is tried again with backoff (it is idempotent). */
  private migrateLayout(attempt: number): void {
    migrateFromSingleTag(this.client, this.keys).then(
      (moved) => {
        if (moved > 0) this.logger.info({ fds: 'key_layout', moved }, 'FDS moved keys of the single-tag layout to their per-subject names');
      },
      (err: Error) => {
        if (this.closed) return;
        const delay = Math.min(60_000, 1000 * 2 ** attempt);
        this.logger.warn({ op: 'migrate_layout', err: err.message, retryInMs: delay }, 'FDS could not move single-tag keys to the per-subject layout; trying again');
        setTimeout(() => this.migrateLayout(attempt + 1), delay).unref();
      },
    );
  }

  private logError(op: string, err: Error, count = true): void {
    if (count) this.hooks.onError(op, err);
    if (this.closed) return;
    const now = Date.now();
    if (now - this.lastErrorLog < 5000) return;
    this.lastErrorLog = now;
    this.logger.warn({ op, err: err.message }, 'FDS Redis error (routes apply their failure mode while it lasts)');
  }

  /** Whether the client is ready within `limitMs`; on a Cluster, with a ready connection to every master. */
  async ready(limitMs: number): Promise<boolean> {
    const end = Date.now() + limitMs;
    if (!(await readyWithin(this.client, limitMs))) return false;
    if (!(this.client instanceof Cluster)) return true;
    const masters = this.client.nodes('master');
    const each = await Promise.all(masters.map((node) => readyWithin(node, Math.max(0, end - Date.now()))));
    return each.every(Boolean);
  }

  async evaluate(check: readonly SubjectRef[], ops: readonly CounterOp[], claims: readonly Claim[] = NO_CLAIMS, watches?: readonly Watch[]): Promise<EvaluateResult> {
    const keys = this.keys;
    const list: ScriptOp[] = [];
    for (let i = 0; i < check.length; i++) list.push(checkOp(keys, check[i]!.kind, check[i]!.subject, i));
    for (const c of claims) list.push(claimOp(keys, c));
    for (let i = 0; i < ops.length; i++) list.push(countOp(keys, ops[i]!, String(i)));
    if (watches !== undefined) for (let i = 0; i < watches.length; i++) list.push(watchOp(keys, watches[i]!, i));
    const nonce = `${this.nonceBase}${(this.seq = (this.seq + 1) % 1e15)}`;
    try {
      if (!this.bySlot) return mergeReplies([{ ops: list, reply: await this.call(nonce, list) }]);
      return await this.evaluateBySlot(nonce, list);
    } catch (err) {
      this.logError('evaluate', err as Error);
      throw err;
    }
  }

  async peek(check: readonly SubjectRef[], claims: readonly Claim[] = NO_CLAIMS): Promise<PeekResult> {
    const keys: string[] = check.map((s) => this.keys.block(s.kind, s.subject));
    for (const c of claims) keys.push(this.keys.claim(c.key));
    if (keys.length === 0) return { blocked: undefined, replayed: false };
    const values = await this.run('peek', () => this.readValues(keys));
    let blocked: BlockRecord | undefined;
    for (let i = 0; i < check.length && blocked === undefined; i++) if (values[i]) blocked = parseRecord(values[i]!);
    const replayed = values.slice(check.length).some((v) => v !== null);
    return { blocked, replayed };
  }

  /**
   * Values of `keys`: one MGET when they share a slot, else one GET each, sent together (MGET and a Cluster
   * pipeline across slots are refused; auto-pipelining batches the GETs per node).
   */
  private readValues(keys: readonly string[]): Promise<Array<string | null>> {
    if (!this.bySlot) return this.client.mget(...keys);
    return Promise.all(keys.map((k) => this.client.get(k)));
  }

  /** One call per slot group, concurrently (see script-ops.ts for what may differ from one call). */
  private async evaluateBySlot(nonce: string, list: readonly ScriptOp[]): Promise<EvaluateResult> {
    const groups = groupBySlot(list);
    if (groups.length === 1) return mergeReplies([{ ops: list, reply: await this.call(nonce, list) }]);
    const calls = await Promise.all(groups.map(async (ops): Promise<CallReply> => ({ ops, reply: await this.call(nonce, ops) })));
    const result = mergeReplies(calls);
    if (!result.replayed || result.blocked) return result;
    const fixes = replayFollowUps(calls);
    if (fixes.length === 0) return result;
    const more = await Promise.all(fixes.map(async (ops): Promise<CallReply> => ({ ops, reply: await this.call(nonce, ops) })));
    const created = mergeReplies(more).created;
    return created.length === 0 ? result : { ...result, created: [...result.created, ...created] };
  }

  /**
   * One Check's call. On one node (or Sentinel) the Checks that meet in one event-loop turn share one script
   * call (lua/evaluate.ts runs them one after the other, as separate calls sent in that order would run):
   * ioredis's per-command work (command object, promise, timer, pipeline slot) and Redis's per-call work are
   * paid once per batch, and each Check still waits one round trip. On a cluster each slot group is its own call.
   */
  private call(nonce: string, ops: readonly ScriptOp[]): Promise<string[]> {
    if (!(this.client instanceof Cluster)) {
      return new Promise((resolve, reject) => {
        const size = argCount(ops);
        // The batch so far goes first when this Check would take it past a bound; a Check over a bound by
        // itself is sent alone.
        if (this.batch.length > 0 && this.batchArgs + size > MAX_BATCH_ARGS) this.flushBatch();
        this.batch.push({ nonce, ops, resolve, reject });
        this.batchArgs += size;
        if (this.batch.length >= MAX_BATCH_CHECKS || this.batchArgs >= MAX_BATCH_ARGS) this.flushBatch();
        else if (!this.batchScheduled) {
          this.batchScheduled = true;
          setImmediate(this.flushBatch);
        }
      });
    }
    const { keys, args } = encodeCall(nonce, ops);
    // On a Cluster, ioredis's auto-pipelining groups a defined command by its first argument (the key count),
    // not by its first key, and then refuses the pipeline when the keys are on different nodes; EVALSHA is
    // grouped by its first key. A node that never saw the script (a promoted replica) answers NOSCRIPT: EVAL loads it.
    const client = this.client;
    return (client.evalsha(EVALUATE_SHA, keys.length, ...keys, ...args) as Promise<string[][]>)
      .catch((err: Error) => {
        if (!err.message.startsWith('NOSCRIPT')) throw err;
        return client.eval(EVALUATE_LUA, keys.length, ...keys, ...args) as Promise<string[][]>;
      })
      .then((replies) => replyOf(replies, 0));
  }

  private readonly flushBatch = (): void => {
    this.batchScheduled = false;
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    this.batchArgs = BATCH_OWN_ARGS;
    const { keys, args } = encodeBatch(batch);
    this.client.fdsEvaluate(keys.length, ...keys, ...args).then(
      (replies) => {
        for (let i = 0; i < batch.length; i++) {
          try {
            batch[i]!.resolve(replyOf(replies, i));
          } catch (err) {
            batch[i]!.reject(err as Error);
          }
        }
      },
      (err: Error) => {
        for (const c of batch) c.reject(err);
      },
    );
  };

  // ---- Sessions (oidc). Each session has its own hash tag, so a Cluster spreads them; the lock shares the session's slot.

  /** Session keys are built by the key layout (keys.ts), like every other key. */
  sessionKey(kind: SessionKeyKind, id: string): string {
    return this.keys.session(kind, id);
  }

  async putSession(id: string, record: SessionRecord, ttlMs: number, index: readonly string[]): Promise<void> {
    await this.run('session_put', async () => {
      const key = this.sessionKey('session', id);
      const ttl = Math.max(1, Math.ceil(ttlMs));
      const life = Math.max(1, Math.ceil(record.absoluteExpiresAt - Date.now()));
      // Separate commands (auto-pipelined): the index sets live in other slots on a Cluster.
      await Promise.all([
        this.client.multi().hset(key, 'v', record.version, 'd', record.sealed, 'a', String(record.absoluteExpiresAt)).pexpire(key, ttl).exec(),
        ...index.map(async (i) => {
          const ik = this.sessionKey('index', i);
          await this.client.sadd(ik, id);
          // The set lives as long as its longest session could (GT: never shortened by a newer, shorter one).
          await this.client.pexpire(ik, life, 'GT');
          await this.client.pexpire(ik, life, 'NX');
        }),
      ]);
    });
  }

  async readSession(id: string, ttlMs: number): Promise<SessionRecord | undefined> {
    return this.run('session_read', async () => {
      const r = await this.client.oidcRead(this.sessionKey('session', id), Math.max(1, Math.ceil(ttlMs)));
      if (!r || r[1] === null || r[2] === null) return undefined;
      return { version: r[0], sealed: r[1], absoluteExpiresAt: Number(r[2]) };
    });
  }

  async replaceSession(id: string, expectedVersion: string, record: SessionRecord, ttlMs: number): Promise<boolean> {
    return this.run('session_replace', async () => {
      const n = await this.client.oidcReplace(this.sessionKey('session', id), expectedVersion, record.version, record.sealed, record.absoluteExpiresAt, Math.max(1, Math.ceil(ttlMs)));
      return n === 1;
    });
  }

  async deleteSession(id: string): Promise<boolean> {
    return this.run('session_delete', async () => (await this.client.del(this.sessionKey('session', id))) > 0);
  }

  async indexedSessions(index: string): Promise<string[]> {
    return this.run('session_index', () => this.client.smembers(this.sessionKey('index', index)));
  }

  async putFlow(id: string, value: string, ttlMs: number): Promise<void> {
    await this.run('flow_put', () => this.client.set(this.sessionKey('flow', id), value, 'PX', Math.max(1, Math.ceil(ttlMs))));
  }

  async takeFlow(id: string): Promise<string | undefined> {
    return this.run('flow_take', async () => (await this.client.getdel(this.sessionKey('flow', id))) ?? undefined);
  }

  async lock(id: string, token: string, ttlMs: number): Promise<boolean> {
    return this.run('lock', async () => (await this.client.set(this.sessionKey('lock', id), token, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX')) === 'OK');
  }

  async renewLock(id: string, token: string, ttlMs: number): Promise<boolean> {
    return this.run('lock_renew', async () => (await this.client.oidcRenew(this.sessionKey('lock', id), token, Math.max(1, Math.ceil(ttlMs)))) === 1);
  }

  async unlock(id: string, token: string): Promise<void> {
    await this.run('unlock', () => this.client.oidcRelease(this.sessionKey('lock', id), token));
  }

  /** Commands sent and not yet answered by Redis, timed-out ones included (ioredis keeps them queued). */
  private backlog(): number {
    const c = this.client;
    if (!(c instanceof Cluster)) return c.commandQueue.length;
    let n = 0;
    for (const node of c.nodes('all')) n += node.commandQueue.length;
    return n;
  }

  private async run<T>(op: string, f: () => Promise<T>): Promise<T> {
    try {
      const waiting = this.backlog();
      if (waiting >= this.settings.maxBacklog) throw new Error(`${waiting} commands are waiting for Redis (fds.redis.maxBacklog ${this.settings.maxBacklog}); not sending more until it answers`);
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
        await this.client.hset(this.keys.cidr, record.subject, json);
        await this.client.publish(this.channel, JSON.stringify({ type: 'cidr' }));
      } else if (record.ttlMs === null) await this.client.set(this.keys.block(record.kind, record.subject), json);
      else await this.client.set(this.keys.block(record.kind, record.subject), json, 'PX', record.ttlMs);
    });
  }

  async unblock(kind: SubjectKind, subject: string): Promise<boolean> {
    return this.run('unblock', async () => {
      let removed: number;
      let event: StoreEvent;
      if (isCidr(kind, subject)) {
        const cidrKey = this.keys.cidr;
        const old = await this.client.hget(cidrKey, subject);
        removed = await this.client.hdel(cidrKey, subject);
        const rec = old ? parseRecord(old) : undefined;
        if (rec && rec.expiresAt !== null && rec.expiresAt <= Date.now()) removed = 0;
        event = { type: 'cidr' };
      } else {
        removed = await this.client.del(this.keys.block(kind, subject));
        event = { type: 'unblock', kind, subject };
      }
      // Published even when nothing was removed: a replica may still cache an expired-in-Redis block.
      await this.client.publish(this.channel, JSON.stringify(event));
      return removed > 0;
    });
  }

  async inspect(kind: SubjectKind, subject: string, rules: readonly RuleWindow[]): Promise<Inspection> {
    return this.run('inspect', async () => {
      const raw = isCidr(kind, subject) ? await this.client.hget(this.keys.cidr, subject) : await this.client.get(this.keys.block(kind, subject));
      let block = raw ? parseRecord(raw) : undefined;
      if (block && block.expiresAt !== null && block.expiresAt <= Date.now()) block = undefined;
      const now = Date.now();
      const counters = [];
      for (const rule of rules) {
        const count = await this.client.zcount(this.keys.counter(rule.name, kind, subject), `(${now - rule.windowMs}`, '+inf');
        counters.push({ rule: rule.name, count });
      }
      const offenses = Number((await this.client.get(this.keys.offense(kind, subject))) ?? 0);
      return { block, counters, offenses };
    });
  }

  /** Nodes holding FDS keys: the one node, or every Cluster master (all keys share one slot, but SCAN is per node). */
  private scanNodes(): Redis[] {
    return this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
  }

  /** Block records under `keys` of one node: per-subject keys are in many slots, where MGET is refused (CROSSSLOT). */
  private async readBlocks(node: Redis, keys: readonly string[]): Promise<BlockRecord[]> {
    if (keys.length === 0) return [];
    let values: Array<string | null>;
    if (this.keys.layout === 'single-tag') values = await node.mget(...keys);
    else {
      const p = node.pipeline();
      for (const k of keys) p.get(k);
      values = ((await p.exec()) ?? []).map(([err, v]) => (err ? null : (v as string | null)));
    }
    const out: BlockRecord[] = [];
    for (const v of values) {
      const r = v ? parseRecord(v) : undefined;
      if (r && isSubjectKind(r.kind)) out.push(r);
    }
    return out;
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
          const [nextCursor, keys] = await target.scan(scan, 'MATCH', this.keys.blockPattern(kind), 'COUNT', Math.max(count, 10));
          for (const r of await this.readBlocks(target, keys)) if (kind === undefined || r.kind === kind) items.push(r);
          if (nextCursor !== '0') return { items, next: `k.${node}.${nextCursor}` };
          if (node + 1 < nodes.length) return { items, next: `k.${node + 1}.0` };
        }
        if (kind !== undefined && kind !== 'ip') return { items, next: null };
        scan = '0';
      }
      const [nextCursor, flat] = await this.client.hscan(this.keys.cidr, scan, 'COUNT', Math.max(count, 10));
      for (let i = 1; i < flat.length; i += 2) {
        const r = parseRecord(flat[i]!);
        if (r && (r.expiresAt === null || r.expiresAt > now)) items.push(r);
      }
      return { items, next: nextCursor === '0' ? null : `c.${nextCursor}` };
    });
  }

  async loadCidrs(): Promise<BlockRecord[]> {
    return this.run('load_cidrs', async () => {
      const cidrKey = this.keys.cidr;
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
          const [next, keys] = await node.scan(cursor, 'MATCH', this.keys.blockPattern(), 'COUNT', 1000);
          n += keys.length;
          cursor = next;
        } while (cursor !== '0' && ++rounds < 1000);
      }
      return n + (await this.client.hlen(this.keys.cidr));
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

interface PendingCall extends CheckCall {
  resolve(reply: string[]): void;
  reject(err: Error): void;
}

/**
 * The Check script is batched here (one call per event-loop turn); auto-pipelining it as well would only wrap
 * that one call in a pipeline and send it a turn later.
 */
const BATCHED_COMMANDS = ['fdsEvaluate'];

/** A batch is sent before it grows past either bound, whatever the turn still brings. */
const MAX_BATCH_CHECKS = 64;
const MAX_BATCH_ARGS = 4096;
/** A batched call's own arguments beside its Checks' (ARGV[1], the number of Checks; see encodeBatch). */
const BATCH_OWN_ARGS = 1;

/** Check `i`'s reply of a script call; a reply of another shape is an error of that Check, not a crash. */
function replyOf(replies: unknown, i: number): string[] {
  const r = Array.isArray(replies) ? (replies[i] as unknown) : undefined;
  if (r instanceof Error) throw r; // this Check's own error reply (lua/evaluate.ts)
  if (!Array.isArray(r)) throw new Error(`FDS script reply ${i + 1} is not a list (script and service versions differ?)`);
  return r as string[];
}
const EVALUATE_SHA = createHash('sha1').update(EVALUATE_LUA).digest('hex');

/** Whether `client` (a Cluster or one connection) reaches status ready within `limitMs`. */
function readyWithin(client: Client, limitMs: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), limitMs);
    client.once('ready', onReady);
  });
}
