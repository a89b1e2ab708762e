/**
 * The one in-process assembly of Passgate: a config and a composition in,
 * every capability's prepared state and the route table built on them out.
 * The service uses it for start and reload (phase one of two); tests and
 * benches use `assemble` to get a working route table without ports.
 */
import { pino, type Logger } from 'pino';
import type { PassgateConfig } from '../config/schema.js';
import { Metrics } from '../observability/metrics.js';
import { compileRouteTable, type RouteTable } from '../routing/route-table.js';
import type { Capability, Prepared } from '../capabilities/capability.js';
import type { AdminRoute } from '../capabilities/admin-http.js';
import { defaultComposition, type Composition } from '../capabilities/index.js';

/** Everything built for one config: not yet (or no longer) serving until committed. */
export interface Generation {
  readonly config: PassgateConfig;
  readonly prepared: ReadonlyMap<Capability<any>, Prepared<any>>;
  readonly table: RouteTable;
  readonly adminRoutes: readonly AdminRoute[];
}

export interface AssembleOptions {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The generation serving now: capabilities take long-lived parts over from it (never changing it). */
  readonly previous?: Generation | undefined;
}

/**
 * Prepares every capability for `config` in dependency order, then builds
 * the route table on those states. On any failure, discards everything
 * prepared so far (in reverse order) and rethrows.
 */
export async function prepareGeneration(composition: Composition, config: PassgateConfig, options: AssembleOptions): Promise<Generation> {
  const prepared = new Map<Capability<any>, Prepared<any>>();
  try {
    for (const cap of composition.capabilities) {
      const p = await cap.prepare(config, {
        logger: options.logger,
        metrics: options.metrics,
        previous: options.previous?.prepared.get(cap)?.state,
        stageDefinition: (type) => composition.stageTypes.get(type)?.definition,
        dependency: <T>(dep: Capability<T>): T => {
          if (!(cap.needs ?? []).includes(dep.name) || !prepared.has(dep)) {
            throw new Error(`capability "${cap.name}" uses "${dep.name}" without declaring it in needs`);
          }
          return prepared.get(dep)!.state as T;
        },
      });
      prepared.set(cap, p);
    }
    const table = compileRouteTable(config, {
      logger: options.logger,
      metrics: options.metrics,
      stageType: (type) => {
        const t = composition.stageTypes.get(type);
        return t && { definition: t.definition, state: prepared.get(t.capability)?.state };
      },
    });
    const adminRoutes = [...prepared.values()].flatMap((p) => p.adminRoutes ?? []);
    return { config, prepared, table, adminRoutes };
  } catch (err) {
    for (const p of [...prepared.values()].reverse()) {
      try {
        await p.discard?.();
      } catch {
        // Best effort: the original error is what the operator needs to see.
      }
    }
    throw err;
  }
}

export interface Assembled {
  /** The route table of the committed config. */
  readonly table: RouteTable;
  readonly generation: Generation;
  /** The committed state of one capability (e.g. the identity capability's certificate cache). */
  stateOf<State>(capability: Capability<State>): State;
  /** Prepares `config` taking over from the committed one, commits it and retires the old; resolves to the new table. */
  reload(config: PassgateConfig): Promise<RouteTable>;
  close(): Promise<void>;
}

/** Prepares and commits `config` in process (no ports): for tests, benches and embedders that drive the Checker themselves. */
export async function assemble(
  config: PassgateConfig,
  options: { composition?: Composition; logger?: Logger; metrics?: Metrics } = {},
): Promise<Assembled> {
  const composition = options.composition ?? defaultComposition();
  const logger = options.logger ?? pino({ level: 'silent' });
  const metrics = options.metrics ?? new Metrics(false);
  let current = await prepareGeneration(composition, config, { logger, metrics });
  for (const p of current.prepared.values()) p.commit?.();
  return {
    get table() {
      return current.table;
    },
    get generation() {
      return current;
    },
    stateOf: <State>(capability: Capability<State>) => current.prepared.get(capability)?.state as State,
    async reload(next) {
      const gen = await prepareGeneration(composition, next, { logger, metrics, previous: current });
      for (const p of gen.prepared.values()) p.commit?.();
      const old = current;
      current = gen;
      for (const [cap, p] of old.prepared) await p.retire?.(gen.prepared.get(cap)?.state);
      return gen.table;
    },
    async close() {
      for (const p of [...current.prepared.values()].reverse()) await p.close?.();
    },
  };
}
