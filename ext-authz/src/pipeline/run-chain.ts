/**
 * Runs a route's stages in order. Stays synchronous until a stage returns a
 * Promise, so chains of cheap stages never touch the microtask queue. A stage
 * that throws, rejects or overruns the deadline becomes a `fail`, and the
 * route's failure mode decides: closed = 503 deny, open = mark degraded and go on.
 */
import type { Logger } from 'pino';
import type { CheckContext } from './context.js';
import type { Decision, StageResult } from './decision.js';
import type { FinishResult, Stage } from '../stages/stage.js';
import type { Metrics } from '../observability/metrics.js';
import { TIMED_OUT, within } from '../resilience/within.js';


export interface ChainEnv {
  readonly logger: Logger;
  readonly metrics: Metrics;
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown })?.then === 'function';
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Waits for `p` but no longer than the context's deadline. */
function withinDeadline<T>(ctx: CheckContext, p: Promise<T>): Promise<T | typeof TIMED_OUT> {
  return within(p, ctx.remainingMs());
}

const ALLOWED: Decision = Object.freeze({ kind: 'allow', degraded: false, reason: 'allowed' });
const ALLOWED_DEGRADED: Decision = Object.freeze({ kind: 'allow', degraded: true, reason: 'allowed_degraded' });

class ChainRun {
  private ran = 0;
  constructor(
    private readonly ctx: CheckContext,
    private readonly stages: readonly Stage[],
    private readonly env: ChainEnv,
  ) {}

  start(): Decision | Promise<Decision> {
    return this.from(0);
  }

  private from(index: number): Decision | Promise<Decision> {
    const stages = this.stages;
    for (let i = index; i < stages.length; i++) {
      const stage = stages[i]!;
      this.ran = i + 1;
      let result: StageResult | Promise<StageResult>;
      try {
        result = stage.run(this.ctx);
      } catch (err) {
        result = { kind: 'fail', reason: 'stage_error', detail: `${stage.type}: ${describeError(err)}` };
      }
      if (isPromise(result)) return this.awaitStage(stage, result, i);
      if (this.ctx.trace !== undefined) this.trace(stage, i, 'run', result);
      const settled = this.settle(stage, result);
      if (settled !== undefined) return this.finish(settled);
    }
    return this.finish(this.endOfChain());
  }

  private async awaitStage(stage: Stage, pending: Promise<StageResult>, index: number): Promise<Decision> {
    let result: StageResult;
    try {
      const r = await withinDeadline(this.ctx, pending);
      result =
        r === TIMED_OUT
          ? { kind: 'fail', reason: 'deadline_exceeded', detail: `${stage.type} did not answer within the Check deadline` }
          : r;
    } catch (err) {
      result = { kind: 'fail', reason: 'stage_error', detail: `${stage.type}: ${describeError(err)}` };
    }
    if (this.ctx.trace !== undefined) this.trace(stage, index, 'run', result);
    const settled = this.settle(stage, result);
    if (settled !== undefined) return this.finish(settled);
    // No time left means later stages cannot run either: decide by failure mode now.
    if (this.ctx.remainingMs() <= 0 && index + 1 < this.stages.length) {
      return this.finish(this.failed(stage, 'deadline_exceeded', 'deadline reached before the chain finished') ?? this.endOfChain());
    }
    return this.from(index + 1);
  }

  /** Explain only: what the stage answered (a shadowed stage records its own inner verdict). */
  private trace(stage: Stage, index: number, phase: 'run' | 'finish', r: StageResult): void {
    if (stage.shadow === true) return;
    const base = { stage: stage.type, index, phase };
    this.ctx.trace!.push(
      r.kind === 'deny'
        ? { ...base, verdict: 'deny', reason: r.denial.reason, status: r.denial.status, ...(r.denial.detail === undefined ? {} : { detail: r.denial.detail }) }
        : r.kind === 'fail'
          ? { ...base, verdict: 'fail', reason: r.reason, ...(r.detail === undefined ? {} : { detail: r.detail }) }
          : { ...base, verdict: r.kind },
    );
  }

  /** A decision, or undefined to go on with the next stage. */
  private settle(stage: Stage, result: StageResult): Decision | undefined {
    switch (result.kind) {
      case 'continue':
        return undefined;
      case 'allow':
        return this.endOfChain();
      case 'deny':
        return { kind: 'deny', denial: result.denial };
      case 'fail':
        return this.failed(stage, result.reason, result.detail);
    }
  }

  /**
   * The route's failure mode for a stage that could not decide: closed → a 503
   * deny naming the reason; open → mark the answer degraded and go on (undefined).
   */
  private failed(stage: Stage, reason: string, detail: string | undefined): Decision | undefined {
    const mode = this.ctx.route.failureMode;
    if (!this.ctx.dry) this.env.metrics.stageFailures.inc({ stage: stage.type, mode });
    this.ctx.audit['failure'] = detail ?? reason;
    if (mode === 'closed') return { kind: 'deny', denial: detail === undefined ? { status: 503, reason } : { status: 503, reason, detail } };
    this.ctx.degraded = true;
    return undefined;
  }

  private endOfChain(): Decision {
    return this.ctx.degraded ? ALLOWED_DEGRADED : ALLOWED;
  }

  /** Gives stages that ran a chance to observe or replace the decision, last first. */
  private finish(decision: Decision): Decision | Promise<Decision> {
    let current: Decision | Promise<Decision> = decision;
    for (let i = this.ran - 1; i >= 0; i--) {
      const stage = this.stages[i]!;
      if (stage.finish === undefined) continue;
      current = isPromise(current)
        ? current.then((d) => this.finishOne(stage, d))
        : this.finishOne(stage, current);
    }
    return current;
  }

  private finishOne(stage: Stage, decision: Decision): Decision | Promise<Decision> {
    // A finish hook that fails, overruns or says it could not decide must not turn
    // into a silent allow on a fail-closed route: the route's failure mode applies.
    const onFailure = (reason: string, detail: string | undefined): Decision => {
      if (this.ctx.trace !== undefined) this.trace(stage, this.stages.indexOf(stage), 'finish', detail === undefined ? { kind: 'fail', reason } : { kind: 'fail', reason, detail });
      return decision.kind === 'deny' ? decision : (this.failed(stage, reason, detail) ?? this.endOfChain());
    };
    const settle = (r: FinishResult): Decision => {
      if (r === undefined) return decision;
      if (this.ctx.trace !== undefined && r.kind !== 'fail') this.trace(stage, this.stages.indexOf(stage), 'finish', r.kind === 'deny' ? r : { kind: 'allow' });
      return r.kind === 'fail' ? onFailure(r.reason, r.detail) : r;
    };
    try {
      const r = stage.finish!(this.ctx, decision);
      if (isPromise(r)) {
        return withinDeadline(this.ctx, r).then(
          (v) => (v === TIMED_OUT ? onFailure('deadline_exceeded', `${stage.type} finish did not complete within the Check deadline`) : settle(v)),
          (err) => onFailure('stage_error', `${stage.type} finish: ${describeError(err)}`),
        );
      }
      return settle(r);
    } catch (err) {
      return onFailure('stage_error', `${stage.type} finish: ${describeError(err)}`);
    }
  }
}

export function runChain(ctx: CheckContext, stages: readonly Stage[], env: ChainEnv): Decision | Promise<Decision> {
  return new ChainRun(ctx, stages, env).start();
}
