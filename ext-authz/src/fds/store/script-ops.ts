/**
 * A Check's store work as a list of ops for the evaluate script (lua/evaluate.ts), each naming its keys,
 * and the split of that list into one script call per Redis Cluster slot.
 *
 * Every key of one op shares one hash tag (keys.ts), so an op lives in one slot. On one node (or Sentinel,
 * or the single-tag layout) the whole list is one call and the script's order holds exactly: block checks,
 * then claims, then counters, atomically. On a cluster each slot group runs that order over its own ops,
 * the calls go out concurrently (one round trip of wall time: ioredis pipelines per node), and the answers
 * merge: the first blocked subject in the Check's order, any replay, every block created. What can differ
 * from the one-call order (docs/fds.md, "FDS on Redis Cluster"):
 *  - a claim is set although a subject in ANOTHER slot is blocked (the Check is still denied as blocked;
 *    the proof id is spent, which only refuses its reuse);
 *  - with claims in several slots, a replay of one does not keep the others from being set;
 *  - counters marked for one claim outcome (`when`) in a slot without the claims are applied as if no claim
 *    was replayed; when a replay shows up elsewhere, a second call per such slot retracts those entries and
 *    applies the replay counters instead (a second round trip only for a replayed, unblocked Check). A block
 *    the first call's counters created stands.
 * Adding an op type: a builder here, its Lua block and its SHAPE entry in the script, nothing else.
 */
import calculateSlot from 'cluster-key-slot';
import type { BlockRecord, Claim, CounterOp, EvaluateResult, Watch, WatchState } from './store.js';
import type { KeyLayout } from './keys.js';

export interface ScriptOp {
  readonly type: 'check' | 'claim' | 'count' | 'retract' | 'watch';
  /** Every key shares one hash tag: the op's slot is that of keys[0]. */
  readonly keys: readonly string[];
  readonly args: ReadonlyArray<string | number>;
  /** check ops: the place in the Check's order of checks (the first blocked one is answered); watch ops: the watch's index. */
  readonly at?: number;
  /** count ops: what a retract or a replay follow-up needs. */
  readonly count?: { readonly when: '' | 'f' | 'r'; readonly tag: string; readonly increment: number; readonly shadow: boolean };
}

/** The letter of each op type in a Check's shape string (lua/evaluate.ts). */
const LETTER: Readonly<Record<ScriptOp['type'], string>> = { check: 'c', claim: 'j', count: 'n', retract: 'r', watch: 'w' };

export function checkOp(keys: KeyLayout, kind: string, subject: string, at: number): ScriptOp {
  return { type: 'check', keys: [keys.block(kind, subject)], args: NO_ARGS, at };
}

export function claimOp(keys: KeyLayout, c: Claim): ScriptOp {
  return { type: 'claim', keys: [keys.claim(c.key)], args: [Math.ceil(c.expiresAt), Math.max(1, Math.ceil(c.minTtlMs))] };
}

/** A session that must still be there with `version`; its idle TTL slides (oidc). Never blocks, counts or claims. */
export function watchOp(keys: KeyLayout, w: Watch, at: number): ScriptOp {
  return { type: 'watch', keys: [keys.session('session', w.id)], args: [w.version, Math.max(1, Math.ceil(w.ttlMs))], at };
}

/** A count op's per-Check values as one argument: "increment when tag shadow" (`-` for always). */
function countVars(increment: number, when: '' | 'f' | 'r', tag: string, shadow: boolean): string {
  return `${increment} ${when === '' ? '-' : when} ${tag} ${shadow ? 1 : 0}`;
}

/**
 * `tag` makes the op's sorted-set members unique within the Check (with the Check's nonce). Three values
 * instead of ten: the rule's constants in one ("windowMs threshold memoryMs rule ttls"), the Check's in
 * another, and the record's JSON head. Each value costs ioredis a byte count and a frame, per Check.
 */
export function countOp(keys: KeyLayout, op: CounterOp, tag: string): ScriptOp {
  const head = `{"kind":${JSON.stringify(op.kind)},"subject":${JSON.stringify(op.subject)},"reason":${JSON.stringify(op.reason)},"createdBy":${JSON.stringify(`rule:${op.rule}`)},`;
  const when = op.when === undefined ? '' : op.when === 'fresh' ? 'f' : 'r';
  const shadow = op.shadow === true;
  return {
    type: 'count',
    // A shadow op counts in its own key, so it never fills the real rule's window.
    keys: [shadow ? keys.shadowCounter(op.rule, op.kind, op.subject) : keys.counter(op.rule, op.kind, op.subject), keys.offense(op.kind, op.subject), keys.block(op.kind, op.subject)],
    args: [`${op.windowMs} ${op.threshold} ${op.memoryMs} ${op.rule} ${op.ttls.join(',')}`, countVars(op.increment, when, tag, shadow), head],
    count: { when, tag, increment: op.increment, shadow },
  };
}

function retractOp(counterKey: string, tag: string, increment: number): ScriptOp {
  return { type: 'retract', keys: [counterKey], args: [tag, increment] };
}

/** The same count, applied unconditionally (the replay follow-up). */
function unconditional(op: ScriptOp): ScriptOp {
  const c = op.count!;
  const args = op.args.slice();
  args[1] = countVars(c.increment, '', c.tag, c.shadow);
  return { ...op, args, count: { ...c, when: '' } };
}

/** One Check's part of a script call: its nonce and its ops. */
export interface CheckCall {
  readonly nonce: string;
  readonly ops: readonly ScriptOp[];
}

/** KEYS and ARGV of one script call over the Checks of `calls`, run in that order (lua/evaluate.ts). */
export function encodeBatch(calls: readonly CheckCall[]): { keys: string[]; args: Array<string | number> } {
  const keys: string[] = [];
  const args: Array<string | number> = [calls.length];
  for (const { nonce, ops } of calls) {
    let shape = '';
    for (const op of ops) shape += LETTER[op.type];
    args.push(nonce, shape);
    for (const op of ops) {
      for (const k of op.keys) keys.push(k);
      for (const v of op.args) args.push(v);
    }
  }
  return { keys, args };
}

/** Arguments a Check adds to a call (its nonce and shape, every op's keys and values): the batch bound counts these. */
export function argCount(ops: readonly ScriptOp[]): number {
  let n = 2;
  for (const op of ops) n += op.keys.length + op.args.length;
  return n;
}

/** KEYS and ARGV of one script call over one Check's `ops`. */
export function encodeCall(nonce: string, ops: readonly ScriptOp[]): { keys: string[]; args: Array<string | number> } {
  return encodeBatch([{ nonce, ops }]);
}

/** Ops grouped by the slot of their keys, each group in the list's order (so the first blocked subject can be told). */
export function groupBySlot(ops: readonly ScriptOp[]): ScriptOp[][] {
  if (ops.length === 0) return [];
  const bySlot = new Map<number, ScriptOp[]>();
  for (const op of ops) {
    const slot = calculateSlot(op.keys[0]!);
    const g = bySlot.get(slot);
    if (g === undefined) bySlot.set(slot, [op]);
    else g.push(op);
  }
  return [...bySlot.values()];
}

/** One call's reply: [op number of the first blocked check or '', its record, '1' when replayed, watch states, created...]. */
export interface CallReply {
  readonly ops: readonly ScriptOp[];
  readonly reply: readonly string[];
}

/** Merges the replies of a Check's calls: the first blocked subject in the Check's order is answered, as one call would. */
export function mergeReplies(calls: readonly CallReply[]): EvaluateResult {
  let blocked: BlockRecord | undefined;
  let blockedAt = Infinity;
  let replayed = false;
  const created: BlockRecord[] = [];
  let wouldBlock: BlockRecord[] | undefined;
  let watched: WatchState[] | undefined;
  for (const { ops, reply } of calls) {
    if (reply[0]) {
      const op = ops[Number(reply[0]) - 1];
      const at = op?.at ?? Infinity;
      const r = parseRecord(reply[1]!);
      if (r && (blocked === undefined || at < blockedAt)) {
        blocked = r;
        blockedAt = at;
      }
    }
    if (reply[2] === '1') replayed = true;
    const letters = reply[3] ?? '';
    if (letters !== '') {
      // One letter per watch op of this call, in its op order.
      let w = 0;
      for (const op of ops) if (op.type === 'watch') (watched ??= [])[op.at!] = WATCH_STATE[letters[w++] ?? 'g'] ?? 'gone';
    }
    for (let i = 4; i < reply.length; i++) {
      const r = parseRecord(reply[i]!);
      if (r === undefined) continue;
      if ((r as { shadow?: boolean }).shadow === true) (wouldBlock ??= []).push(r);
      else created.push(r);
    }
  }
  let out: EvaluateResult = replayed ? { blocked, created, replayed: true } : { blocked, created };
  if (wouldBlock !== undefined) out = { ...out, wouldBlock };
  return watched === undefined ? out : { ...out, watched: Array.from(watched, (v) => v ?? 'gone') };
}

/**
 * After a multi-slot Check that turned out replayed (and not blocked): for every call that saw no replay
 * itself, the ops that put it right: retract its `fresh` counts, apply its `replay` counts. Empty when
 * nothing needs it.
 */
export function replayFollowUps(calls: readonly CallReply[]): ScriptOp[][] {
  const out: ScriptOp[][] = [];
  for (const { ops, reply } of calls) {
    if (reply[2] === '1') continue;
    const fix: ScriptOp[] = [];
    for (const op of ops) {
      if (op.count?.when === 'f') fix.push(retractOp(op.keys[0]!, op.count.tag, op.count.increment));
      else if (op.count?.when === 'r') fix.push(unconditional(op));
    }
    if (fix.length > 0) out.push(fix);
  }
  return out;
}

export function parseRecord(json: string): BlockRecord | undefined {
  try {
    const r = JSON.parse(json) as BlockRecord;
    return typeof r === 'object' && r !== null && typeof r.subject === 'string' ? r : undefined;
  } catch {
    return undefined;
  }
}

const WATCH_STATE: Readonly<Record<string, WatchState>> = { l: 'live', c: 'changed', g: 'gone' };

const NO_ARGS: ReadonlyArray<string | number> = Object.freeze([]);
