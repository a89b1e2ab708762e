/** Long-lived parts of the fds capability (engine, admin endpoints); listed in server/capabilities.ts. */
import type { Capability } from '../server/capability.js';
import { createFdsAdminHandler } from './admin-api.js';
import { AdminTokenError, FDS_ENGINE, FDS_METRICS, FdsEngine, FdsMetrics, type FdsHandle } from './engine.js';
import { ConfigError } from '../config/load.js';

/** A bad token source is a config error like any other (exit 2 at start, a rejected reload). */
function asConfigError(err: unknown): unknown {
  return err instanceof AdminTokenError ? new ConfigError(err.key, err.problems) : err;
}
import { engineFor } from './fds-stage.js';

export function fdsCapabilities(): Capability[] {
  return [
    {
      name: 'fds',
      async start(host) {
        host.admin.routePrefix('/admin/fds/', createFdsAdminHandler(host.services, host.logger));
        // Created here (not lazily by the first stage) so the admin API and pub/sub run even before traffic.
        if (!host.config.fds) return;
        let engine: FdsEngine;
        try {
          engine = engineFor(host.services, host.metrics, host.logger, host.config.fds).engine;
        } catch (err) {
          throw asConfigError(err);
        }
        // Give Redis one connect timeout so the first Checks find it; a Redis that is down does not stop the start.
        const up = await engine.store.ready(host.config.fds.redis?.connectTimeoutMs ?? 0);
        if (!up) host.logger.warn('FDS store not reachable at start; routes apply their failure mode until it is');
      },
      async reload(config, host) {
        try {
          await reloadFds(config, host);
        } catch (err) {
          throw asConfigError(err);
        }
      },
    },
  ];
}

async function reloadFds(config: Parameters<NonNullable<Capability['reload']>>[0], host: Parameters<NonNullable<Capability['reload']>>[1]): Promise<void> {
  const settings = config.fds;
  if (!settings) return; // an engine created for a bare `fds` stage keeps its defaults
  const handle = host.services.peek<FdsHandle>(FDS_ENGINE);
  if (!handle) {
    engineFor(host.services, host.metrics, host.logger, settings);
    return;
  }
  if (handle.engine.update(settings)) return;
  // The store itself changed (Redis address, mode, prefix): connect anew, swap, then close the old one.
  const metrics = host.services.get(FDS_METRICS, () => new FdsMetrics(host.metrics.registry));
  const next = new FdsEngine(settings, host.logger.child({ component: 'fds' }), metrics);
  await next.store.ready(settings.redis?.connectTimeoutMs ?? 0);
  await handle.swap(next);
}
