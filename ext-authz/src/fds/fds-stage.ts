/**
 * The `fds` stage. Design (one round trip, zero when cached):
 *
 * - Put it FIRST in a route's chain. `run` is synchronous and does no I/O:
 *   it denies at once when the client IP is in a blocked CIDR range or a
 *   subject already known (so far) is in the in-process blocked cache.
 * - `finish` runs after the chain decided (and after later stages' own
 *   finish hooks, which may report outcomes). By then every subject is known
 *   (identity, device, client id, certificate) and every outcome is in
 *   `ctx.outcomes`. If any subject is cached as blocked, the decision becomes
 *   403 `blocked` with no I/O. Otherwise ONE store call (one EVALSHA on
 *   Redis) checks all subjects' blocks and updates every counter the
 *   outcomes touch, creating blocks whose threshold was crossed.
 * - A blocked subject turns the decision into 403 `blocked` (details only in
 *   `ctx.audit.fds`). A block created by this very Check replaces an allow.
 * - Store errors apply the route's failure mode here, as the core does for
 *   `fail('fds_unavailable')`: closed → 503 `fds_unavailable`, open → allow
 *   marked degraded. A deny already decided stays.
 *
 * Placed first, the stage also sees the denials of stages that stop the
 * chain (a 401 from an identity stage), which is what detection counts.
 */
import { z } from 'zod';
import { CONTINUE, fail, type Decision, type StageResult } from '../pipeline/decision.js';
import type { CheckContext } from '../pipeline/context.js';
import { CERT_FINGERPRINT, CERT_SERIAL, type FactKey } from '../pipeline/facts.js';
import type { FinishResult, Stage, StageDefinition } from '../stages/stage.js';
import { BLOCKED_DENIAL } from './blocked.js';
import type { FdsState } from './state.js';
import { withoutExempt } from './exempt.js';
import { SUBJECT_KINDS, canonicalIp, type SubjectKind } from './subjects.js';
import type { BlockRecord, CounterOp, SubjectRef, WatchState } from './store/store.js';
import { pendingClaims, pendingWatch, type PendingClaims } from './claims.js';
import { PENDING_CLAIMS, type PendingWatch } from './facts.js';
import type { Outcome } from '../pipeline/context.js';
import { addOps } from './rules.js';

const schema = z.strictObject({
  type: z.literal('fds'),
  /** Subject kinds checked against the block lists on this route (all by default). */
  check: z.array(z.enum(SUBJECT_KINDS)).min(1).default([...SUBJECT_KINDS]),
  /** Feed this route's outcomes to the detection rules. */
  count: z.boolean().default(true),
});
export type FdsStageOptions = z.infer<typeof schema>;

const BLOCKED_RESULT: StageResult = Object.freeze({ kind: 'deny', denial: BLOCKED_DENIAL });
const BLOCKED_DECISION: Decision = Object.freeze({ kind: 'deny', denial: BLOCKED_DENIAL });

function certSubject(v: unknown): string | undefined {
  if (typeof v !== 'string' || v === '') return undefined;
  return v.replace(/:/g, '').toLowerCase();
}

const NO_OPS: readonly CounterOp[] = Object.freeze([]);

/** Tells the watching stage what the store found; true when the watched key is gone. */
function settleWatch(watch: PendingWatch, state: WatchState | undefined): boolean {
  const s = state ?? 'gone';
  watch.settle(s);
  return s === 'gone';
}

/** The string facts a subject name in `fds.attributes` may name; any other name is an identity attribute. */
const STRING_FACTS: readonly FactKey<string>[] = [CERT_FINGERPRINT, CERT_SERIAL];

/**
 * Reads the subject `fds.attributes` names: the pipeline fact of that name
 * when there is one (the default names), falling back to the identity
 * attribute; resolved once per stage, not per Check.
 */
function subjectReader(name: string): (ctx: CheckContext) => string | undefined {
  const fact = STRING_FACTS.find((k) => k.name === name);
  if (fact === undefined) return (ctx) => ctx.identity?.attributes[name];
  return (ctx) => ctx.get(fact) ?? ctx.identity?.attributes[name];
}

export const fdsStage: StageDefinition<FdsStageOptions, FdsState> = {
  type: 'fds',
  schema,
  description: 'Fraud detection: deny blocked users, devices, IPs (and CIDR ranges), client ids and certificates; count outcomes and block on thresholds.',
  // `request` for every subject of a Check; `auth_failure` for the IP of a 401 no stage reported.
  events: [
    { event: 'request', kinds: SUBJECT_KINDS },
    { event: 'auth_failure', kinds: ['ip'] },
  ],
  create(options, factory): Stage {
    // The capability prepared an engine for this config (any fds stage makes one, with defaults when `fds:` is absent).
    const engine = factory.state.engine;
    if (engine === undefined) throw new Error(`${factory.path}: no FDS engine was prepared`);
    const handle = { engine };
    const checks = new Set<SubjectKind>(options.check);
    const checkIp = checks.has('ip');

    function clientIp(ctx: CheckContext): string {
      const s = handle.engine.settings.clientIp;
      if (s.source === 'xff') {
        const xff = ctx.request.headers['x-forwarded-for'];
        if (xff) {
          const parts = xff.split(',');
          const pick = parts[parts.length - 1 - s.xffTrustedHops];
          const ip = pick === undefined ? undefined : canonicalIp(pick.trim());
          if (ip) return ip;
        }
      }
      return canonicalIp(ctx.request.source.address) ?? '';
    }

    const names = engine.settings.attributes;
    const readClient = subjectReader(names.client);
    const readFingerprint = subjectReader(names.certFingerprint);
    const readSerial = subjectReader(names.certSerial);

    /** Every subject of this Check, in check order. */
    function subjectsOf(ctx: CheckContext, ip: string): SubjectRef[] {
      const out: SubjectRef[] = [];
      if (ip !== '') out.push({ kind: 'ip', subject: ip });
      const id = ctx.identity;
      if (id && id.kind !== 'anonymous' && id.subject !== '') out.push({ kind: 'user', subject: id.subject });
      if (id?.deviceId) out.push({ kind: 'device', subject: id.deviceId });
      const client = readClient(ctx);
      if (typeof client === 'string' && client !== '') out.push({ kind: 'client', subject: client });
      const fp = certSubject(readFingerprint(ctx));
      if (fp) out.push({ kind: 'cert', subject: fp });
      const serial = certSubject(readSerial(ctx));
      if (serial && serial !== fp) out.push({ kind: 'cert', subject: serial });
      return out;
    }

    function blocked(ctx: CheckContext, r: BlockRecord, cached: boolean): void {
      if (!ctx.dry) handle.engine.metrics.blockedChecks.inc({ kind: r.kind, cached: String(cached) });
      ctx.audit['fds'] = {
        blocked: { kind: r.kind, subject: r.subject, reason: r.reason, createdBy: r.createdBy, expiresAt: r.expiresAt, rule: r.rule, level: r.level },
        cached,
      };
    }

    function counterOps(ctx: CheckContext, decision: Decision, subjects: readonly SubjectRef[], extra?: readonly Outcome[]): readonly CounterOp[] {
      const rules = handle.engine.rules;
      if (rules.all.length === 0) return NO_OPS;
      const ops: CounterOp[] = [];
      const route = ctx.route.name;
      // Everything on a shadowed route (or by a shadowed fds stage) is counted apart and never blocks.
      const shadowRoute = ctx.route.shadow === true || ctx.inShadow;
      let ipFailure = false;
      for (const o of extra === undefined ? ctx.outcomes : [...ctx.outcomes, ...extra]) {
        let subject = o.subject;
        if (o.subjectKind === 'ip') {
          subject = canonicalIp(subject) ?? '';
          if (o.event === 'auth_failure') ipFailure = true;
        } else if (o.subjectKind === 'cert') subject = certSubject(subject) ?? '';
        if (subject !== '') addOps(ops, rules, route, o.event, o.subjectKind, subject, shadowRoute || o.shadow === true);
      }
      for (const kind of rules.requestKinds) for (const s of subjects) if (s.kind === kind) addOps(ops, rules, route, 'request', kind, s.subject, shadowRoute);
      const ip = subjects[0]?.kind === 'ip' ? subjects[0].subject : '';
      if (!ipFailure && ip !== '' && decision.kind === 'deny' && handle.engine.settings.authFailureStatuses.includes(decision.denial.status) && decision.denial !== BLOCKED_DENIAL) {
        addOps(ops, rules, route, 'auth_failure', 'ip', ip, shadowRoute);
      }
      return withoutExempt(ops, handle.engine.settings.exempt.ip);
    }

    /** The store could not answer: counted here, decided by the core's failure mode. */
    function unavailable(ctx: CheckContext, err: unknown): FinishResult {
      if (!ctx.dry) handle.engine.metrics.degraded.inc({ mode: ctx.route.failureMode });
      return fail('fds_unavailable', `fds: ${err instanceof Error ? err.message : String(err)}`);
    }

    /**
     * Explain: block lookups and claim existence by one read (MGET), no
     * counter, claim or block written, nothing cached or counted; what a
     * real Check would have sent is listed in the audit (`fds_dry`).
     */
    function dryRun(ctx: CheckContext, decision: Decision, subjects: readonly SubjectRef[], check: readonly SubjectRef[], pending: PendingClaims | undefined): Promise<FinishResult> | FinishResult {
      const ops = options.count ? counterOps(ctx, decision, subjects) : NO_OPS;
      ctx.audit['fds_dry'] = {
        checked: check.map((s) => `${s.kind}:${s.subject}`),
        wouldCount: ops.map((o) => `${o.shadow === true ? 'shadow ' : ''}${o.rule} ${o.kind}:${o.subject} +${o.increment}`),
        wouldClaim: pending?.claims.length ?? 0,
      };
      if (check.length === 0 && !pending) return undefined;
      return handle.engine.peek(check, pending?.claims).then(
        (res): FinishResult => {
          if (res.blocked) {
            blocked(ctx, res.blocked, false);
            return BLOCKED_DECISION;
          }
          if (res.replayed && pending) {
            if (ctx.route.shadow !== true && ctx.setInShadow(PENDING_CLAIMS)) {
              ctx.shadowVerdict({ stage: 'claims', verdict: 'deny', reason: pending.replayDenial.reason, status: pending.replayDenial.status });
              return undefined;
            }
            return { kind: 'deny', denial: pending.replayDenial };
          }
          return undefined;
        },
        (err: unknown) => unavailable(ctx, err),
      );
    }

    return {
      type: 'fds',
      run(ctx): StageResult {
        if (checkIp) {
          const ip = clientIp(ctx);
          if (ip !== '') {
            const r = handle.engine.cached('ip', ip);
            if (r) {
              blocked(ctx, r, true);
              return BLOCKED_RESULT;
            }
          }
        }
        // Placed after identity stages, the user and device are known already: stop a cached offender before later stages work.
        const id = ctx.identity;
        if (id !== undefined) {
          const r =
            (checks.has('user') && id.kind !== 'anonymous' && id.subject !== '' ? handle.engine.cached('user', id.subject) : undefined) ??
            (checks.has('device') && id.deviceId ? handle.engine.cached('device', id.deviceId) : undefined);
          if (r) {
            blocked(ctx, r, true);
            return BLOCKED_RESULT;
          }
        }
        return CONTINUE;
      },
      finish(ctx, decision) {
        if (decision.kind === 'deny' && decision.denial === BLOCKED_DENIAL) return;
        const subjects = subjectsOf(ctx, clientIp(ctx));
        const check: SubjectRef[] = [];
        for (const s of subjects) {
          if (!checks.has(s.kind)) continue;
          const r = handle.engine.cached(s.kind, s.subject);
          if (r) {
            blocked(ctx, r, true);
            return BLOCKED_DECISION;
          }
          check.push(s);
        }
        // Proof jtis are burned only when everything else allowed; the counters of both outcomes (fresh, replayed) ride along.
        const pending = decision.kind === 'allow' ? pendingClaims(ctx) : undefined;
        if (ctx.dry) return dryRun(ctx, decision, subjects, check, pending);
        // Claims a shadowed stage left are burned (a proof is single-use either way), but a replay stays its shadow verdict.
        const shadowClaims = pending !== undefined && (ctx.route.shadow === true || ctx.inShadow || ctx.setInShadow(PENDING_CLAIMS));
        let ops = options.count ? counterOps(ctx, decision, subjects) : NO_OPS;
        let replayDecision: Decision | undefined;
        if (pending) {
          pending.sent = true;
          replayDecision = { kind: 'deny', denial: pending.replayDenial };
          if (options.count) {
            const replayOps = counterOps(ctx, replayDecision, subjects, shadowClaims ? pending.replayOutcomes.map((o) => ({ ...o, shadow: true })) : pending.replayOutcomes);
            ops = [...ops.map((o): CounterOp => ({ ...o, when: 'fresh' })), ...replayOps.map((o): CounterOp => ({ ...o, when: 'replay' }))];
          }
        }
        // A session another stage wants checked and touched (oidc) rides in the same call, for allows only.
        const watch = decision.kind === 'allow' ? pendingWatch(ctx) : undefined;
        if (watch) watch.sent = true;
        if (check.length === 0 && ops.length === 0 && !pending && !watch) return;
        const left = ctx.remainingMs();
        if (left <= 1) return unavailable(ctx, new Error('no time left before the Check deadline'));
        // Give up a little before the core's own deadline timer, so the answer names FDS.
        const bound = Math.max(1, left - Math.max(2, Math.floor(left / 20)));
        return handle.engine.evaluate(check, ops, bound, pending?.claims, watch ? [watch.watch] : undefined).then(
          (res): Decision | undefined => {
            if (res.wouldBlock !== undefined) ctx.audit['fds_shadow'] = { wouldBlock: res.wouldBlock.map((c) => ({ kind: c.kind, subject: c.subject, rule: c.rule })) };
            const gone = watch !== undefined && settleWatch(watch, res.watched?.[0]);
            if (res.blocked) {
              blocked(ctx, res.blocked, false);
              return BLOCKED_DECISION;
            }
            if (res.replayed && pending && shadowClaims && ctx.route.shadow !== true) {
              const d = pending.replayDenial;
              ctx.shadowVerdict({ stage: 'claims', verdict: 'deny', reason: d.reason, status: d.status });
              for (const o of pending.replayOutcomes) ctx.outcomes.push({ ...o, shadow: true });
              return undefined;
            }
            if (res.replayed && pending) {
              for (const o of pending.replayOutcomes) ctx.report(o.event, o.subjectKind, o.subject);
              if (res.created.length > 0) ctx.audit['fds'] = { created: res.created.map((c) => ({ kind: c.kind, subject: c.subject, rule: c.rule, level: c.level, ttlMs: c.ttlMs })) };
              return replayDecision;
            }
            if (res.created.length > 0) {
              ctx.audit['fds'] = { created: res.created.map((c) => ({ kind: c.kind, subject: c.subject, rule: c.rule, level: c.level, ttlMs: c.ttlMs })) };
              if (decision.kind === 'allow') {
                const own = res.created.find((c) => check.some((s) => s.kind === c.kind && s.subject === c.subject));
                if (own) {
                  blocked(ctx, own, false);
                  return BLOCKED_DECISION;
                }
              }
            }
            return gone ? { kind: 'deny', denial: watch.goneDenial } : undefined;
          },
          (err: unknown) => {
            // Stale-if-error: a block seen before the outage holds until its own expiry, whatever the failure mode.
            const known = handle.engine.staleBlock(check);
            if (known !== undefined) {
              blocked(ctx, known, true);
              ctx.audit['fds_stale'] = true;
              handle.engine.metrics.degraded.inc({ mode: 'stale_block' });
              return BLOCKED_DECISION;
            }
            return unavailable(ctx, err);
          },
        );
      },
    };
  },
};
