/**
 * Every stage type the config may name. A capability adds its stage here;
 * the config schema is derived from this list, so an unknown `type` or a bad
 * option is a startup error naming the key.
 */
import { z } from 'zod';
import type { StageDefinition } from './stage.js';
import { allowStage } from './allow.js';
import { denyStage } from './deny.js';
import { requireHeadersStage } from './require-headers.js';
import { identityStages } from '../identity/stages.js';
import { fdsStages } from '../fds/stages.js';
import { passportStages } from '../passport/stages.js';

export const STAGE_DEFINITIONS: readonly StageDefinition<any>[] = [
  allowStage,
  denyStage,
  requireHeadersStage,
  ...identityStages,
  ...fdsStages,
  ...passportStages,
];

const byType = new Map(STAGE_DEFINITIONS.map((d) => [d.type, d]));

export function stageDefinition(type: string): StageDefinition<any> | undefined {
  return byType.get(type);
}

const known = STAGE_DEFINITIONS.map((d) => d.type);

/** `- allow` is shorthand for `- type: allow`. */
export type StageConfig = { type: string } & Record<string, unknown>;

export const stageSchema: z.ZodType<StageConfig> = z.preprocess(
  (v) => (typeof v === 'string' ? { type: v } : v),
  z.discriminatedUnion(
    'type',
    STAGE_DEFINITIONS.map((d) => d.schema) as unknown as [z.ZodObject<any>, ...z.ZodObject<any>[]],
    { error: (issue) => (issue.code === 'invalid_union' ? `unknown stage type; known types: ${known.join(', ')}` : undefined) },
  ),
) as unknown as z.ZodType<StageConfig>;
