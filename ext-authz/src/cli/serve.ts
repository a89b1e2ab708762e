/**
 * `passgate serve`: loads the config, starts the service and wires the
 * signals (SIGHUP reloads, SIGTERM/SIGINT drain and exit).
 */
import { ConfigError, loadConfigFile, type ConfigChoice } from '../config/load.js';
import { PassgateService } from '../server/service.js';
import { createLogger } from '../observability/logger.js';
import { isWorker, runPrimary, workerCount, workerId, workersProblem, WORKERS_ENV } from './workers.js';

export const DEV_CONFIG_WARNING =
  'DEVELOPMENT CONFIG IN USE (--dev): demo users, a Passport key generated at start, in-memory FDS. Never run this in production; pass --config FILE';

/** Starts the service; returns only on a startup failure (with the exit code), otherwise the process lives on. */
export async function serve(choice: ConfigChoice): Promise<number | undefined> {
  let config;
  try {
    config = loadConfigFile(choice.path);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`passgate: ${err.message}\nNothing was started. Fix the file and start again.\n`);
      return 2;
    }
    throw err;
  }

  // The same port overrides as `npm start`, so tests and a second local copy can pick free ports.
  const ports: { grpcPort?: number; adminPort?: number } = {};
  for (const [name, key] of [['PASSGATE_GRPC_PORT', 'grpcPort'], ['PASSGATE_ADMIN_PORT', 'adminPort']] as const) {
    const v = process.env[name];
    if (v === undefined || v === '') continue;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 65535) {
      process.stderr.write(`passgate: ${name}=${v} is not a port number (0-65535); unset it or fix it\n`);
      return 2;
    }
    ports[key] = n;
  }

  const workers = workerCount(process.env[WORKERS_ENV]);
  if (typeof workers !== 'number') {
    process.stderr.write(`passgate: ${workers.error}\n`);
    return 2;
  }
  const problem = workersProblem(config, workers);
  if (problem !== undefined) {
    process.stderr.write(`passgate: ${problem}\nNothing was started.\n`);
    return 2;
  }
  if (workers > 1 && !isWorker()) {
    // The config was checked above, so a bad one fails once here instead of in every worker.
    runPrimary(workers, createLogger(config.logging.level).child({ role: 'primary' }));
    return undefined;
  }
  const id = workerId();

  let service: PassgateService;
  try {
    service = await PassgateService.start({
      config,
      configPath: choice.path,
      ...ports,
      // Each line says which worker wrote it (counters and caches are per worker).
      ...(id === undefined ? {} : { logger: createLogger(config.logging.level).child({ worker: id }) }),
    });
  } catch (err) {
    // A config problem found while starting (an unreadable key or token file) is still a config error.
    if (err instanceof ConfigError) {
      process.stderr.write(`passgate: ${err.message}\nNothing was started. Fix the file and start again.\n`);
      return 2;
    }
    process.stderr.write(`passgate: cannot start: ${(err as Error).message}\n`);
    return 1;
  }

  process.on('SIGHUP', () => void service.reload());
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    service.logger.info({ signal }, 'shutdown requested');
    const hardStop = setTimeout(() => process.exit(1), config.server.drainDelayMs + config.server.shutdownGraceMs + 2_000);
    hardStop.unref();
    service.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Logged once the signal handlers are in place: whoever waits for this line may stop us at once.
  if (choice.embedded) service.logger.warn({ config: choice.path }, DEV_CONFIG_WARNING);
  // A bug must not take the edge down silently: log it; the Check path has its own guards.
  process.on('uncaughtException', (err) => service.logger.fatal({ err: err.stack }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => service.logger.error({ err: String(err) }, 'unhandled rejection'));
  return undefined;
}
