import { z } from 'zod';
import type { DenyStatus, StageResult } from '../pipeline/decision.js';
import type { StageDefinition } from './stage.js';

const schema = z.strictObject({
  type: z.literal('deny'),
  status: z
    .union([z.literal(401), z.literal(403), z.literal(404), z.literal(429), z.literal(503)], { error: 'must be one of 401, 403, 404, 429, 503' })
    .default(403),
  reason: z.string().regex(/^[a-z][a-z0-9_]*$/, 'reasons are snake_case words').default('denied'),
});

/** Ends the chain with a fixed deny: retired paths, maintenance windows. */
export const denyStage: StageDefinition<z.infer<typeof schema>> = {
  type: 'deny',
  schema,
  description: 'Deny the request with a fixed status and reason.',
  create(options) {
    // Built once per config load, so every Check reuses the same result object.
    const result: StageResult = { kind: 'deny', denial: { status: options.status as DenyStatus, reason: options.reason } };
    return { type: 'deny', run: () => result };
  },
};
