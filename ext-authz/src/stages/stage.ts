/**
 * The plug-in point every capability builds on (identity, FDS, passport,
 * relay...). A stage is built once per config load and then run for every
 * Check on its routes, so it must keep per-request state in the context only.
 */
import type { DeclaredEvent } from '../pipeline/events.js';
import type { z } from 'zod';
import type { Logger } from 'pino';
import type { CheckContext } from '../pipeline/context.js';
import type { Decision, FailResult, StageResult } from '../pipeline/decision.js';
import type { PassgateConfig } from '../config/schema.js';
import type { Metrics } from '../observability/metrics.js';

/** What a finish hook may answer: nothing (keep), a new decision, or "could not decide". */
export type FinishResult = void | Decision | FailResult;

export interface Stage {
  /** The stage type, for audit and metrics labels. */
  readonly type: string;
  /** Set on the wrapper of a shadowed stage (pipeline/shadow.ts): its verdicts are recorded, not enforced. */
  readonly shadow?: boolean;
  /**
   * Decide or pass. Return a shared constant (CONTINUE, ALLOW) when nothing
   * needs saying; return a Promise only when real I/O is needed, so the
   * common path stays synchronous.
   */
  run(ctx: CheckContext): StageResult | Promise<StageResult>;
  /**
   * Optional: called once the chain has decided, for every stage that ran,
   * last stage first. May replace the decision (return a new one), may do I/O
   * (e.g. report an authentication failure to FDS), and returns `fail(...)`
   * when it could not do its part: the route's failure mode then applies as
   * for `run` (a deny already decided stays). Must not throw.
   */
  finish?(ctx: CheckContext, decision: Decision): FinishResult | Promise<FinishResult>;
}

export interface StageFactoryContext<State = unknown> {
  readonly config: PassgateConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The prepared state of the capability that declares this stage type (its engine, key ring, cache...). */
  readonly state: State;
  /** Where in the config this stage sits, for error messages: `gateways.secure.routes[2].stages[0]`. */
  readonly path: string;
}

/**
 * A stage type: its options schema (validated at config load, so a typo is a
 * startup error naming the key) and its factory.
 */
export interface StageDefinition<Options extends { type: string } = { type: string }, State = unknown> {
  readonly type: string;
  readonly schema: z.ZodType<Options>;
  readonly description: string;
  create(options: Options, ctx: StageFactoryContext<State>): Stage;
  /** Cross-checks against the whole config (e.g. a referenced key set exists). Return messages, empty when fine. */
  validate?(options: Options, config: PassgateConfig): string[];
  /** FDS outcome events this stage type can report, with the subject kinds (fds/event-catalog.ts). */
  readonly events?: readonly DeclaredEvent[];
}
