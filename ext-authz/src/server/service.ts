/**
 * Assembles the running service: config → route table → checker, the gRPC
 * and admin servers, reload on SIGHUP and file change, graceful shutdown.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import type { PassgateConfig } from '../config/schema.js';
import { loadConfigFile, ConfigError } from '../config/load.js';
import { compileRouteTable } from '../routing/route-table.js';
import { untriggerableRules } from '../fds/event-catalog.js';
import { stageDefinition } from '../stages/catalog.js';
import { Checker } from '../check/checker.js';
import { Metrics } from '../observability/metrics.js';
import { createLogger } from '../observability/logger.js';
import { ServiceRegistry } from '../stages/services.js';
import { AdminServer } from './admin-server.js';
import { GrpcServer } from './grpc-server.js';
import type { Capability, CapabilityHost } from './capability.js';
import { createCapabilities } from './capabilities.js';

export interface ServiceOptions {
  readonly config: PassgateConfig;
  /** Where the config came from; enables reload on SIGHUP / file change. */
  readonly configPath?: string;
  readonly logger?: Logger;
  /** Override listen ports (0 = any free port), e.g. in tests. */
  readonly grpcPort?: number;
  readonly adminPort?: number;
  readonly watchConfig?: boolean;
  readonly capabilities?: Capability[];
  /** Register default process metrics (off in tests that start many services). */
  readonly processMetrics?: boolean;
}

export class PassgateService {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly services = new ServiceRegistry();
  readonly admin: AdminServer;
  readonly grpc: GrpcServer;
  private checker: Checker;
  private config: PassgateConfig;
  private readonly capabilities: Capability[];
  private draining = false;
  private started = false;
  private watcher: FSWatcher | undefined;
  private reloadTimer: NodeJS.Timeout | undefined;
  private reloading: Promise<boolean> = Promise.resolve(true);
  grpcPort = 0;
  adminPort = 0;

  private constructor(private readonly options: ServiceOptions) {
    this.config = options.config;
    this.logger = options.logger ?? createLogger(options.config.logging.level);
    this.metrics = new Metrics(options.processMetrics ?? true);
    this.capabilities = options.capabilities ?? createCapabilities();
    this.admin = new AdminServer(this.metrics, () => this.readiness(), this.logger);
    this.checker = new Checker(this.compile(this.config), { logger: this.logger, metrics: this.metrics });
    this.grpc = new GrpcServer(
      () => this.checker,
      () => ({ defaultMs: this.config.server.defaultDeadlineMs, marginMs: this.config.server.deadlineMarginMs }),
      this.metrics,
      this.logger,
      this.config.server.maxMessageBytes,
    );
  }

  /** Starts everything; throws (naming the problem) when a port or a capability cannot start. */
  static async start(options: ServiceOptions): Promise<PassgateService> {
    const svc = new PassgateService(options);
    for (const cap of svc.capabilities) await cap.start?.(svc.host());
    // Stages are compiled after capabilities started, so they can find the services capabilities made.
    svc.checker.setTable(svc.compile(svc.config));
    const { server } = svc.config;
    svc.grpcPort = await svc.grpc.listen(server.grpc.host, options.grpcPort ?? server.grpc.port);
    svc.adminPort = await svc.admin.listen(server.admin.host, options.adminPort ?? server.admin.port);
    svc.grpc.setServing(true);
    svc.started = true;
    svc.metrics.configInfo.setToCurrentTime();
    if (options.configPath && options.watchConfig !== false) svc.watchConfig(options.configPath);
    svc.logger.info(
      { grpcPort: svc.grpcPort, adminPort: svc.adminPort, gateways: Object.keys(svc.config.gateways), config: options.configPath ?? '(inline)' },
      'passgate ext_authz service started',
    );
    return svc;
  }

  get currentConfig(): PassgateConfig {
    return this.config;
  }

  private host(config = this.config): CapabilityHost {
    return { config, logger: this.logger, metrics: this.metrics, services: this.services, admin: this.admin };
  }

  /** Builds the route table; any failure to build a stage becomes a ConfigError naming its key. */
  private compile(config: PassgateConfig) {
    for (const w of untriggerableRules(config.fds?.rules ?? [], usedStageDefinitions(config))) {
      this.logger.warn({ fds_rule: w.rule }, `fds.rules "${w.rule}" can never fire: ${w.why}`);
    }
    try {
      return compileRouteTable(config, { logger: this.logger, metrics: this.metrics, services: this.services });
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      const problems = (err as { problems?: unknown }).problems;
      throw new ConfigError(
        this.options.configPath ?? '(inline)',
        Array.isArray(problems) ? problems.map(String) : [(err as Error).message],
      );
    }
  }

  private readiness(): { ready: boolean; why?: string } {
    if (this.draining) return { ready: false, why: 'draining' };
    if (!this.started) return { ready: false, why: 'starting' };
    return { ready: true };
  }

  /** Validates and swaps in a new config; on any problem the old one keeps serving. */
  async applyConfig(config: PassgateConfig): Promise<void> {
    // Compile first: a config whose stages cannot be built changes nothing at all,
    // not even a capability's state (new Passport keys in the JWKS, new FDS rules).
    const table = this.compile(config);
    for (const cap of this.capabilities) await cap.reload?.(config, this.host(config));
    const old = this.config.server;
    if (JSON.stringify(old) !== JSON.stringify(config.server)) {
      this.logger.warn('server.* settings changed: ports and limits apply after a restart; routes apply now');
    }
    this.config = config;
    this.checker.setTable(table);
    this.metrics.configInfo.setToCurrentTime();
  }

  /** Reloads from the config file. Resolves false (and logs why) when the new file is rejected. */
  reload(): Promise<boolean> {
    const path = this.options.configPath;
    if (!path) return Promise.resolve(false);
    // Serialize reloads so two quick file events cannot interleave.
    this.reloading = this.reloading.then(async () => {
      try {
        const config = loadConfigFile(path);
        await this.applyConfig(config);
        this.metrics.configReloads.inc({ result: 'success' });
        this.logger.info({ config: path }, 'config reloaded');
        return true;
      } catch (err) {
        this.metrics.configReloads.inc({ result: 'rejected' });
        const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
        this.logger.error({ config: path, problems }, 'new config rejected; the previous config keeps serving');
        return false;
      }
    });
    return this.reloading;
  }

  private watchConfig(path: string): void {
    // Watch the folder, not the file: Kubernetes swaps ConfigMap files through a `..data` symlink.
    const file = basename(path);
    try {
      this.watcher = watch(dirname(path), (_event, name) => {
        if (name !== null && name !== file && name !== '..data') return;
        clearTimeout(this.reloadTimer);
        this.reloadTimer = setTimeout(() => void this.reload(), 150);
      });
      this.watcher.on('error', (err) => this.logger.warn({ err: err.message }, 'config watch failed; SIGHUP still reloads'));
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'cannot watch the config file; SIGHUP still reloads');
    }
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Graceful stop: report NOT_SERVING, stop accepting calls, let in-flight
   * Checks finish within the grace period, then close everything.
   */
  async stop(graceMs = this.config.server.shutdownGraceMs, drainDelayMs = this.config.server.drainDelayMs): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.watcher?.close();
    clearTimeout(this.reloadTimer);
    this.grpc.setServing(false);
    if (drainDelayMs > 0) {
      // Health says NOT_SERVING; Checks are still answered while clients move to other endpoints.
      this.logger.info({ drainDelayMs }, 'draining: NOT_SERVING, still answering Checks for the drain delay');
      await new Promise((resolve) => setTimeout(resolve, drainDelayMs));
    }
    this.logger.info({ inFlight: this.grpc.checksInFlight, graceMs }, 'draining: NOT_SERVING, finishing in-flight checks');
    await this.grpc.shutdown(graceMs);
    for (const cap of [...this.capabilities].reverse()) {
      try {
        await cap.stop?.();
      } catch (err) {
        this.logger.warn({ capability: cap.name, err: (err as Error).message }, 'capability did not stop cleanly');
      }
    }
    await this.services.closeAll();
    await this.admin.close();
    this.logger.info('stopped');
  }
}

/** The stage definitions this config's routes use (the emitters of FDS events here). */
function usedStageDefinitions(config: PassgateConfig): Array<NonNullable<ReturnType<typeof stageDefinition>>> {
  const types = new Set<string>();
  for (const gw of Object.values(config.gateways)) {
    for (const r of gw.routes) for (const s of r.stages) types.add(s.type);
    for (const s of gw.defaultRoute?.stages ?? []) types.add(s.type);
  }
  return [...types].map((t) => stageDefinition(t)).filter((d): d is NonNullable<typeof d> => d !== undefined);
}
