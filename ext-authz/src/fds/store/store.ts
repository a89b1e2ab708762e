/**
 * The storage behind FDS: block lists, sliding-window counters and offense
 * history. Two implementations with the same semantics: memory (embedded
 * default, one process) and Redis (shared by every replica). `evaluate` is
 * the hot path: block checks and counter updates of one Check in one call
 * (one Redis round trip).
 */
import type { SubjectKind } from '../subjects.js';
import type { DeviceStore } from './devices.js';

export interface BlockRecord {
  readonly kind: SubjectKind;
  /** Canonical subject; for `ip` also a CIDR range like `10.0.0.0/8`. */
  readonly subject: string;
  readonly reason: string;
  /** `admin:<who>` or `rule:<name>`. */
  readonly createdBy: string;
  /** Epoch ms. */
  readonly createdAt: number;
  /** null = until unblocked. */
  readonly ttlMs: number | null;
  readonly expiresAt: number | null;
  /** Set for rule blocks: which rule and the offense level (1 = first block, 2 = escalated...). */
  readonly rule?: string;
  readonly level?: number;
}

export interface SubjectRef {
  readonly kind: SubjectKind;
  readonly subject: string;
}

/** One counter update: `increment` events for (rule, subject); blocks when the window holds `threshold`. */
export interface CounterOp {
  readonly rule: string;
  readonly kind: SubjectKind;
  readonly subject: string;
  readonly increment: number;
  readonly windowMs: number;
  readonly threshold: number;
  /** Block TTL by offense level: ttls[0] first time, ttls[1] second..., the last repeats. */
  readonly ttls: readonly number[];
  /** How long earlier offenses are remembered (recidive). */
  readonly memoryMs: number;
  readonly reason: string;
  /** Only when no claim of the call was replayed (`fresh`), or only when one was (`replay`); always when unset. */
  readonly when?: 'fresh' | 'replay';
  /**
   * From a shadowed route or stage: counted in a counter of its own (the real
   * rule's window is untouched) and never blocking; crossing the threshold is
   * reported in `wouldBlock`, so a rule or route can be rolled out in shadow first.
   */
  readonly shadow?: boolean;
}

/**
 * A single-use claim (a proof's jti): set-if-absent in the same call as the
 * block checks and counters, after the block checks. Kept until `expiresAt`
 * by the store's clock, never shorter than `minTtlMs`.
 */
export interface Claim {
  /** Scoped key, e.g. `dpop:<gateway>:<thumbprint>:<jti hash>`; the store adds its prefix. */
  readonly key: string;
  readonly expiresAt: number;
  readonly minTtlMs: number;
}

export interface EvaluateResult {
  /** The first checked subject that is blocked, with its record. */
  readonly blocked: BlockRecord | undefined;
  /** Blocks created by this call's counter updates. */
  readonly created: readonly BlockRecord[];
  /** A claim was already taken (a replay); no claim of the call was set. */
  readonly replayed?: boolean;
  /** Shadow ops that reached their threshold: the blocks they would have created (none was). */
  readonly wouldBlock?: readonly BlockRecord[];
  /** One state per watch of the call, in order (absent when the call had none). */
  readonly watched?: readonly WatchState[];
}

/** What a dry run may know (`passgate explain`): reads only. */
export interface PeekResult {
  readonly blocked: BlockRecord | undefined;
  /** A claim of the call is taken already (the request would be a replay). */
  readonly replayed: boolean;
}

// ---- Sessions (the oidc capability). Kept apart from the FDS keys: every key is built by the
// key layout's `session` function (keys.ts) and carries the session's (or flow's) own hash tag.

/**
 * A key the Check's one store call checks and touches: a session that must
 * still exist with `version`; its idle TTL is renewed to `ttlMs`.
 */
export interface Watch {
  readonly id: string;
  readonly version: string;
  readonly ttlMs: number;
}

/** live: as expected (TTL renewed); changed: exists with another version (TTL renewed); gone: deleted or expired. */
export type WatchState = 'live' | 'changed' | 'gone';

/** A session as stored: only the version and the absolute expiry are readable; `sealed` is encrypted by the caller. */
export interface SessionRecord {
  readonly version: string;
  readonly sealed: string;
  /** Epoch ms after which the session is over whatever its activity. */
  readonly absoluteExpiresAt: number;
}

/** The operations sessions need beside the Check's one call (login, refresh, logout; not per Check). */
export interface SessionStore {
  /** Creates a session, and adds its id to the index sets (back-channel logout by sid or sub). */
  putSession(id: string, record: SessionRecord, ttlMs: number, index: readonly string[]): Promise<void>;
  /** Reads a session and renews its idle TTL in one call; undefined when gone. */
  readSession(id: string, ttlMs: number): Promise<SessionRecord | undefined>;
  /** Rewrites a session only if it still has `expectedVersion` (a refresh); false otherwise. */
  replaceSession(id: string, expectedVersion: string, record: SessionRecord, ttlMs: number): Promise<boolean>;
  /** False when there was none. */
  deleteSession(id: string): Promise<boolean>;
  /** Session ids listed under an index entry (which may include ended sessions). */
  indexedSessions(index: string): Promise<string[]>;
  /** A login flow's state, single use, kept `ttlMs`. */
  putFlow(id: string, value: string, ttlMs: number): Promise<void>;
  /** Reads and deletes a flow in one step: a second take gets undefined. */
  takeFlow(id: string): Promise<string | undefined>;
  /** Takes the session's refresh lock for `ttlMs` (token identifies the holder); false when held by another. */
  lock(id: string, token: string, ttlMs: number): Promise<boolean>;
  /** Extends the lock only if `token` still holds it. */
  renewLock(id: string, token: string, ttlMs: number): Promise<boolean>;
  /** Releases the lock only if `token` still holds it. */
  unlock(id: string, token: string): Promise<void>;
}

export interface RuleWindow {
  readonly name: string;
  readonly windowMs: number;
}

export interface CounterState {
  readonly rule: string;
  readonly count: number;
}

export interface Inspection {
  readonly block: BlockRecord | undefined;
  readonly counters: readonly CounterState[];
  /** Earlier rule blocks still remembered for escalation. */
  readonly offenses: number;
}

export interface ListPage {
  readonly items: readonly BlockRecord[];
  /** Pass back to get the next page; null when done. */
  readonly next: string | null;
}

export type StoreEvent =
  | { readonly type: 'unblock'; readonly kind: SubjectKind; readonly subject: string }
  | { readonly type: 'cidr' }
  /** The event stream may have had a gap (reconnect): drop every cached fact. */
  | { readonly type: 'resync' };

export interface FdsStore extends SessionStore {
  readonly kind: 'memory' | 'redis';
  evaluate(check: readonly SubjectRef[], ops: readonly CounterOp[], claims?: readonly Claim[], watches?: readonly Watch[]): Promise<EvaluateResult>;
  /** Block lookups and claim existence without writing anything (one MGET on Redis). */
  peek(check: readonly SubjectRef[], claims?: readonly Claim[]): Promise<PeekResult>;
  /** Creates or replaces a block (CIDR ranges included). */
  block(record: BlockRecord): Promise<void>;
  /** Removes a block and tells every replica; false when there was none. */
  unblock(kind: SubjectKind, subject: string): Promise<boolean>;
  inspect(kind: SubjectKind, subject: string, rules: readonly RuleWindow[]): Promise<Inspection>;
  list(cursor: string | null, count: number, kind?: SubjectKind): Promise<ListPage>;
  /** Unexpired CIDR blocks. */
  loadCidrs(): Promise<BlockRecord[]>;
  /** Number of active blocks (for the gauge). */
  countActive(): Promise<number>;
  onEvent(listener: (event: StoreEvent) => void): void;
  /** Resolves once connected, or after `limitMs` (never rejects: starting with the store down is allowed). */
  ready(limitMs: number): Promise<boolean>;
  close(): Promise<void>;
  /** The app-signature device registry (devices.ts): off the hot path, keys under their own hash tag. */
  readonly devices: DeviceStore;
}

/** A CIDR range block (kept apart from exact blocks). Only for `ip`: a user or client id may contain a slash. */
export function isCidr(kind: SubjectKind, subject: string): boolean {
  return kind === 'ip' && subject.includes('/');
}

/** Which TTL applies at offense `level` (1-based). */
export function ttlForLevel(ttls: readonly number[], level: number): number {
  return ttls[Math.min(level, ttls.length) - 1]!;
}
