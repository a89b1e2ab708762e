import { z } from 'zod';
import { ALLOW } from '../pipeline/decision.js';
import type { StageDefinition } from './stage.js';

const schema = z.strictObject({ type: z.literal('allow') });

/** Ends the chain with an allow: for public routes such as health checks. */
export const allowStage: StageDefinition<z.infer<typeof schema>> = {
  type: 'allow',
  schema,
  description: 'Allow the request; later stages do not run.',
  create: () => ({ type: 'allow', run: () => ALLOW }),
};
