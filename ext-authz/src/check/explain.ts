/**
 * The answer of `passgate explain` and POST /explain: which gateway and route
 * judged a request and why, what each stage answered, and the exact
 * CheckResponse Envoy would get. Built from what a dry run of the Checker
 * noted (checker.ts `explain`), never from a second copy of the decision code.
 */
import type { CheckResponse } from '../proto/types.js';
import type { CheckContext, ShadowVerdict, StageTrace } from '../pipeline/context.js';
import type { Decision } from '../pipeline/decision.js';
import type { CompiledGateway, RouteTry } from '../routing/route-table.js';

/** Filled by the Checker during a dry run. */
export interface ExplainNote {
  gatewayBy?: string;
  tried?: RouteTry[];
  gateway?: CompiledGateway | undefined;
  ctx?: CheckContext | undefined;
  decision?: Decision;
  enforced?: Decision;
  shadow?: { readonly verdict: string; readonly reason: string; readonly stage?: string | undefined } | undefined;
  fault?: string;
}

export interface DecisionView {
  readonly decision: 'allow' | 'allow_degraded' | 'deny';
  readonly reason: string;
  readonly status: number;
  /** Internal detail (never sent to the client; shown to the operator who asked). */
  readonly detail?: string;
}

export interface Explanation {
  readonly gateway: { readonly name: string; readonly kind: string; readonly selectedBy: string } | null;
  readonly route: {
    readonly name: string;
    readonly failureMode: string;
    readonly shadow: boolean;
    /** Routes tried in order until one matched; the default route when none did. */
    readonly tried: readonly RouteTry[];
  } | null;
  readonly stages: ReadonlyArray<StageTrace | { readonly stage: string; readonly index: number; readonly verdict: 'not_run' }>;
  readonly identity: { readonly subject: string; readonly kind: string; readonly source: string } | null;
  /** What the chain decided. */
  readonly decision: DecisionView;
  /** What Envoy gets: differs from `decision` only on a shadowed route. */
  readonly enforced: DecisionView;
  /** The would-be answer had nothing been shadowed (present when the route or one of its stages is shadowed). */
  readonly shadow?: { readonly decision: string; readonly reason: string; readonly stage?: string };
  readonly shadowed?: readonly ShadowVerdict[];
  readonly audit?: Record<string, unknown>;
  readonly fault?: string;
  /** The exact CheckResponse, except that values of internal headers it sets (the Passport) are redacted. */
  readonly response: CheckResponse;
}

function view(d: Decision | undefined): DecisionView {
  if (d === undefined) return { decision: 'deny', reason: 'internal_error', status: 503 };
  if (d.kind === 'allow') return { decision: d.degraded ? 'allow_degraded' : 'allow', reason: d.reason, status: 200 };
  return d.denial.detail === undefined
    ? { decision: 'deny', reason: d.denial.reason, status: d.denial.status }
    : { decision: 'deny', reason: d.denial.reason, status: d.denial.status, detail: d.denial.detail };
}

/** The response with the values of internal headers it sets replaced by their length. */
function redacted(response: CheckResponse, isInternal: (name: string) => boolean): CheckResponse {
  const headers = response.ok_response?.headers;
  if (headers === undefined || !headers.some((h) => isInternal(h.header?.key ?? ''))) return response;
  return {
    ...response,
    ok_response: {
      ...response.ok_response,
      headers: headers.map((h) =>
        isInternal(h.header?.key ?? '') ? { ...h, header: { key: h.header!.key!, value: `<redacted: ${String(h.header?.value ?? '').length} characters set by the gateway>` } } : h,
      ),
    },
  };
}

export function explanationOf(note: ExplainNote, response: CheckResponse, isInternal: (name: string) => boolean = () => false): Explanation {
  const ctx = note.ctx;
  const gw = note.gateway;
  const ran = ctx?.trace ?? [];
  const stages: Array<Explanation['stages'][number]> = [...ran];
  if (ctx !== undefined) {
    // Stages after the one that stopped the chain never ran: listed so "why did X not run" has an answer.
    const seen = new Set(ran.map((t) => t.index));
    ctx.route.stages.forEach((s, index) => {
      if (!seen.has(index)) stages.push({ stage: s.type, index, verdict: 'not_run' });
    });
  }
  const id = ctx?.identity;
  return {
    gateway: gw === undefined ? null : { name: gw.name, kind: gw.kind, selectedBy: note.gatewayBy ?? '' },
    route:
      ctx === undefined
        ? null
        : { name: ctx.route.name, failureMode: ctx.route.failureMode, shadow: ctx.route.shadow === true, tried: note.tried ?? [] },
    stages,
    identity: id === undefined ? null : { subject: id.subject, kind: id.kind, source: id.source },
    decision: view(note.decision),
    enforced: view(note.enforced ?? note.decision),
    ...(note.shadow === undefined
      ? {}
      : { shadow: note.shadow.stage === undefined ? { decision: note.shadow.verdict, reason: note.shadow.reason } : { decision: note.shadow.verdict, reason: note.shadow.reason, stage: note.shadow.stage } }),
    ...(ctx?.shadowed === undefined ? {} : { shadowed: ctx.shadowed }),
    ...(ctx === undefined || Object.keys(ctx.audit).length === 0 ? {} : { audit: ctx.audit }),
    ...(note.fault === undefined ? {} : { fault: note.fault }),
    response: redacted(response, isInternal),
  };
}

/** The human form (`passgate explain` without --json). */
export function formatExplanation(e: Explanation): string {
  const lines: string[] = [];
  lines.push(e.gateway === null ? 'gateway: none selected' : `gateway: ${e.gateway.name} (${e.gateway.kind}), selected by ${e.gateway.selectedBy}`);
  if (e.route !== null) {
    for (const t of e.route.tried) {
      lines.push(t.matched ? `  route ${t.route}: matched (${t.held.length === 0 ? 'no predicates' : t.held.join(', ')})` : `  route ${t.route}: no, ${t.failed} does not hold`);
    }
    const flags = [`failureMode ${e.route.failureMode}`, ...(e.route.shadow ? ['SHADOW'] : [])];
    lines.push(`route: ${e.route.name} (${flags.join(', ')})${e.route.tried.every((t) => !t.matched) ? ', the default route: no route matched' : ''}`);
  }
  if (e.stages.length > 0) lines.push('stages:');
  for (const s of e.stages) {
    const parts = [`  [${s.index}] ${s.stage}`];
    if ('phase' in s && s.phase === 'finish') parts.push('finish');
    parts.push(s.verdict);
    if ('reason' in s && s.reason !== undefined) parts.push(`${s.reason}${s.status === undefined ? '' : ` (${s.status})`}`);
    if ('shadow' in s && s.shadow) parts.push('[shadow: not enforced]');
    if ('detail' in s && s.detail !== undefined) parts.push(`- ${s.detail}`);
    lines.push(parts.join(' '));
  }
  if (e.identity !== null) lines.push(`identity: ${e.identity.subject} (${e.identity.kind}, ${e.identity.source})`);
  const d = e.decision;
  lines.push(`decision: ${d.decision} ${d.reason} (${d.status})${d.detail === undefined ? '' : ` - ${d.detail}`}`);
  if (e.enforced.decision !== d.decision || e.enforced.reason !== d.reason) lines.push(`envoy gets: ${e.enforced.decision} ${e.enforced.reason} (${e.enforced.status})`);
  if (e.shadow !== undefined) lines.push(`shadow decision: ${e.shadow.decision} ${e.shadow.reason}${e.shadow.stage === undefined ? '' : ` (by ${e.shadow.stage})`}`);
  if (e.audit !== undefined) lines.push(`audit fields: ${JSON.stringify(e.audit)}`);
  if (e.fault !== undefined) lines.push(`fault: ${e.fault}`);
  lines.push('CheckResponse:');
  lines.push(JSON.stringify(e.response, null, 2));
  return lines.join('\n');
}
