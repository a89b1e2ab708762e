/**
 * Per-Check state shared by the stages of one chain. Created once per Check;
 * the arrays start empty and are only filled by stages that need them.
 */
import type { RequestView } from './request-view.js';
import type { FailureMode, GatewayConfig } from '../config/schema.js';
import type { SubjectKind } from './events.js';
import type { FactKey } from './facts.js';

/** What a stage may know of the gateway judging the request (routing compiles the full one). */
export interface GatewayInfo {
  readonly name: string;
  readonly kind: GatewayConfig['kind'];
  /** Whether x-forwarded-client-cert may be believed on this gateway (`trustXfcc`). */
  readonly trustXfcc: boolean;
  readonly challenge: string;
}

/** What a stage may know of the route it runs on. */
export interface RouteInfo {
  readonly name: string;
  readonly failureMode: FailureMode;
  /** Shadowed (`shadow: true`): decided and recorded, but Envoy is answered allow. */
  readonly shadow?: boolean;
  /** Some stage of the route is shadowed (computed once when the route is compiled). */
  readonly shadowStages?: boolean;
  /** The route's stages in order (a stage may need to know what runs around it). */
  readonly stages: readonly { readonly type: string }[];
}

/** Who the caller is, as decided by an identity stage (mTLS, JWT, ...). */
export interface Identity {
  /** Stable subject, e.g. a user id or a SPIFFE id. */
  readonly subject: string;
  readonly kind: 'user' | 'service' | 'developer' | 'anonymous';
  /** How it was established: `mtls`, `jwt`, `oauth2`... */
  readonly source: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly groups: readonly string[];
  /** Device the request comes from, when known. */
  readonly deviceId?: string;
}

/** An outcome the pipeline reports (to FDS counters, metrics). */
export interface Outcome {
  /** `auth_failure`, `bad_signature`, `denied_scope`, `request`... */
  readonly event: string;
  /** Which subject it is about: `user`, `device`, `ip`, `client`, `cert`. */
  readonly subjectKind: SubjectKind;
  readonly subject: string;
  /** Reported by a shadowed stage (or on a shadowed route): FDS counts it apart and never blocks on it. */
  readonly shadow?: boolean;
}

/** What one stage answered, as `passgate explain` shows it. */
export interface StageTrace {
  readonly stage: string;
  readonly index: number;
  readonly phase: 'run' | 'finish';
  /** `continue`, `allow`, `deny`, `fail`; a finish that kept the decision is not listed. */
  readonly verdict: string;
  readonly reason?: string;
  readonly status?: number;
  readonly detail?: string;
  /** The stage is shadowed: its verdict was recorded, not enforced. */
  readonly shadow?: boolean;
}

/** A verdict a shadowed stage (or route) reached but did not enforce. */
export interface ShadowVerdict {
  /** The stage type, or `(route)` for a shadowed route. */
  readonly stage: string;
  readonly verdict: 'deny' | 'fail';
  readonly reason: string;
  readonly status: number;
}

/** Where a shadowed stage started, to tell afterwards what it set and reported (see `markShadow`). */
export interface ShadowMark {
  readonly outcomes: number;
  readonly facts: readonly unknown[] | undefined;
}

export type HeaderPair = readonly [string, string];

export class CheckContext {
  identity: Identity | undefined = undefined;
  /** Facts stages pass to later stages, by slot (see facts.ts); allocated on the first `set`. */
  private facts: unknown[] | undefined = undefined;
  /** Headers to set on the upstream request (overwrite semantics). */
  readonly upstreamHeaders: HeaderPair[] = [];
  /** Request headers to remove before upstream (e.g. a verified token); undefined until a stage asks. */
  removeUpstream: string[] | undefined = undefined;
  /** Headers to add to the response the client gets. */
  readonly responseHeaders: HeaderPair[] = [];
  /** Extra fields for the audit line. */
  readonly audit: Record<string, unknown> = {};
  readonly outcomes: Outcome[] = [];
  /** Set when a stage failed open: the upstream gets `x-passgate-degraded: true`. */
  degraded = false;
  /**
   * A dry run (`passgate explain`): stages must not write (no FDS counters, no
   * claims burned, no blocks created) and nothing is counted or audited as traffic.
   */
  dry = false;
  /**
   * True while a shadowed stage's run or finish runs synchronously (pipeline/shadow.ts): a
   * stage that writes as it decides (fds, when itself shadowed) reads it then.
   */
  inShadow = false;
  /** Filled only by explain: each stage's answer, in order. */
  trace: StageTrace[] | undefined = undefined;
  /** Verdicts shadowed stages reached but did not enforce; undefined until one does. */
  shadowed: ShadowVerdict[] | undefined = undefined;
  /** Fact slots a shadowed stage set (its pending claims must not decide the real answer). */
  private shadowFacts: number[] | undefined = undefined;

  constructor(
    readonly request: RequestView,
    readonly gateway: GatewayInfo,
    readonly route: RouteInfo,
    /** Epoch ms by which the answer must be on the wire. */
    readonly deadline: number,
    readonly traceId: string,
    readonly startedAt: number,
  ) {}

  /** Milliseconds left before the answer is due (never negative). */
  remainingMs(now = Date.now()): number {
    const left = this.deadline - now;
    return left > 0 ? left : 0;
  }

  setUpstreamHeader(name: string, value: string): void {
    for (let i = 0; i < this.upstreamHeaders.length; i++) {
      if (this.upstreamHeaders[i]![0] === name) {
        this.upstreamHeaders[i] = [name, value];
        return;
      }
    }
    this.upstreamHeaders.push([name, value]);
  }

  addResponseHeader(name: string, value: string): void {
    this.responseHeaders.push([name, value]);
  }

  /** The fact a previous stage of this Check set, if any. */
  get<T>(key: FactKey<T>): T | undefined {
    return this.facts?.[key.slot] as T | undefined;
  }

  set<T>(key: FactKey<T>, value: T): void {
    (this.facts ??= [])[key.slot] = value;
  }

  /**
   * Records an outcome for FDS counters. `event` must be one the reporting
   * stage type declares in its `events` (test/core/events-declared.test.ts
   * checks every call site).
   */
  report(event: string, subjectKind: SubjectKind, subject: string): void {
    this.outcomes.push({ event, subjectKind, subject });
  }

  /** Called before a shadowed stage runs; `endShadow(mark)` after it settled. */
  markShadow(): ShadowMark {
    return { outcomes: this.outcomes.length, facts: this.facts === undefined ? undefined : [...this.facts] };
  }

  /**
   * Marks what the shadowed stage did since `mark` (the chain runs one stage
   * at a time, so everything in between is its own, across awaits too): its
   * outcomes become shadow outcomes, the fact slots it set shadow facts.
   */
  endShadow(mark: ShadowMark): void {
    for (let i = mark.outcomes; i < this.outcomes.length; i++) {
      const o = this.outcomes[i]!;
      if (o.shadow !== true) this.outcomes[i] = { ...o, shadow: true };
    }
    const facts = this.facts;
    if (facts === undefined) return;
    for (let slot = 0; slot < facts.length; slot++) {
      if (facts[slot] !== mark.facts?.[slot]) (this.shadowFacts ??= []).push(slot);
    }
  }

  /** Whether the value of `key` was set by a shadowed stage. */
  setInShadow<T>(key: FactKey<T>): boolean {
    return this.shadowFacts?.includes(key.slot) === true;
  }

  shadowVerdict(v: ShadowVerdict): void {
    (this.shadowed ??= []).push(v);
  }
}
