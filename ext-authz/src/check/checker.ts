/**
 * The decision engine behind Authorization/Check, independent of gRPC so
 * tests and benchmarks can drive it directly. `check` never throws: any fault
 * becomes a 503 deny (fail closed) or a degraded OK on fail-open routes.
 */
import type { Logger } from 'pino';
import type { CheckRequest, CheckResponse } from '../proto/types.js';
import { toRequestView, type RequestView } from '../pipeline/request-view.js';
import { deniedResponse, internalErrorResponse, okResponse } from './response.js';
import { InternalHeaderPolicy } from './internal-headers.js';
import { CheckContext, type GatewayInfo, type RouteInfo, type ShadowVerdict } from '../pipeline/context.js';
import { runChain } from '../pipeline/run-chain.js';
import type { Decision, Denial } from '../pipeline/decision.js';
import type { RouteTable, CompiledGateway, CompiledRoute } from '../routing/route-table.js';
import { explanationOf, type Explanation, type ExplainNote } from './explain.js';
import type { Metrics } from '../observability/metrics.js';
import { traceIdOf } from '../observability/trace-id.js';
import { DEFAULT_CHALLENGE } from '../config/schema.js';
import { isSafeFieldValue } from '../pipeline/text.js';

const XFCC = 'x-forwarded-client-cert';
const UNKNOWN_GATEWAY: Denial = Object.freeze({ status: 403, reason: 'unknown_gateway' });
/** What Envoy gets on a shadowed route whatever the chain decided. */
const SHADOW_ALLOW: Decision = Object.freeze({ kind: 'allow', degraded: false, reason: 'shadow' });
const NO_HEADERS: readonly [string, string][] = Object.freeze([]) as readonly [string, string][];

export interface CheckerOptions {
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/** Per-table facts derived once per config load (so a reload changes them too). */
interface TableState {
  readonly table: RouteTable;
  readonly internal: InternalHeaderPolicy;
  readonly degradedHeader: string;
  readonly audit: boolean;
}

const NO_GATEWAY: CompiledGateway = Object.freeze({
  name: '(none)',
  kind: 'public',
  trustXfcc: false,
  challenge: DEFAULT_CHALLENGE,
  routes: [],
  defaultRoute: { name: '(none)', matches: () => true, stages: [], failureMode: 'closed' as const },
});

export class Checker {
  private state: TableState;
  private readonly audit: Logger;
  /** route → verdict → reason → labelled child: no label hashing or key building per Check. */
  private readonly counterCache = new WeakMap<RouteInfo, Map<string, Map<string, { inc(): void }>>>();
  private readonly durationCache = new Map<string, { observe(v: number): void }>();

  constructor(
    table: RouteTable,
    private readonly options: CheckerOptions,
  ) {
    this.state = Checker.stateFor(table);
    this.audit = options.logger.child({ log: 'audit' });
  }

  private static stateFor(table: RouteTable): TableState {
    const h = table.config.headers;
    return {
      table,
      // The Passport header is stripped on every route of every gateway, passport stage or not.
      internal: new InternalHeaderPolicy([...h.internal, h.degraded, ...(table.config.passport ? [table.config.passport.header] : [])], h.internalPrefixes),
      degradedHeader: h.degraded,
      audit: table.config.logging.audit,
    };
  }

  /** Swaps the route table atomically; Checks already running finish on the old one. */
  setTable(table: RouteTable): void {
    this.state = Checker.stateFor(table);
  }

  get table(): RouteTable {
    return this.state.table;
  }

  /**
   * Decides one Check. `deadline` is epoch ms by which the answer must be
   * sent (already reduced by the safety margin).
   */
  check(request: CheckRequest | null | undefined, deadline: number): CheckResponse | Promise<CheckResponse> {
    return this.run(request, deadline, undefined);
  }

  /**
   * The same decision as `check`, as a dry run (`passgate explain`, POST
   * /explain): stages are told not to write (FDS reads blocks only), nothing
   * is counted or audited, and the answer says why.
   */
  async explain(request: CheckRequest | null | undefined, deadline: number): Promise<Explanation> {
    const note: ExplainNote = {};
    const internal = this.state.internal;
    const response = await this.run(request, deadline, note);
    // A Passport (or any header only the gateway sets) in an answer to an admin call would be a credential minted without Envoy's proof of the key: shown redacted.
    return explanationOf(note, response, (name) => internal.isInternal(name));
  }

  private run(request: CheckRequest | null | undefined, deadline: number, note: ExplainNote | undefined): CheckResponse | Promise<CheckResponse> {
    const startedAt = performance.now();
    const state = this.state;
    let view: RequestView | undefined;
    let ctx: CheckContext | undefined;
    try {
      view = toRequestView(request);
      const traceId = traceIdOf(view.headers, view.id);
      let gateway: CompiledGateway | undefined;
      if (note === undefined) gateway = state.table.selectGateway(view);
      else ({ gateway, by: note.gatewayBy } = state.table.explainGateway(view));
      if (gateway === undefined) {
        return this.answer(state, view, undefined, { kind: 'deny', denial: UNKNOWN_GATEWAY }, traceId, startedAt, undefined, note);
      }
      if (view.pathRefusal !== undefined) {
        // Refused before any route: its meaning would depend on how the backend decodes it (docs/paths.md).
        const denial: Denial = { status: 400, reason: view.pathRefusal.reason, detail: view.pathRefusal.detail };
        return this.answer(state, view, undefined, { kind: 'deny', denial }, traceId, startedAt, gateway, note);
      }
      let route: CompiledRoute;
      if (note === undefined) route = state.table.selectRoute(gateway, view);
      else ({ route, tried: note.tried } = state.table.explainRoute(gateway, view));
      ctx = new CheckContext(view, gateway, route, deadline, traceId, startedAt);
      if (note !== undefined) {
        ctx.dry = true;
        ctx.trace = [];
      }
      const decision = runChain(ctx, route.stages, this.options);
      if (decision instanceof Promise) {
        const c = ctx;
        const v = view;
        return decision.then(
          (d) => this.answer(state, v, c, d, traceId, startedAt, undefined, note),
          (err) => this.fault(state, v, c, err, startedAt, note),
        );
      }
      return this.answer(state, view, ctx, decision, traceId, startedAt, undefined, note);
    } catch (err) {
      return this.fault(state, view, ctx, err, startedAt, note);
    }
  }

  /** Last line of defence: something outside any stage threw. */
  private fault(state: TableState, view: RequestView | undefined, ctx: CheckContext | undefined, err: unknown, startedAt: number, note?: ExplainNote): CheckResponse {
    this.options.logger.error({ err: err instanceof Error ? err.stack : String(err) }, 'check failed unexpectedly');
    if (note !== undefined) note.fault = err instanceof Error ? err.message : String(err);
    try {
      const failOpen = ctx?.route.failureMode === 'open';
      if (failOpen && ctx && view) {
        ctx.degraded = true;
        return this.answer(state, view, ctx, { kind: 'allow', degraded: true, reason: 'internal_error' }, ctx.traceId, startedAt, undefined, note);
      }
      return internalErrorResponse(ctx?.traceId);
    } catch {
      return internalErrorResponse();
    }
  }

  private answer(
    state: TableState,
    view: RequestView,
    ctx: CheckContext | undefined,
    decision: Decision,
    traceId: string,
    startedAt: number,
    selected?: CompiledGateway,
    note?: ExplainNote,
  ): CheckResponse {
    const gateway = ctx?.gateway ?? selected ?? NO_GATEWAY;
    // A shadowed route's deny is recorded, and Envoy lets the request through as if the route had no stages.
    const shadowDeny = decision.kind === 'deny' && ctx?.route.shadow === true;
    let enforced = shadowDeny ? SHADOW_ALLOW : decision;
    // A header value built from identity text (a claim, a subject) that cannot go out as it is ends the
    // Check here: forwarding it would split or merge headers on the way upstream.
    const unsafe = shadowDeny || ctx === undefined ? undefined : enforced.kind === 'allow' ? unsafeHeader(ctx.upstreamHeaders) ?? unsafeHeader(ctx.responseHeaders) : unsafeHeader(enforced.denial.headers);
    if (unsafe !== undefined) enforced = unsafeHeaderDenial(unsafe);
    let response: CheckResponse;
    if (enforced.kind === 'allow') {
      const upstream = shadowDeny || ctx === undefined ? NO_HEADERS : ctx.upstreamHeaders;
      if (enforced.degraded && ctx) ctx.setUpstreamHeader(state.degradedHeader, 'true');
      // XFCC is only believed on mTLS gateways; elsewhere a client could have forged it.
      const extra = !gateway.trustXfcc && view.headers[XFCC] !== undefined ? XFCC : undefined;
      const internal = state.internal.headersToRemove(view.headers, upstream, extra);
      const remove = ctx?.removeUpstream === undefined || shadowDeny ? internal : [...internal, ...ctx.removeUpstream];
      response = okResponse(upstream, remove, shadowDeny ? NO_HEADERS : (ctx?.responseHeaders ?? NO_HEADERS));
    } else {
      response = deniedResponse(enforced.denial, traceId, gateway.challenge);
    }
    if (note !== undefined) {
      // Explain: nothing is counted or audited as traffic.
      Object.assign(note, { gateway: gateway === NO_GATEWAY ? undefined : gateway, ctx, decision, enforced, shadow: this.shadowOf(ctx, decision) });
      return response;
    }
    this.record(state, view, ctx, gateway, enforced, traceId, startedAt, this.shadowOf(ctx, decision));
    return response;
  }

  /** What the Check would have answered had nothing been shadowed; undefined when nothing on it is. */
  private shadowOf(ctx: CheckContext | undefined, decision: Decision): ShadowVerdict | { readonly verdict: 'allow'; readonly reason: string; readonly stage?: undefined } | undefined {
    if (ctx === undefined) return undefined;
    const first = ctx.shadowed?.[0];
    if (first !== undefined) return first;
    if (ctx.route.shadow !== true && ctx.route.shadowStages !== true) return undefined;
    if (decision.kind === 'deny') return { stage: '(route)', verdict: 'deny', reason: decision.denial.reason, status: decision.denial.status };
    return { verdict: 'allow', reason: decision.reason };
  }

  private record(
    state: TableState,
    view: RequestView,
    ctx: CheckContext | undefined,
    gateway: GatewayInfo,
    decision: Decision,
    traceId: string,
    startedAt: number,
    shadow: ReturnType<Checker['shadowOf']>,
  ): void {
    const seconds = (performance.now() - startedAt) / 1000;
    // No context means no gateway was selected: NO_GATEWAY's default route.
    const route: RouteInfo = ctx?.route ?? NO_GATEWAY.defaultRoute;
    const verdict = decision.kind === 'allow' ? (decision.degraded ? 'allow_degraded' : 'allow') : 'deny';
    const reason = decision.kind === 'allow' ? decision.reason : decision.denial.reason;
    this.counter(gateway, route, verdict, reason).inc();
    let duration = this.durationCache.get(gateway.name);
    if (duration === undefined) {
      duration = this.options.metrics.checkDuration.labels(gateway.name);
      this.durationCache.set(gateway.name, duration);
    }
    duration.observe(seconds);
    if (shadow !== undefined) this.options.metrics.shadowChecks.labels(gateway.name, route.name, shadow.verdict, shadow.reason).inc();
    if (!state.audit) return;
    this.audit.info(
      {
        trace_id: traceId,
        gateway: gateway.name,
        route: route.name,
        method: view.method,
        host: view.host,
        path: view.path,
        source: view.source.address,
        identity: ctx?.identity ? { subject: ctx.identity.subject, kind: ctx.identity.kind, source: ctx.identity.source } : undefined,
        decision: verdict,
        reason,
        status: decision.kind === 'deny' ? decision.denial.status : 200,
        detail: decision.kind === 'deny' ? decision.denial.detail : undefined,
        latency_ms: Math.round(seconds * 1e6) / 1e3,
        ...(shadow === undefined ? {} : { shadow_decision: shadow.verdict, shadow_reason: shadow.reason, shadow_stage: shadow.stage }),
        ...ctx?.audit,
      },
      'decision',
    );
  }

  /** Labelled counter children are cached per route so the hot path does no label hashing. */
  private counter(gateway: GatewayInfo, route: RouteInfo, verdict: string, reason: string): { inc(): void } {
    let byVerdict = this.counterCache.get(route);
    if (byVerdict === undefined) {
      byVerdict = new Map();
      this.counterCache.set(route, byVerdict);
    }
    let byReason = byVerdict.get(verdict);
    if (byReason === undefined) {
      byReason = new Map();
      byVerdict.set(verdict, byReason);
    }
    let child = byReason.get(reason);
    if (child === undefined) {
      child = this.options.metrics.checks.labels(gateway.name, route.name, verdict, reason);
      byReason.set(reason, child);
    }
    return child;
  }
}

/** The name of the first header whose value has a control character or a lone surrogate. */
function unsafeHeader(headers: ReadonlyArray<readonly [string, string]> | undefined): string | undefined {
  if (headers === undefined) return undefined;
  for (let i = 0; i < headers.length; i++) if (!isSafeFieldValue(headers[i]![1])) return headers[i]![0];
  return undefined;
}

function unsafeHeaderDenial(name: string): Decision {
  return {
    kind: 'deny',
    denial: { status: 403, reason: 'unsafe_header_value', detail: `the value for header ${name} has a control character or a lone UTF-16 surrogate (from identity or claim text); it is not forwarded` },
  };
}
