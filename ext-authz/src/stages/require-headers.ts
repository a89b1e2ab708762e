import { z } from 'zod';
import { headerNameSchema, regexSchema } from '../config/common.js';
import { CONTINUE, deny, type StageResult } from '../pipeline/decision.js';
import type { StageDefinition } from './stage.js';

const headerRule = z.strictObject({
  name: headerNameSchema,
  /** When set, the value must match this regular expression in full. */
  pattern: regexSchema.optional(),
});

const schema = z.strictObject({
  type: z.literal('require-headers'),
  headers: z.array(headerRule).min(1),
  status: z.union([z.literal(400), z.literal(401), z.literal(403)], { error: 'must be one of 400, 401, 403' }).default(400),
});

/** Denies requests missing a header (or carrying a malformed one) before any costly stage runs. */
export const requireHeadersStage: StageDefinition<z.infer<typeof schema>> = {
  type: 'require-headers',
  schema,
  description: 'Deny unless every listed header is present (and matches its pattern).',
  create(options) {
    const rules = options.headers.map((h) => ({
      name: h.name,
      pattern: h.pattern === undefined ? undefined : new RegExp(`^(?:${h.pattern})$`),
      missing: deny(options.status, 'missing_header', `header ${h.name} is missing`),
      malformed: deny(options.status, 'malformed_header', `header ${h.name} does not match ${h.pattern}`),
    }));
    return {
      type: 'require-headers',
      run(ctx): StageResult {
        const headers = ctx.request.headers;
        for (const rule of rules) {
          const value = headers[rule.name];
          if (value === undefined || value === '') return rule.missing;
          if (rule.pattern !== undefined && !rule.pattern.test(value)) return rule.malformed;
        }
        return CONTINUE;
      },
    };
  },
};
