/**
 * The FDS outcome events a config may count, declared by the stage types
 * that emit them (`StageDefinition.events`): a rule naming an event no stage
 * type declares is a config error; a rule no stage of this config can
 * trigger (event, subject kind) is a load-time warning naming the rule.
 * Pure: stage definitions and the config are passed in.
 */
import type { DeclaredEvent } from '../pipeline/events.js';

export type { DeclaredEvent };

export interface EventSource {
  readonly type: string;
  readonly events?: readonly DeclaredEvent[];
}

interface RuleLike {
  readonly name: string;
  readonly events: readonly string[];
  readonly subject: string;
}

/** event → subject kinds, over the given stage types. */
export function eventCatalog(sources: readonly EventSource[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const s of sources) {
    for (const e of s.events ?? []) {
      let kinds = out.get(e.event);
      if (!kinds) out.set(e.event, (kinds = new Set()));
      for (const k of e.kinds) kinds.add(k);
    }
  }
  return out;
}

/** Rule events no stage type declares: `[ruleIndex, event]` pairs. */
export function unknownRuleEvents(rules: readonly RuleLike[], all: readonly EventSource[]): Array<{ index: number; eventIndex: number; event: string; known: string[] }> {
  const catalog = eventCatalog(all);
  const known = [...catalog.keys()].sort();
  const out: Array<{ index: number; eventIndex: number; event: string; known: string[] }> = [];
  rules.forEach((r, index) => r.events.forEach((event, eventIndex) => {
    if (!catalog.has(event)) out.push({ index, eventIndex, event, known });
  }));
  return out;
}

/** Rules that no stage used by this config can trigger for the rule's subject kind. */
export function untriggerableRules(rules: readonly RuleLike[], used: readonly EventSource[]): Array<{ rule: string; why: string }> {
  const catalog = eventCatalog(used);
  const out: Array<{ rule: string; why: string }> = [];
  for (const r of rules) {
    const fires = r.events.some((e) => catalog.get(e)?.has(r.subject) === true);
    if (!fires) {
      const emitters = r.events.map((e) => `${e}: ${[...(catalog.get(e) ?? [])].join(', ') || 'no stage here'}`).join('; ');
      out.push({ rule: r.name, why: `no stage in this config reports ${r.events.join('|')} for subject ${r.subject} (${emitters})` });
    }
  }
  return out;
}
