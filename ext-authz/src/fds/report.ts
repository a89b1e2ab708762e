/**
 * Outcomes found outside a Check (the e2ee processor refusing a body before
 * Envoy calls Check) counted by the detection rules: the same counter
 * updates the fds stage makes, in ONE store call, which is the only store
 * call of that request since its Check never runs. Rules restricted to
 * `routes` do not count them (there is no route yet). Never rejects.
 */
import type { Outcome } from '../pipeline/context.js';
import type { FdsEngine } from './engine.js';
import { withoutExempt } from './exempt.js';
import { addOps } from './rules.js';
import type { CounterOp } from './store/store.js';
import { canonicalIp } from './subjects.js';

/** The counter updates `outcomes` make (exempt IPs left out); empty when no rule counts them. */
export function outcomeOps(engine: FdsEngine, outcomes: readonly Outcome[]): CounterOp[] {
  const rules = engine.rules;
  if (rules.all.length === 0) return [];
  const ops: CounterOp[] = [];
  for (const o of outcomes) {
    const subject = o.subjectKind === 'ip' ? (canonicalIp(o.subject) ?? '') : o.subject;
    if (subject !== '') addOps(ops, rules, '', o.event, o.subjectKind, subject);
  }
  return withoutExempt(ops, engine.settings.exempt.ip) as CounterOp[];
}

/** Counts `outcomes` in one store call bounded by `limitMs`; false when nothing was counted (no rule, or the store failed). */
export async function reportOutcomes(engine: FdsEngine, outcomes: readonly Outcome[], limitMs: number): Promise<boolean> {
  const ops = outcomeOps(engine, outcomes);
  if (ops.length === 0) return false;
  try {
    await engine.evaluate([], ops, limitMs);
    return true;
  } catch {
    // The store is down: the request is refused already; the engine's metrics count the failure.
    return false;
  }
}
