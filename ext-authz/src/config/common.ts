/** Schema pieces several config sections share, so one rule gives one message everywhere. */
import { z } from 'zod';

function compiles(pattern: string): boolean {
  try {
    new RegExp(pattern);
    return true;
  } catch {
    return false;
  }
}

/** A JavaScript regular expression, checked at load so a typo is a startup error. */
export const regexSchema = z.string().min(1).refine(compiles, { message: 'is not a valid regular expression' });

/** A lowercase HTTP header name (RFC 9110 token characters), as Envoy hands them to us. */
export const headerNameSchema = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9a-z-]+$/, 'must be a lowercase HTTP header name (token characters only)');

/** What a schema problem says, without its path: the same words wherever it is reported. */
export function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') {
    return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')} (check the spelling)`;
  }
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) return 'is required';
  return issue.message;
}
