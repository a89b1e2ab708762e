/**
 * Assembles the running service: config → prepared capability states →
 * route table → checker, the gRPC and admin servers, reload on SIGHUP and
 * file change, graceful shutdown.
 *
 * Start and reload are two-phase: every capability prepares its state for
 * the new config (nothing serving changes); if any of them, or building a
 * stage, fails, every prepared state is discarded and the old config keeps
 * serving untouched. Only then are all committed at once (table, admin
 * routes, capability states), and the replaced states retired.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import type { PassgateConfig } from '../config/schema.js';
import { loadConfigFile, ConfigError } from '../config/load.js';
import { Checker } from '../check/checker.js';
import { Metrics } from '../observability/metrics.js';
import { createLogger } from '../observability/logger.js';
import type { Capability } from '../capabilities/capability.js';
import { prepareGeneration, type Generation } from './assemble.js';
import { compose, defaultComposition, type Composition } from '../capabilities/index.js';
import { AdminServer } from './admin-server.js';
import { GrpcServer } from './grpc-server.js';
import { explainHandler } from './explain-endpoint.js';
import { fdsCapability } from '../fds/capability.js';

export interface ServiceOptions {
  readonly config: PassgateConfig;
  /** Where the config came from; enables reload on SIGHUP / file change. */
  readonly configPath?: string;
  readonly logger?: Logger;
  /** Override listen ports (0 = any free port), e.g. in tests. */
  readonly grpcPort?: number;
  readonly adminPort?: number;
  readonly watchConfig?: boolean;
  /** Capabilities added to the built-in ones (an embedder's stage types, config sections, admin routes). */
  readonly capabilities?: readonly Capability<any>[];
  /** Register default process metrics (off in tests that start many services). */
  readonly processMetrics?: boolean;
}

export class PassgateService {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly admin: AdminServer;
  readonly grpc: GrpcServer;
  readonly composition: Composition;
  private checker: Checker | undefined;
  private config: PassgateConfig;
  private current: Generation | undefined;
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
    this.composition = options.capabilities?.length ? compose(options.capabilities) : defaultComposition();
    this.admin = new AdminServer(this.metrics, () => this.readiness(), this.logger);
    // A dry run against the committed config; the deadline leaves room for a cold FDS connection.
    this.admin.route(
      'POST',
      '/explain',
      explainHandler(() => this.checker, () => this.stateOf(fdsCapability)?.engine, () => Math.max(this.config.server.defaultDeadlineMs, 2_000), this.logger),
    );
    this.grpc = new GrpcServer(
      () => this.checker!,
      () => ({ defaultMs: this.config.server.defaultDeadlineMs, marginMs: this.config.server.deadlineMarginMs }),
      this.metrics,
      this.logger,
      this.config.server.maxMessageBytes,
      // Capabilities' own gRPC services (ext_proc): handlers read the committed state on every call.
      this.composition.capabilities.flatMap((cap) =>
        (cap.grpcServices ?? []).map((g) => {
          const { service, packageDefinition } = g.load();
          return { name: g.name, service, packageDefinition, implementation: g.implementation(() => this.stateOf(cap), this.logger) };
        }),
      ),
      this.config.server.transport,
    );
  }

  /**
   * Starts everything; throws (naming the problem) when a capability, a
   * stage or a port cannot start, after closing whatever it had opened.
   */
  static async start(options: ServiceOptions): Promise<PassgateService> {
    const svc = new PassgateService(options);
    try {
      const next = await svc.prepare(svc.config);
      svc.commit(next);
      const { server } = svc.config;
      svc.grpcPort = await listening('server.grpc', server.grpc.host, options.grpcPort ?? server.grpc.port, (h, p) => svc.grpc.listen(h, p));
      svc.adminPort = await listening('server.admin', server.admin.host, options.adminPort ?? server.admin.port, (h, p) => svc.admin.listen(h, p));
    } catch (err) {
      await svc.closeAfterFailedStart();
      throw err;
    }
    await svc.warmUp();
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

  /**
   * server.warmupMs: the capabilities' warm hooks (script load, first signature) and the Check
   * codecs' JIT, before health says SERVING. Bounded and never fatal: a Redis that is down or a
   * slow hook only costs the first real Checks what they would have cost anyway.
   */
  private async warmUp(): Promise<void> {
    const limitMs = this.config.server.warmupMs;
    if (limitMs === 0 || this.current === undefined) return;
    const startedAt = performance.now();
    const hooks = [...this.current.prepared.entries()].map(async ([cap, p]) => {
      try {
        await p.warm?.();
      } catch (err) {
        this.logger.warn({ capability: cap.name, err: err instanceof Error ? err.message : String(err) }, 'warm-up step failed (the first Checks pay for it instead)');
      }
    });
    try {
      this.grpc.warmCodecs();
    } catch (err) {
      this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'codec warm-up failed');
    }
    let timer: NodeJS.Timeout | undefined;
    const overrun = new Promise<'overrun'>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, limitMs - (performance.now() - startedAt)), 'overrun');
    });
    const outcome = await Promise.race([Promise.all(hooks), overrun]);
    clearTimeout(timer);
    const ms = Math.round(performance.now() - startedAt);
    if (outcome === 'overrun') this.logger.warn({ ms, limitMs }, 'warm-up took longer than server.warmupMs; serving anyway');
    else this.logger.debug({ ms }, 'warm-up done');
  }

  get currentConfig(): PassgateConfig {
    return this.config;
  }

  /** The state a capability committed for the serving config (tests and admin tooling read it). */
  stateOf<State>(capability: Capability<State>): State | undefined {
    return this.current?.prepared.get(capability)?.state as State | undefined;
  }

  /** Phase one (see assemble.ts): nothing serving changes; on failure a ConfigError naming the key. */
  private async prepare(config: PassgateConfig): Promise<Generation> {
    try {
      return await prepareGeneration(this.composition, config, { logger: this.logger, metrics: this.metrics, previous: this.current });
    } catch (err) {
      throw this.asConfigError(err);
    }
  }

  /** Phase two: swap everything in at once (cannot fail), then retire what was replaced. */
  private commit(next: Generation): void {
    const prev = this.current;
    for (const p of next.prepared.values()) p.commit?.();
    this.current = next;
    this.config = next.config;
    if (this.checker === undefined) this.checker = new Checker(next.table, { logger: this.logger, metrics: this.metrics });
    else this.checker.setTable(next.table);
    this.admin.setCapabilityRoutes(next.adminRoutes);
    if (prev === undefined) return;
    for (const [cap, old] of prev.prepared) {
      const replacement = next.prepared.get(cap);
      void this.quietly('retire', () => old.retire?.(replacement?.state));
    }
  }

  private async closeAll(): Promise<void> {
    const gen = this.current;
    this.current = undefined;
    if (gen === undefined) return;
    for (const p of [...gen.prepared.values()].reverse()) await this.quietly('close', () => p.close?.());
  }

  private async closeAfterFailedStart(): Promise<void> {
    this.draining = true;
    await this.closeAll();
    await this.grpc.shutdown(0);
    await this.admin.close();
  }

  private async quietly(what: string, fn: () => void | Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, `capability state did not ${what} cleanly`);
    }
  }

  /** Any failure to prepare a capability or build a stage becomes a ConfigError naming its key. */
  private asConfigError(err: unknown): ConfigError {
    const source = this.options.configPath ?? '(inline)';
    if (err instanceof ConfigError && err.source === source) return err;
    const problems = (err as { problems?: unknown }).problems;
    return new ConfigError(source, Array.isArray(problems) ? problems.map(String) : [(err as Error).message]);
  }

  private readiness(): { ready: boolean; why?: string } {
    if (this.draining) return { ready: false, why: 'draining' };
    if (!this.started) return { ready: false, why: 'starting' };
    return { ready: true };
  }

  /** Validates and swaps in a new config; on any problem the old one keeps serving. */
  async applyConfig(config: PassgateConfig): Promise<void> {
    if (this.draining) throw new Error('the service is stopping: a new config is not applied');
    // A config that any capability or stage rejects changes nothing at all
    // (JWKS, FDS rules and connection, caches, admin routes stay as they are).
    const next = await this.prepare(config);
    if (this.draining) {
      // stop() began while this config was being prepared: close what it opened instead of committing it.
      for (const p of [...next.prepared.values()].reverse()) await this.quietly('close', () => p.close?.());
      throw new Error('the service is stopping: a new config is not applied');
    }
    const old = this.config.server;
    if (JSON.stringify(old) !== JSON.stringify(config.server)) {
      this.logger.warn('server.* settings changed: ports and limits apply after a restart; routes apply now');
    }
    this.commit(next);
    this.metrics.configInfo.setToCurrentTime();
  }

  /** Reloads from the config file. Resolves false (and logs why) when the new file is rejected. */
  reload(): Promise<boolean> {
    const path = this.options.configPath;
    if (!path || this.draining) return Promise.resolve(false);
    // Serialize reloads so two quick file events cannot interleave.
    this.reloading = this.reloading.then(async () => {
      try {
        const config = loadConfigFile(path, this.composition);
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
    // A reload already running finishes first (it sees draining and closes what it prepared), so nothing is committed after closeAll.
    await this.reloading;
    await this.closeAll();
    await this.admin.close();
    this.logger.info('stopped');
  }
}

/** Opens a port, naming the config key and address when it cannot (e.g. the port is taken). */
async function listening(key: string, host: string, port: number, listen: (host: string, port: number) => Promise<number>): Promise<number> {
  try {
    return await listen(host, port);
  } catch (err) {
    throw new Error(`${key}: cannot listen on ${host}:${port} (${(err as Error).message}); is another process using the port?`);
  }
}
