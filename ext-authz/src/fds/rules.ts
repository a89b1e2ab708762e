/**
 * Detection rules compiled for the hot path: outcome event → rules that
 * count it, so a Check looks up only the rules its outcomes touch.
 */
import { formatDuration, type FdsRuleConfig } from './config.js';
import type { SubjectKind } from './subjects.js';
import type { CounterOp } from './store/store.js';

export interface CompiledRule {
  readonly name: string;
  readonly kind: SubjectKind;
  readonly threshold: number;
  readonly windowMs: number;
  readonly ttls: readonly number[];
  readonly memoryMs: number;
  readonly routes: ReadonlySet<string> | undefined;
  readonly reason: string;
}

export interface CompiledRules {
  /** event → kind → rules. */
  readonly byEvent: ReadonlyMap<string, ReadonlyMap<string, readonly CompiledRule[]>>;
  /** Subject kinds some `request` rule counts (the stage reports `request` only for these). */
  readonly requestKinds: readonly SubjectKind[];
  readonly all: readonly CompiledRule[];
}

export function compileRules(rules: readonly FdsRuleConfig[]): CompiledRules {
  const byEvent = new Map<string, Map<string, CompiledRule[]>>();
  const all: CompiledRule[] = [];
  for (const r of rules) {
    const compiled: CompiledRule = {
      name: r.name,
      kind: r.subject,
      threshold: r.threshold,
      windowMs: r.window,
      ttls: [r.block, ...(r.escalate?.ttls ?? [])],
      memoryMs: r.escalate?.memory ?? 86_400_000,
      routes: r.routes ? new Set(r.routes) : undefined,
      reason: r.reason ?? `${r.threshold} × ${r.events.join('|')} within ${formatDuration(r.window)} (rule ${r.name})`,
    };
    all.push(compiled);
    for (const event of new Set(r.events)) {
      let byKind = byEvent.get(event);
      if (!byKind) byEvent.set(event, (byKind = new Map()));
      const list = byKind.get(r.subject) ?? [];
      list.push(compiled);
      byKind.set(r.subject, list);
    }
  }
  const requestKinds = [...(byEvent.get('request')?.keys() ?? [])] as SubjectKind[];
  return { byEvent, requestKinds, all };
}

/** Adds one `event` for `subject` to every rule on `route` that counts it (repeats of the same rule and subject add up). */
export function addOps(ops: CounterOp[], rules: CompiledRules, route: string, event: string, kind: string, subject: string, shadow = false): void {
  const list = rules.byEvent.get(event)?.get(kind);
  if (!list) return;
  for (const rule of list) {
    if (rule.routes && !rule.routes.has(route)) continue;
    const existing = ops.find((o) => o.rule === rule.name && o.subject === subject && (o.shadow === true) === shadow);
    if (existing) {
      (existing as { increment: number }).increment++;
      continue;
    }
    ops.push({
      rule: rule.name,
      kind: rule.kind,
      subject,
      increment: 1,
      windowMs: rule.windowMs,
      threshold: rule.threshold,
      ttls: rule.ttls,
      memoryMs: rule.memoryMs,
      reason: rule.reason,
      ...(shadow ? { shadow: true } : {}),
    });
  }
}
