/**
 * A capability (passport keys, FDS store, ...) that needs more than stages:
 * admin endpoints, background work, its own config section reloaded with the
 * rest. Registered in `capabilities.ts`.
 */
import type { Logger } from 'pino';
import type { PassgateConfig } from '../config/schema.js';
import type { Metrics } from '../observability/metrics.js';
import type { ServiceRegistry } from '../stages/services.js';
import type { AdminServer } from './admin-server.js';

export interface CapabilityHost {
  readonly config: PassgateConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly services: ServiceRegistry;
  readonly admin: AdminServer;
}

export interface Capability {
  readonly name: string;
  /** Once, after the config is valid and before any port opens. */
  start?(host: CapabilityHost): void | Promise<void>;
  /** With each new config, before stages are rebuilt; throw to reject the reload (the old config keeps serving). */
  reload?(config: PassgateConfig, host: CapabilityHost): void | Promise<void>;
  /** On shutdown, after the last Check was answered. */
  stop?(): void | Promise<void>;
}
