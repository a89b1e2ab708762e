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
import type { Claim, Watch, WatchState } from './store/store.js';

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

/**
 * A stored key a stage wants checked and touched in the Check's one store
 * call (an oidc session: still there with the cached version, idle TTL
 * renewed). Like the claims: the stage leaves it, the fds stage's finish
 * sends it with the block checks when the decision is an allow (a stage that
 * runs on a route without an fds stage sends it itself). A gone session
 * turns the allow into `goneDenial`; `settle` hears the outcome (cache upkeep).
 */
export interface PendingWatch {
  readonly watch: Watch;
  readonly goneDenial: Denial;
  settle(state: WatchState): void;
  /** Set by whoever sent it, so nobody sends it twice. */
  sent: boolean;
}

export const PENDING_WATCH = defineFact<PendingWatch>('fds.watch');
