/**
 * THE composition: every capability the service runs, in one list. The root
 * config schema, the stage types and the prepare order are all derived from
 * it. Adding a capability = one folder exporting one `Capability` object +
 * one line here. Embedders pass more with `compose(extra)` (or
 * `PassgateService.start({ capabilities })`), never by mutating a global.
 */
import type { z } from 'zod';
import { buildConfigSchema, type PassgateConfig } from '../config/schema.js';
import { ConfigError } from '../config/errors.js';
import type { StageDefinition } from '../stages/stage.js';
import type { Capability } from './capability.js';
import { coreCapability } from '../stages/capability.js';
import { identityCapability } from '../identity/capability.js';
import { fdsCapability } from '../fds/capability.js';
import { passportCapability } from '../passport/capability.js';
import { tokensCapability } from '../tokens/capability.js';
import { oauth2Capability } from '../oauth2/capability.js';
import { e2eeCapability } from '../e2ee/capability.js';
import { oidcCapability } from '../oidc/capability.js';
import { appSignatureCapability } from '../app-signature/capability.js';

export const CAPABILITIES: readonly Capability<any>[] = [
  coreCapability,
  identityCapability,
  fdsCapability,
  passportCapability,
  tokensCapability,
  oauth2Capability,
  e2eeCapability,
  oidcCapability,
  appSignatureCapability,
];

export interface StageType {
  readonly definition: StageDefinition<any, any>;
  readonly capability: Capability<any>;
}

export interface Composition {
  /** In prepare order: every capability after the ones it needs. */
  readonly capabilities: readonly Capability<any>[];
  readonly stageTypes: ReadonlyMap<string, StageType>;
  readonly schema: z.ZodType<PassgateConfig>;
}

/** Checks names, sections, stage types and dependencies (missing or cyclic: a startup error) and orders by dependency. */
export function compose(extra: readonly Capability<any>[] = []): Composition {
  const all = [...CAPABILITIES, ...extra];
  const problems: string[] = [];
  const byName = new Map<string, Capability<any>>();
  const sections = new Map<string, string>();
  const stageTypes = new Map<string, StageType>();
  for (const cap of all) {
    if (byName.has(cap.name)) problems.push(`capability "${cap.name}" is listed twice`);
    byName.set(cap.name, cap);
    if (cap.section) {
      const owner = sections.get(cap.section.key);
      if (owner !== undefined) problems.push(`capability "${cap.name}": config section "${cap.section.key}" already belongs to "${owner}"`);
      sections.set(cap.section.key, cap.name);
    }
    for (const definition of cap.stages ?? []) {
      const owner = stageTypes.get(definition.type);
      if (owner !== undefined) problems.push(`capability "${cap.name}": stage type "${definition.type}" already comes from "${owner.capability.name}"`);
      else stageTypes.set(definition.type, { definition, capability: cap });
    }
  }
  const ordered: Capability<any>[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (cap: Capability<any>, chain: string[]): void => {
    const s = state.get(cap.name);
    if (s === 'done') return;
    if (s === 'visiting') {
      problems.push(`capabilities depend on each other in a cycle: ${[...chain, cap.name].join(' -> ')}`);
      return;
    }
    state.set(cap.name, 'visiting');
    for (const need of cap.needs ?? []) {
      const dep = byName.get(need);
      if (dep === undefined) problems.push(`capability "${cap.name}" needs "${need}", which is not in the composition`);
      else visit(dep, [...chain, cap.name]);
    }
    state.set(cap.name, 'done');
    ordered.push(cap);
  };
  for (const cap of byName.values()) visit(cap, []);
  if (problems.length > 0) throw new ConfigError('(capabilities)', problems);
  const schema = buildConfigSchema(
    all.flatMap((c) => (c.section ? [c.section] : [])),
    [...stageTypes.values()].map((t) => t.definition.schema),
    all.flatMap((c) => {
      const check = c.check;
      if (check === undefined) return [];
      const defs = [...stageTypes.values()].map((t) => t.definition);
      return [(config: PassgateConfig) => check(config, defs)];
    }),
  );
  return { capabilities: ordered, stageTypes, schema };
}

let standard: Composition | undefined;
/** The composition of the built-in capabilities alone. */
export function defaultComposition(): Composition {
  standard ??= compose();
  return standard;
}
