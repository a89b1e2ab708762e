/**
 * A shadowed stage (`shadow: true` on a stage of a route): it runs as usual,
 * but its deny or failure is recorded (`ctx.shadowed`, the audit line's
 * `shadow_decision`, the shadow metric) instead of stopping the chain, and its
 * allow does not end the chain either. What it reports to FDS is marked
 * shadow (counted apart, never blocking), and single-use claims it leaves are
 * flagged so a replay it detects stays a shadow verdict (fds-stage.ts).
 */
import type { CheckContext, ShadowMark } from './context.js';
import { CONTINUE, type Decision, type StageResult } from './decision.js';
import type { FinishResult, Stage } from '../stages/stage.js';
import { TIMED_OUT, within } from '../resilience/within.js';

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown })?.then === 'function';
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A little before the chain's own deadline timer, so a slow shadowed stage is its own verdict, not the route's failure mode. */
function bound(ctx: CheckContext): number {
  return Math.max(0, ctx.remainingMs() - 2);
}

function record(ctx: CheckContext, stage: Stage, index: number, phase: 'run' | 'finish', r: StageResult | FinishResult): void {
  if (r === undefined || r.kind === 'continue' || r.kind === 'allow') {
    ctx.trace?.push({ stage: stage.type, index, phase, verdict: r === undefined ? 'continue' : r.kind, shadow: true });
    return;
  }
  const v =
    r.kind === 'deny'
      ? { stage: stage.type, verdict: 'deny' as const, reason: r.denial.reason, status: r.denial.status }
      : { stage: stage.type, verdict: 'fail' as const, reason: r.reason, status: 503 };
  ctx.shadowVerdict(v);
  ctx.trace?.push({ stage: stage.type, index, phase, verdict: v.verdict, reason: v.reason, status: v.status, shadow: true });
}

export function shadowStage(inner: Stage, index: number): Stage {
  const settle = (ctx: CheckContext, mark: ShadowMark, r: StageResult): StageResult => {
    ctx.endShadow(mark);
    record(ctx, inner, index, 'run', r);
    return CONTINUE;
  };
  const stage: Stage = {
    type: inner.type,
    shadow: true,
    run(ctx) {
      const mark = ctx.markShadow();
      let r: StageResult | Promise<StageResult>;
      ctx.inShadow = true;
      try {
        r = inner.run(ctx);
      } catch (err) {
        return settle(ctx, mark, { kind: 'fail', reason: 'stage_error', detail: `${inner.type}: ${message(err)}` });
      } finally {
        ctx.inShadow = false;
      }
      if (!isPromise(r)) return settle(ctx, mark, r);
      return within(r, bound(ctx)).then(
        (v) => settle(ctx, mark, v === TIMED_OUT ? { kind: 'fail', reason: 'deadline_exceeded' } : v),
        (err: unknown) => settle(ctx, mark, { kind: 'fail', reason: 'stage_error', detail: `${inner.type}: ${message(err)}` }),
      );
    },
  };
  const finish = inner.finish;
  if (finish !== undefined) {
    // The finish hook's replacement decision is recorded, never applied.
    const done = (ctx: CheckContext, mark: ShadowMark, decision: Decision, r: FinishResult): FinishResult => {
      ctx.endShadow(mark);
      const changed = r !== undefined && (r.kind === 'fail' || (r.kind === 'deny' && decision.kind !== 'deny'));
      if (changed) record(ctx, inner, index, 'finish', r.kind === 'fail' ? r : { kind: 'deny', denial: r.denial });
      return undefined;
    };
    (stage as { finish?: Stage['finish'] }).finish = (ctx, decision) => {
      const mark = ctx.markShadow();
      let r: FinishResult | Promise<FinishResult>;
      ctx.inShadow = true;
      try {
        r = finish.call(inner, ctx, decision);
      } catch (err) {
        return done(ctx, mark, decision, { kind: 'fail', reason: 'stage_error', detail: message(err) });
      } finally {
        ctx.inShadow = false;
      }
      if (!isPromise(r)) return done(ctx, mark, decision, r);
      return within(r, bound(ctx)).then(
        (v) => done(ctx, mark, decision, v === TIMED_OUT ? { kind: 'fail', reason: 'deadline_exceeded' } : v),
        (err: unknown) => done(ctx, mark, decision, { kind: 'fail', reason: 'stage_error', detail: message(err) }),
      );
    };
  }
  return stage;
}
