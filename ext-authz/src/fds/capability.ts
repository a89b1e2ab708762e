/**
 * The fds capability: the fds stage, the `fds` section and the admin API
 * under /admin/fds/. Prepare keeps the serving engine (and its Redis
 * connection) when the store settings did not change, and only computes
 * the new rules and token, applied on commit; a changed store gets a new
 * engine, connected in prepare and closed again if the config is rejected.
 *
 * The engine (and with it ioredis) is imported when first prepared, so
 * loading the config schema, e.g. in the offline manifest checks, loads no
 * Redis client.
 */
import type { Capability, Prepared, PrepareContext } from '../capabilities/capability.js';
import type { PassgateConfig } from '../config/schema.js';
import { defaultFdsSettings, fdsConfigSchema, type FdsSettings } from './config.js';
import { fdsStage } from './fds-stage.js';
import type { FdsState } from './state.js';
import { unknownRuleEvents, untriggerableRules, type EventSource } from './event-catalog.js';
import { ConfigError } from '../config/errors.js';

/** The stage types this config's routes use (the emitters of FDS events here). */
function usedStageTypes(config: PassgateConfig): Set<string> {
  const types = new Set<string>();
  for (const gw of Object.values(config.gateways)) {
    for (const r of gw.routes) for (const s of r.stages) types.add(s.type);
    for (const s of gw.defaultRoute?.stages ?? []) types.add(s.type);
  }
  return types;
}

function usesFdsStage(config: PassgateConfig): boolean {
  for (const gw of Object.values(config.gateways)) {
    for (const r of gw.routes) if (r.stages.some((s) => s.type === 'fds')) return true;
    if (gw.defaultRoute?.stages.some((s) => s.type === 'fds')) return true;
  }
  return false;
}

export const fdsCapability: Capability<FdsState> = {
  name: 'fds',
  section: { key: 'fds', schema: fdsConfigSchema },
  stages: [fdsStage],
  // FDS rules may only count events some stage type declares it can report.
  check(config, stages) {
    return unknownRuleEvents(config.fds?.rules ?? [], stages).map((u) => ({
      path: ['fds', 'rules', u.index, 'events', u.eventIndex],
      message: `no stage type reports "${u.event}"; known events: ${u.known.join(', ')}`,
    }));
  },
  async prepare(config, ctx): Promise<Prepared<FdsState>> {
    const used: EventSource[] = [];
    for (const t of usedStageTypes(config)) {
      const d = ctx.stageDefinition(t);
      if (d !== undefined) used.push(d);
    }
    for (const w of untriggerableRules(config.fds?.rules ?? [], used)) {
      ctx.logger.warn({ fds_rule: w.rule }, `fds.rules "${w.rule}" can never fire: ${w.why}`);
    }
    const { FdsEngine, fdsMetrics, AdminTokenError } = await import('./engine.js');
    try {
      return await prepareFds(config, ctx, FdsEngine, fdsMetrics);
    } catch (err) {
      // A bad token source is a config error like any other (exit 2 at start, a rejected reload).
      throw err instanceof AdminTokenError ? new ConfigError(err.key, err.problems) : err;
    }
  },
};

async function prepareFds(
  config: PassgateConfig,
  ctx: PrepareContext<FdsState>,
  FdsEngine: typeof import('./engine.js').FdsEngine,
  fdsMetrics: typeof import('./engine.js').fdsMetrics,
): Promise<Prepared<FdsState>> {
  {
    const { createFdsAdminHandler } = await import('./admin-api.js');
    const old = ctx.previous?.engine;
    const settings: FdsSettings | undefined = config.fds ?? (old === undefined && usesFdsStage(config) ? defaultFdsSettings() : undefined);
    let engine = old;
    let apply: (() => void) | undefined;
    let created = false;
    if (settings !== undefined) {
      apply = old?.prepareUpdate(settings);
      if (apply === undefined) {
        // No engine yet, or the store itself changed (Redis address, mode, prefix): connect anew.
        engine = new FdsEngine(settings, ctx.logger.child({ component: 'fds' }), fdsMetrics(ctx.metrics.registry));
        created = true;
        // Give Redis one connect timeout so the first Checks find it; a Redis that is down does not reject the config.
        const up = await engine.store.ready(settings.redis?.connectTimeoutMs ?? 0);
        if (!up) ctx.logger.warn('FDS store not reachable yet; routes apply their failure mode until it is');
      }
    }
    const state: FdsState = { engine };
    const mine = created ? engine : undefined;
    return {
      state,
      adminRoutes: [{ method: '*', path: '/admin/fds/', prefix: true, handler: createFdsAdminHandler(engine, ctx.logger) }],
      commit: () => {
        apply?.();
        if (engine !== undefined) engine.metrics.engine = engine;
      },
      // The script's first run loads it into Redis (EVALSHA, NOSCRIPT, EVAL: two round trips and a Lua
      // compile) and JITs the call path; no keys, no counters, so nothing a Check sees changes.
      warm: async () => {
        if (engine === undefined || !(await engine.store.ready(settings?.redis?.connectTimeoutMs ?? 1_000))) return;
        await engine.store.evaluate([], [], []);
      },
      discard: async () => {
        await mine?.close();
      },
      retire: async (next) => {
        if (engine !== undefined && next.engine !== engine) await engine.close();
      },
      close: async () => {
        await engine?.close();
      },
    };
  }
}
