/**
 * Single-use claims a stage wants burned in the Check's one store call (a
 * proof's jti). The stage leaves them in the context; the fds stage's
 * finish, which runs last and once per Check, sends them with the block
 * checks and counters, only when the decision is still an allow, i.e. after
 * every other check of the route passed. On a replay it answers the stage's
 * denial and counts the stage's replay outcomes in that same call.
 */
import type { Outcome } from '../pipeline/context.js';
import type { Denial } from '../pipeline/decision.js';
import { defineFact } from '../pipeline/facts.js';
import type { Claim } from './store/store.js';

// A capability that leaves claims to burn declares `needs: [fds]` (tokens does) and imports this file.
export interface PendingClaims {
  readonly claims: readonly Claim[];
  /** The answer when a claim was taken already. */
  readonly replayDenial: Denial;
  /** Reported (and counted by the detection rules) on a replay. */
  readonly replayOutcomes: readonly Outcome[];
  /** Set by whoever sent the claims, so nobody sends them twice. */
  sent: boolean;
}

export const PENDING_CLAIMS = defineFact<PendingClaims>('fds.claims');
