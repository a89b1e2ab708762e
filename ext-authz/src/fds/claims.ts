/** The fds stage's view of the pending claims fact (declared in facts.ts). */
import type { CheckContext } from '../pipeline/context.js';
import { PENDING_CLAIMS, type PendingClaims } from './facts.js';

export type { PendingClaims };

/** Claims left by a stage and not sent yet. */
export function pendingClaims(ctx: CheckContext): PendingClaims | undefined {
  const p = ctx.get(PENDING_CLAIMS);
  return p === undefined || p.sent ? undefined : p;
}
