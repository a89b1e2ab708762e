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
  type Inspection,
  type ListPage,
  type RuleWindow,
  type StoreEvent,
  type SubjectRef,
} from './store.js';
import { memoryDevices, type DeviceStore } from './devices.js';

/** Map entry overhead plus the key's UTF-16 text. */
const claimSize = (k: string) => 64 + 2 * k.length;

const key = (kind: string, subject: string) => `${kind}\u0000${subject}`;

export class MemoryStore implements FdsStore {
  readonly kind = 'memory' as const;
  private readonly blocks = new Map<string, BlockRecord>();
  private readonly cidrs = new Map<string, BlockRecord>();
  private readonly counters = new Map<string, { times: number[]; windowMs: number; expiresAt: number }>();
  private readonly offenses = new Map<string, { level: number; expiresAt: number }>();
  private readonly listeners: Array<(e: StoreEvent) => void> = [];
  /** Single-use claims (proof jtis) → expiry. Never evicted early (that would allow a replay): full means refuse. */
  private readonly claims = new Map<string, number>();
  private claimBytes = 0;
  private sweeper: NodeJS.Timeout;
  readonly devices: DeviceStore;

  constructor(
    private readonly now: () => number = Date.now,
    /** Bound of the claim map, by bytes of key text (+ per-entry overhead). */
    private readonly maxClaimBytes = 16 * 1024 * 1024,
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
    for (const [k, c] of this.counters) if (c.expiresAt <= now) this.counters.delete(k);
    for (const [k, o] of this.offenses) if (o.expiresAt <= now) this.offenses.delete(k);
    this.sweepClaims(now);
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

  async evaluate(check: readonly SubjectRef[], ops: readonly CounterOp[], claims?: readonly Claim[]): Promise<EvaluateResult> {
    const now = this.now();
    let blocked: BlockRecord | undefined;
    for (const s of check) {
      blocked = this.live(this.blocks.get(key(s.kind, s.subject)), now);
      if (blocked) break;
    }
    const replayed = claims !== undefined && claims.length > 0 && blocked === undefined ? this.claim(claims, now) : false;
    const created: BlockRecord[] = [];
    for (const op of ops) {
      if (op.when !== undefined && (op.when === 'replay') !== replayed) continue;
      const bk = key(op.kind, op.subject);
      if (this.live(this.blocks.get(bk), now)) continue;
      const ck = `${op.rule}\u0000${bk}`;
      let c = this.counters.get(ck);
      if (!c) this.counters.set(ck, (c = { times: [], windowMs: op.windowMs, expiresAt: 0 }));
      const from = now - op.windowMs;
      let drop = 0;
      while (drop < c.times.length && c.times[drop]! <= from) drop++;
      if (drop > 0) c.times.splice(0, drop);
      for (let i = 0; i < op.increment; i++) c.times.push(now);
      c.expiresAt = now + op.windowMs;
      if (c.times.length >= op.threshold) {
        const prev = this.offenses.get(bk);
        const level = prev && prev.expiresAt > now ? prev.level + 1 : 1;
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
        this.counters.delete(ck);
        created.push(record);
      }
    }
    return replayed ? { blocked, created, replayed } : { blocked, created };
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
