/**
 * In-process store: same semantics as the Redis store (sliding-window logs,
 * escalation, TTLs), for the embedded default and single-instance use. State
 * is lost on restart and not shared between replicas.
 */
import type { SubjectKind } from '../subjects.js';
import {
  isCidr,
  ttlForLevel,
  type BlockRecord,
  type Claim,
  type CounterOp,
  type EvaluateResult,
  type FdsStore,
  type PeekResult,
  type Inspection,
  type ListPage,
  type RuleWindow,
  type SessionRecord,
  type StoreEvent,
  type SubjectRef,
  type Watch,
  type WatchState,
} from './store.js';
import { memoryDevices, type DeviceStore } from './devices.js';

/** A session, flow or lock with its expiry (the memory store's stand-in for Redis TTLs). */
interface Expiring<T> {
  value: T;
  expiresAt: number;
}

const sessionSize = (id: string, r: SessionRecord) => 128 + 2 * (id.length + r.version.length + r.sealed.length);

/** Map entry overhead plus the key's UTF-16 text. */
const claimSize = (k: string) => 64 + 2 * k.length;

const key = (kind: string, subject: string) => `${kind}\u0000${subject}`;

/** Estimated heap of a counter (Map entry, object, array) and of an offense level, beside their key text. */
const COUNTER_BYTES = 160;
const OFFENSE_BYTES = 96;

export class MemoryStore implements FdsStore {
  readonly kind = 'memory' as const;
  private readonly blocks = new Map<string, BlockRecord>();
  private readonly cidrs = new Map<string, BlockRecord>();
  private readonly counters = new Map<string, { times: number[]; windowMs: number; expiresAt: number }>();
  private readonly offenses = new Map<string, { level: number; expiresAt: number }>();
  /** Estimated bytes of counters and offense levels, bounded by `maxCounterBytes` (then the oldest are forgotten). */
  private counterBytes = 0;
  private lastCounterSweep = 0;
  private readonly listeners: Array<(e: StoreEvent) => void> = [];
  /** Single-use claims (proof jtis) → expiry. Never evicted early (that would allow a replay): full means refuse. */
  private readonly claims = new Map<string, number>();
  private claimBytes = 0;
  /** oidc sessions, login flows, refresh locks and index sets; bounded by `maxSessionBytes` (full = refuse new ones). */
  private readonly sessions = new Map<string, Expiring<SessionRecord>>();
  private readonly flows = new Map<string, Expiring<string>>();
  private readonly locks = new Map<string, Expiring<string>>();
  private readonly index = new Map<string, Expiring<Set<string>>>();
  private sessionBytes = 0;
  private sweeper: NodeJS.Timeout;
  readonly devices: DeviceStore;

  constructor(
    private readonly now: () => number = Date.now,
    /** Bound of the claim map, by bytes of key text (+ per-entry overhead). */
    private readonly maxClaimBytes = 16 * 1024 * 1024,
    /** Bound of sessions and login flows together, by estimated bytes. */
    private readonly maxSessionBytes = 64 * 1024 * 1024,
    /**
     * Bound of counters and offense levels, by estimated bytes. Past it the oldest counters are forgotten
     * (counts lost, not a refusal: this store is the embedded default for one process; Redis keeps them).
     */
    private readonly maxCounterBytes = 64 * 1024 * 1024,
  ) {
    // Expired entries are dropped lazily on read; this sweep bounds memory for subjects never seen again.
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
    this.devices = memoryDevices(now);
  }

  private live(r: BlockRecord | undefined, now: number): BlockRecord | undefined {
    return r && (r.expiresAt === null || r.expiresAt > now) ? r : undefined;
  }

  private sweep(): void {
    const now = this.now();
    for (const [k, r] of this.blocks) if (!this.live(r, now)) this.blocks.delete(k);
    for (const [k, r] of this.cidrs) if (!this.live(r, now)) this.cidrs.delete(k);
    this.sweepCounters(now);
    this.devices.sweep?.(now);
    this.sweepClaims(now);
    this.sweepSessions(now);
  }

  private sweepCounters(now: number): void {
    this.lastCounterSweep = now;
    for (const [k, c] of this.counters) if (c.expiresAt <= now) this.dropCounter(k, c);
    for (const [k, o] of this.offenses) if (o.expiresAt <= now) this.dropOffense(k);
  }

  private dropCounter(k: string, c: { times: number[] }): void {
    this.counters.delete(k);
    this.counterBytes -= COUNTER_BYTES + 2 * k.length + 8 * c.times.length;
  }

  private dropOffense(k: string): void {
    if (this.offenses.delete(k)) this.counterBytes -= OFFENSE_BYTES + 2 * k.length;
  }

  /** Room for `need` more bytes of counters: expired ones go first (at most one full pass a second), then the oldest. */
  private counterRoom(need: number, now: number): void {
    if (this.counterBytes + need <= this.maxCounterBytes) return;
    if (now - this.lastCounterSweep >= 1000) this.sweepCounters(now);
    for (const [k, c] of this.counters) {
      if (this.counterBytes + need <= this.maxCounterBytes) return;
      this.dropCounter(k, c);
    }
    for (const k of this.offenses.keys()) {
      if (this.counterBytes + need <= this.maxCounterBytes) return;
      this.dropOffense(k);
    }
  }

  private sweepSessions(now: number): void {
    for (const [k, e] of this.sessions) if (e.expiresAt <= now) this.dropSession(k);
    for (const [k, e] of this.flows) if (e.expiresAt <= now) this.dropFlow(k);
    for (const [k, e] of this.locks) if (e.expiresAt <= now) this.locks.delete(k);
    for (const [k, e] of this.index) if (e.expiresAt <= now) this.index.delete(k);
  }

  private dropSession(id: string): boolean {
    const e = this.sessions.get(id);
    if (e === undefined) return false;
    this.sessions.delete(id);
    this.sessionBytes -= sessionSize(id, e.value);
    return true;
  }

  private dropFlow(id: string): void {
    const e = this.flows.get(id);
    if (e === undefined) return;
    this.flows.delete(id);
    this.sessionBytes -= 64 + 2 * (id.length + e.value.length);
  }

  private room(need: number, now: number): void {
    if (this.sessionBytes + need <= this.maxSessionBytes) return;
    this.sweepSessions(now);
    if (this.sessionBytes + need > this.maxSessionBytes) throw new Error(`session store is full (${this.maxSessionBytes} bytes of live sessions and login flows)`);
  }

  private liveSession(id: string, now: number): Expiring<SessionRecord> | undefined {
    const e = this.sessions.get(id);
    if (e !== undefined && e.expiresAt <= now) {
      this.dropSession(id);
      return undefined;
    }
    return e;
  }

  private watch(watches: readonly Watch[], now: number): WatchState[] {
    return watches.map((w) => {
      const e = this.liveSession(w.id, now);
      if (e === undefined) return 'gone';
      e.expiresAt = now + Math.max(1, w.ttlMs);
      return e.value.version === w.version ? 'live' : 'changed';
    });
  }

  async putSession(id: string, record: SessionRecord, ttlMs: number, index: readonly string[]): Promise<void> {
    const now = this.now();
    this.dropSession(id);
    const size = sessionSize(id, record);
    this.room(size, now);
    this.sessions.set(id, { value: record, expiresAt: now + Math.max(1, ttlMs) });
    this.sessionBytes += size;
    for (const i of index) {
      let e = this.index.get(i);
      if (e === undefined || e.expiresAt <= now) this.index.set(i, (e = { value: new Set(), expiresAt: 0 }));
      // Ids of sessions that ended go as the next one is filed: a subject logging in again and again keeps
      // an index no longer than its live sessions (which maxSessionBytes bounds).
      for (const old of e.value) if (this.liveSession(old, now) === undefined) e.value.delete(old);
      e.value.add(id);
      e.expiresAt = Math.max(e.expiresAt, record.absoluteExpiresAt);
    }
  }

  async readSession(id: string, ttlMs: number): Promise<SessionRecord | undefined> {
    const now = this.now();
    const e = this.liveSession(id, now);
    if (e === undefined) return undefined;
    e.expiresAt = now + Math.max(1, ttlMs);
    return e.value;
  }

  async replaceSession(id: string, expectedVersion: string, record: SessionRecord, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const e = this.liveSession(id, now);
    if (e === undefined || e.value.version !== expectedVersion) return false;
    const delta = sessionSize(id, record) - sessionSize(id, e.value);
    this.room(delta, now);
    this.sessionBytes += delta;
    e.value = record;
    e.expiresAt = now + Math.max(1, ttlMs);
    return true;
  }

  async deleteSession(id: string): Promise<boolean> {
    const had = this.liveSession(id, this.now()) !== undefined;
    this.dropSession(id);
    return had;
  }

  async indexedSessions(index: string): Promise<string[]> {
    const e = this.index.get(index);
    return e === undefined || e.expiresAt <= this.now() ? [] : [...e.value];
  }

  async putFlow(id: string, value: string, ttlMs: number): Promise<void> {
    const now = this.now();
    this.dropFlow(id);
    const size = 64 + 2 * (id.length + value.length);
    this.room(size, now);
    this.flows.set(id, { value, expiresAt: now + Math.max(1, ttlMs) });
    this.sessionBytes += size;
  }

  async takeFlow(id: string): Promise<string | undefined> {
    const e = this.flows.get(id);
    this.dropFlow(id);
    return e === undefined || e.expiresAt <= this.now() ? undefined : e.value;
  }

  async lock(id: string, token: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const e = this.locks.get(id);
    if (e !== undefined && e.expiresAt > now) return false;
    this.locks.set(id, { value: token, expiresAt: now + Math.max(1, ttlMs) });
    return true;
  }

  async renewLock(id: string, token: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const e = this.locks.get(id);
    if (e === undefined || e.expiresAt <= now || e.value !== token) return false;
    e.expiresAt = now + Math.max(1, ttlMs);
    return true;
  }

  async unlock(id: string, token: string): Promise<void> {
    if (this.locks.get(id)?.value === token) this.locks.delete(id);
  }

  private sweepClaims(now: number): void {
    for (const [k, exp] of this.claims) {
      if (exp <= now) {
        this.claims.delete(k);
        this.claimBytes -= claimSize(k);
      }
    }
  }

  /** Same semantics as the Redis script: none set when one is taken; throws when full (the route's failure mode applies). */
  private claim(claims: readonly Claim[], now: number): boolean {
    for (const c of claims) {
      const exp = this.claims.get(c.key);
      if (exp !== undefined && exp > now) return true;
    }
    let need = 0;
    for (const c of claims) need += claimSize(c.key);
    if (this.claimBytes + need > this.maxClaimBytes) {
      this.sweepClaims(now);
      if (this.claimBytes + need > this.maxClaimBytes) throw new Error(`replay cache is full (${this.maxClaimBytes} bytes of unexpired proof ids)`);
    }
    for (const c of claims) {
      if (!this.claims.has(c.key)) this.claimBytes += claimSize(c.key);
      this.claims.set(c.key, now + Math.max(c.expiresAt - now, c.minTtlMs, 1));
    }
    return false;
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async evaluate(check: readonly SubjectRef[], ops: readonly CounterOp[], claims?: readonly Claim[], watches?: readonly Watch[]): Promise<EvaluateResult> {
    const now = this.now();
    let blocked: BlockRecord | undefined;
    for (const s of check) {
      blocked = this.live(this.blocks.get(key(s.kind, s.subject)), now);
      if (blocked) break;
    }
    const replayed = claims !== undefined && claims.length > 0 && blocked === undefined ? this.claim(claims, now) : false;
    const created: BlockRecord[] = [];
    let wouldBlock: BlockRecord[] | undefined;
    for (const op of ops) {
      if (op.when !== undefined && (op.when === 'replay') !== replayed) continue;
      const bk = key(op.kind, op.subject);
      if (this.live(this.blocks.get(bk), now)) continue;
      // A shadow op has its own window (the real rule's is untouched) and never blocks.
      const ck = `${op.shadow === true ? 'shadow\u0001' : ''}${op.rule}\u0000${bk}`;
      let c = this.counters.get(ck);
      if (!c) {
        this.counterRoom(COUNTER_BYTES + 2 * ck.length + 8 * op.increment, now);
        this.counters.set(ck, (c = { times: [], windowMs: op.windowMs, expiresAt: 0 }));
        this.counterBytes += COUNTER_BYTES + 2 * ck.length;
      }
      const from = now - op.windowMs;
      let drop = 0;
      while (drop < c.times.length && c.times[drop]! <= from) drop++;
      if (drop > 0) c.times.splice(0, drop);
      for (let i = 0; i < op.increment; i++) c.times.push(now);
      this.counterBytes += 8 * (op.increment - drop);
      c.expiresAt = now + op.windowMs;
      if (c.times.length >= op.threshold && op.shadow === true) {
        this.dropCounter(ck, c);
        const would = { kind: op.kind, subject: op.subject, reason: op.reason, createdBy: `rule:${op.rule}`, createdAt: now, ttlMs: 0, expiresAt: now, rule: op.rule, level: 0 };
        (wouldBlock ??= []).push(would);
      } else if (c.times.length >= op.threshold) {
        const prev = this.offenses.get(bk);
        const level = prev && prev.expiresAt > now ? prev.level + 1 : 1;
        if (prev === undefined) this.counterBytes += OFFENSE_BYTES + 2 * bk.length;
        this.offenses.set(bk, { level, expiresAt: now + op.memoryMs });
        const ttl = ttlForLevel(op.ttls, level);
        const record: BlockRecord = {
          kind: op.kind,
          subject: op.subject,
          reason: op.reason,
          createdBy: `rule:${op.rule}`,
          createdAt: now,
          ttlMs: ttl,
          expiresAt: now + ttl,
          rule: op.rule,
          level,
        };
        this.blocks.set(bk, record);
        this.dropCounter(ck, c);
        created.push(record);
      }
    }
    let out: EvaluateResult = replayed ? { blocked, created, replayed } : { blocked, created };
    if (wouldBlock !== undefined) out = { ...out, wouldBlock };
    return watches !== undefined && watches.length > 0 ? { ...out, watched: this.watch(watches, now) } : out;
  }

  async peek(check: readonly SubjectRef[], claims?: readonly Claim[]): Promise<PeekResult> {
    const now = this.now();
    let blocked: BlockRecord | undefined;
    for (const s of check) {
      blocked = this.live(this.blocks.get(key(s.kind, s.subject)), now);
      if (blocked) break;
    }
    const replayed = claims?.some((c) => (this.claims.get(c.key) ?? 0) > now) === true;
    return { blocked, replayed };
  }

  async block(record: BlockRecord): Promise<void> {
    if (isCidr(record.kind, record.subject)) {
      this.cidrs.set(record.subject, record);
      this.emit({ type: 'cidr' });
    } else this.blocks.set(key(record.kind, record.subject), record);
  }

  async unblock(kind: SubjectKind, subject: string): Promise<boolean> {
    const now = this.now();
    if (isCidr(kind, subject)) {
      const had = this.live(this.cidrs.get(subject), now) !== undefined;
      this.cidrs.delete(subject);
      this.emit({ type: 'cidr' });
      return had;
    }
    const k = key(kind, subject);
    const had = this.live(this.blocks.get(k), now) !== undefined;
    this.blocks.delete(k);
    this.emit({ type: 'unblock', kind, subject });
    return had;
  }

  async inspect(kind: SubjectKind, subject: string, rules: readonly RuleWindow[]): Promise<Inspection> {
    const now = this.now();
    const bk = key(kind, subject);
    const block = isCidr(kind, subject) ? this.live(this.cidrs.get(subject), now) : this.live(this.blocks.get(bk), now);
    const counters = rules.map((rule) => {
      const c = this.counters.get(`${rule.name}\u0000${bk}`);
      return { rule: rule.name, count: c ? c.times.filter((t) => t > now - rule.windowMs).length : 0 };
    });
    const o = this.offenses.get(bk);
    return { block, counters, offenses: o && o.expiresAt > now ? o.level : 0 };
  }

  async list(cursor: string | null, count: number, kind?: SubjectKind): Promise<ListPage> {
    const now = this.now();
    const all = [...this.blocks.values(), ...this.cidrs.values()].filter((r) => this.live(r, now) && (kind === undefined || r.kind === kind));
    const start = cursor === null ? 0 : Number(cursor) || 0;
    const items = all.slice(start, start + count);
    return { items, next: start + count < all.length ? String(start + count) : null };
  }

  async loadCidrs(): Promise<BlockRecord[]> {
    const now = this.now();
    return [...this.cidrs.values()].filter((r) => this.live(r, now));
  }

  async countActive(): Promise<number> {
    const now = this.now();
    let n = 0;
    for (const r of this.blocks.values()) if (this.live(r, now)) n++;
    for (const r of this.cidrs.values()) if (this.live(r, now)) n++;
    return n;
  }

  onEvent(listener: (event: StoreEvent) => void): void {
    this.listeners.push(listener);
  }

  private emit(e: StoreEvent): void {
    for (const l of this.listeners) l(e);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}
