#!/usr/bin/env node
/**
 * `passgate` / `npm start`: loads the config (--config PATH, PASSGATE_CONFIG,
 * else the embedded default), starts the service and wires the signals:
 * SIGHUP reloads, SIGTERM/SIGINT drain and exit.
 */
import { ConfigError, loadConfigFile, resolveConfigPath } from './config/load.js';
import { PassgateService } from './server/service.js';

async function main(): Promise<void> {
  let configPath: string;
  let config;
  try {
    configPath = resolveConfigPath(process.argv.slice(2), process.env);
    config = loadConfigFile(configPath);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`passgate: ${err.message}\nNothing was started. Fix the file and start again.\n`);
      process.exit(2);
    }
    throw err;
  }

  let service: PassgateService;
  try {
    service = await PassgateService.start({ config, configPath });
  } catch (err) {
    // A config problem found while starting (an unreadable key or token file) is still a config error.
    if (err instanceof ConfigError) {
      process.stderr.write(`passgate: ${err.message}\nNothing was started. Fix the file and start again.\n`);
      process.exit(2);
    }
    process.stderr.write(`passgate: cannot start: ${(err as Error).message}\n`);
    process.exit(1);
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
  // A bug must not take the edge down silently: log it; the Check path has its own guards.
  process.on('uncaughtException', (err) => service.logger.fatal({ err: err.stack }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => service.logger.error({ err: String(err) }, 'unhandled rejection'));
}

void main();
