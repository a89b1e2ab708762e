/**
 * The contract of a capability (core stages, identity, FDS, passport, ...):
 * one object per capability folder, listed once in `capabilities/index.ts`.
 * It declares its config section, its stage types and the capabilities it
 * needs, and builds its state in two phases so a reload is all-or-nothing:
 *
 * - `prepare(config, ctx)` builds everything for one config (and may open
 *   connections, which `discard` can close) without touching the state that
 *   serves now; it throws (a ConfigError naming the key) to reject it.
 *   Long-lived parts (a Redis connection whose settings did not change, a
 *   cache) are taken over from `ctx.previous` without mutating it.
 * - `commit()` swaps the prepared state in; it cannot fail.
 * - `discard()` when the config was rejected (this or another capability
 *   failed): closes only what this prepare opened.
 * - `retire(next)` once `next` serves instead: closes what `next` did not take over.
 * - `close()` at shutdown (or a failed start): closes everything it holds.
 */
import type * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { ConfigIssue, PassgateConfig } from '../config/schema.js';
import type { Metrics } from '../observability/metrics.js';
import type { StageDefinition } from '../stages/stage.js';
import type { AdminRoute } from './admin-http.js';

export interface PrepareContext<State> {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The state serving now (undefined at start); read it, never change it. */
  readonly previous: State | undefined;
  /** A stage type of the composition, by name (e.g. to read what the stages a config uses declare). */
  stageDefinition(type: string): StageDefinition<any, any> | undefined;
  /** The prepared state of a capability this one `needs` (checked at composition). */
  dependency<T>(capability: Capability<T>): T;
}

export interface Prepared<State> {
  readonly state: State;
  /** Admin endpoints served while this state is committed. */
  readonly adminRoutes?: readonly AdminRoute[];
  commit?(): void;
  /**
   * At start, after commit and before health says SERVING: pay once what the first Check would
   * (a script load, a first signature) without changing anything a Check sees. Bounded by
   * server.warmupMs; a failure is logged, never fatal (the Check path handles it as usual).
   */
  warm?(): Promise<void>;
  discard?(): void | Promise<void>;
  retire?(next: State): void | Promise<void>;
  close?(): void | Promise<void>;
}

/**
 * A gRPC service a capability serves beside Check, on the same server and
 * port (e.g. ext_proc). Registered once at start; its handlers read the
 * committed state through `current` on every call, so a reload swaps it.
 */
export interface CapabilityGrpcService<State> {
  /** Fully-qualified service name (health status and reflection). */
  readonly name: string;
  load(): { readonly service: grpc.ServiceDefinition; readonly packageDefinition: PackageDefinition };
  implementation(current: () => State | undefined, logger: Logger): grpc.UntypedServiceImplementation;
}

export interface Capability<State = unknown> {
  /** Unique; other capabilities name it in `needs`. */
  readonly name: string;
  /** Names of capabilities whose state `prepare` uses; a missing or cyclic one is a startup error. */
  readonly needs?: readonly string[];
  /** Its top-level config section (optional in the file). */
  readonly section?: { readonly key: string; readonly schema: z.ZodType };
  /** Stage types it contributes; their factories receive this capability's prepared state. */
  readonly stages?: readonly StageDefinition<any, State>[];
  /**
   * Rules that span sections, run when the config is parsed (so `validate`
   * and a reload report them like any schema problem). `stages` is every
   * stage type of the composition.
   */
  check?(config: PassgateConfig, stages: readonly StageDefinition<any, any>[]): readonly ConfigIssue[];
  /** gRPC services served beside Check (same port). */
  readonly grpcServices?: readonly CapabilityGrpcService<State>[];
  prepare(config: PassgateConfig, ctx: PrepareContext<State>): Prepared<State> | Promise<Prepared<State>>;
}

/** For a capability with stages only (no state of its own). */
export const STATELESS: Prepared<undefined> = Object.freeze({ state: undefined });
