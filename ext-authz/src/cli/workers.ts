/**
 * Several Passgate processes on one port (PASSGATE_WORKERS=N|auto): Node's
 * `cluster` module. The primary only forks and supervises; every worker is a
 * complete service (config, caches, gRPC and admin servers) and the primary
 * hands each new connection to one worker (round robin), so Envoy's
 * long-lived HTTP/2 connections spread over the workers. What the workers
 * share goes through Redis (FDS); everything else is per process
 * (docs/scaling.md). Node 20 has no SO_REUSEPORT for net servers, hence cluster.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import type { PassgateConfig } from '../config/schema.js';

export const WORKERS_ENV = 'PASSGATE_WORKERS';
const MAX_WORKERS = 64;
/** A worker that exits this soon after its start is not restarted in a loop faster than this. */
const RESTART_DELAY_MS = 1_000;

/** The worker count PASSGATE_WORKERS asks for (1 when unset), or a message naming what is wrong. */
export function workerCount(value: string | undefined): number | { error: string } {
  if (value === undefined || value === '') return 1;
  if (value === 'auto') return Math.min(MAX_WORKERS, availableParallelism());
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS) return { error: `${WORKERS_ENV}=${value} is not a worker count (1-${MAX_WORKERS}, or "auto" for one per CPU); unset it or fix it` };
  return n;
}

/**
 * Why `config` cannot run as several workers, if it cannot: FDS on the
 * in-memory store keeps blocks, counters and single-use claims (proof jtis,
 * e2ee replay) per process, so thresholds would count per worker and a
 * replayed proof could pass on another worker. Redis shares them.
 */
export function workersProblem(config: PassgateConfig, n: number): string | undefined {
  if (n === 1) return undefined;
  const stages = Object.values(config.gateways).flatMap((g) => [...g.routes.flatMap((r) => r.stages), ...(g.defaultRoute?.stages ?? [])]);
  const fdsInUse = config.fds !== undefined || stages.some((s) => s.type === 'fds');
  const store = config.fds?.store ?? (config.fds?.redis ? 'redis' : 'memory');
  if (!fdsInUse || store === 'redis') return undefined;
  return `${WORKERS_ENV}=${n} with fds.store memory: blocks, counters and single-use proof claims would be per worker (a replayed proof could pass on another worker); set fds.store: redis (docs/scaling.md) or run one worker`;
}

/** True in a process the primary forked. */
export function isWorker(): boolean {
  return cluster.isWorker;
}

export function workerId(): number | undefined {
  return cluster.worker?.id;
}

/**
 * The primary: forks `n` workers and keeps `n` running until SIGTERM/SIGINT,
 * which it forwards (each worker drains as a single process would) before
 * exiting with the worst exit code. SIGHUP is forwarded (every worker
 * reloads). A worker exiting with 2 (config error) stops everything: a
 * restart would only fail again.
 */
export function runPrimary(n: number, logger: Logger): void {
  let stopping = false;
  let worst = 0;
  const fork = () => cluster.fork();
  cluster.on('exit', (worker: Worker, code: number | null, signal: string | null) => {
    const exitCode = code ?? (signal ? 1 : 0);
    if (stopping) {
      worst = Math.max(worst, exitCode);
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(worst);
      return;
    }
    if (exitCode === 2) {
      logger.fatal({ worker: worker.id }, 'a worker refused the config; stopping all workers');
      stop('worker config error', 2);
      return;
    }
    logger.error({ worker: worker.id, code, signal }, 'worker exited; starting another');
    setTimeout(() => {
      if (!stopping) fork();
    }, RESTART_DELAY_MS).unref();
  });
  const stop = (why: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    worst = code;
    logger.info({ why }, 'stopping workers');
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(worst);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
  });
  for (let i = 0; i < n; i++) fork();
  logger.info({ workers: n }, 'passgate primary started; workers share the gRPC and admin ports');
}
