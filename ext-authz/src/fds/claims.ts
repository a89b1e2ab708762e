/** The fds stage's view of the pending claims fact (declared in facts.ts). */
import type { CheckContext } from '../pipeline/context.js';
import { PENDING_CLAIMS, PENDING_WATCH, type PendingClaims, type PendingWatch } from './facts.js';

export type { PendingClaims, PendingWatch };

/** Claims left by a stage and not sent yet. */
export function pendingClaims(ctx: CheckContext): PendingClaims | undefined {
  const p = ctx.get(PENDING_CLAIMS);
  return p === undefined || p.sent ? undefined : p;
}

/** The watched key left by a stage and not sent yet. */
export function pendingWatch(ctx: CheckContext): PendingWatch | undefined {
  const p = ctx.get(PENDING_WATCH);
  return p === undefined || p.sent ? undefined : p;
}
