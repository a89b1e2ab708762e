/**
 * Every stage type the config may name. A capability adds its stage here;
 * the config schema is derived from this list, so an unknown `type` or a bad
 * option is a startup error naming the key. Embedders (and tests) can add
 * their own types with `registerStageDefinition` before loading a config.
 */
import { z } from 'zod';
import type { StageDefinition } from './stage.js';
import { issueMessage } from '../config/common.js';
import { allowStage } from './allow.js';
import { denyStage } from './deny.js';
import { requireHeadersStage } from './require-headers.js';
import { identityStages } from '../identity/stages.js';
import { fdsStages } from '../fds/stages.js';
import { passportStages } from '../passport/stages.js';
import { tokensStages } from '../tokens/stages.js';

const definitions: StageDefinition<any>[] = [
  allowStage,
  denyStage,
  requireHeadersStage,
  ...identityStages,
  ...fdsStages,
  ...passportStages,
  ...tokensStages,
];
const byType = new Map(definitions.map((d) => [d.type, d]));

export function stageDefinitions(): readonly StageDefinition<any>[] {
  return definitions;
}

export function stageDefinition(type: string): StageDefinition<any> | undefined {
  return byType.get(type);
}

/** Adds a stage type (a library embedding Passgate, or a test). Its name must be new. */
export function registerStageDefinition(def: StageDefinition<any>): void {
  if (byType.has(def.type)) throw new Error(`stage type "${def.type}" is already registered`);
  definitions.push(def);
  byType.set(def.type, def);
  union = undefined;
}

export type StageConfig = { type: string } & Record<string, unknown>;

let union: z.ZodType | undefined;
function stageUnion(): z.ZodType {
  union ??= z.discriminatedUnion(
    'type',
    definitions.map((d) => d.schema) as unknown as [z.ZodObject<any>, ...z.ZodObject<any>[]],
    {
      error: (issue) =>
        issue.code === 'invalid_union' ? `unknown stage type; known types: ${definitions.map((d) => d.type).join(', ')}` : undefined,
    },
  );
  return union;
}

/**
 * `- allow` is shorthand for `- type: allow`. The union is looked up on each
 * parse (not z.lazy, which caches) so types registered later are known.
 */
export const stageSchema: z.ZodType<StageConfig> = z.unknown().transform((raw, ctx) => {
  const value = typeof raw === 'string' ? { type: raw } : raw;
  const result = stageUnion().safeParse(value);
  if (result.success) return result.data as StageConfig;
  for (const issue of result.error.issues) {
    ctx.addIssue({ code: 'custom', message: issueMessage(issue), path: issue.path as PropertyKey[] });
  }
  return z.NEVER;
}) as unknown as z.ZodType<StageConfig>;
