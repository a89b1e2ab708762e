/**
 * The `authorize` stage: allows the chain to go on only when the identity an
 * earlier stage established (mtls, jwt...) fits the route. Every listed
 * condition must hold; within a list any entry may match. No identity at all
 * is a 401 (`identity_required`), a known caller that does not fit is a 403
 * (`forbidden_identity`).
 */
import { z } from 'zod';
import { CONTINUE, deny, type StageResult } from '../pipeline/decision.js';
import type { Identity } from '../pipeline/context.js';
import type { StageDefinition } from '../stages/stage.js';

/** `"alice@acme"` exact, or `"*@acme"`-style: a single trailing or leading `*` means suffix/prefix. */
const subjectPattern = z
  .string()
  .min(1)
  .refine((s) => s === '*' || s.indexOf('*') === -1 || (s.indexOf('*') === s.lastIndexOf('*') && (s.startsWith('*') || s.endsWith('*'))), {
    message: 'use an exact value, or one "*" at the start or end',
  });

const schema = z
  .strictObject({
    type: z.literal('authorize'),
    subjects: z.array(subjectPattern).min(1).optional(),
    kinds: z.array(z.enum(['user', 'service', 'developer'])).min(1).optional(),
    /** The caller must be in at least one of these groups. */
    groups: z.array(z.string().min(1)).min(1).optional(),
    /** Each named attribute must have one of the listed values. */
    attributes: z.record(z.string().min(1), z.array(z.string()).min(1)).optional(),
    /** How the identity was established (`mtls`, `jwt`...). */
    sources: z.array(z.string().min(1)).min(1).optional(),
  })
  .refine((o) => o.subjects || o.kinds || o.groups || o.attributes || o.sources, {
    message: 'set at least one of subjects, kinds, groups, attributes, sources (an authorize stage with none would allow every identity)',
  });
type Options = z.infer<typeof schema>;

type Matcher = (value: string) => boolean;

function compileSubject(p: string): Matcher {
  if (p === '*') return () => true;
  if (p.endsWith('*')) {
    const prefix = p.slice(0, -1);
    return (v) => v.startsWith(prefix);
  }
  if (p.startsWith('*')) {
    const suffix = p.slice(1);
    return (v) => v.endsWith(suffix);
  }
  return (v) => v === p;
}

export const authorizeStage: StageDefinition<Options> = {
  type: 'authorize',
  schema,
  description: 'Deny unless the established identity matches the listed subjects, kinds, groups, attributes or sources.',
  create(options) {
    const subjects = options.subjects?.map(compileSubject);
    const kinds = options.kinds ? new Set<string>(options.kinds) : undefined;
    const groups = options.groups ? new Set(options.groups) : undefined;
    const attributes = options.attributes ? Object.entries(options.attributes).map(([k, vs]) => [k, new Set(vs)] as const) : undefined;
    const sources = options.sources ? new Set(options.sources) : undefined;
    const missing = deny(401, 'identity_required', 'the route needs an authenticated identity and none was established');

    const why = (id: Identity): string | undefined => {
      if (kinds && !kinds.has(id.kind)) return `kind ${id.kind} not allowed`;
      if (sources && !sources.has(id.source)) return `identity source ${id.source} not allowed`;
      if (subjects && !subjects.some((m) => m(id.subject))) return `subject ${id.subject} not allowed`;
      if (groups && !id.groups.some((g) => groups.has(g))) return 'in none of the required groups';
      if (attributes) {
        for (const [k, allowed] of attributes) {
          const v = id.attributes[k];
          if (v === undefined || !allowed.has(v)) return `attribute ${k}=${v ?? '(absent)'} not allowed`;
        }
      }
      return undefined;
    };

    return {
      type: 'authorize',
      run(ctx): StageResult {
        const id = ctx.identity;
        if (id === undefined || id.kind === 'anonymous') return missing;
        const problem = why(id);
        if (problem === undefined) return CONTINUE;
        ctx.audit['authorize'] = problem;
        return deny(403, 'forbidden_identity', `${id.subject}: ${problem}`);
      },
    };
  },
};
