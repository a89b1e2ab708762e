/**
 * Prometheus metrics. One registry per service instance (tests run several
 * in one process). Stages add their own metrics through `registry`.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics, Gauge } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly checks = new Counter({
    name: 'passgate_checks_total',
    help: 'Checks answered, by gateway, route, decision and reason',
    labelNames: ['gateway', 'route', 'decision', 'reason'] as const,
    registers: [this.registry],
  });
  readonly checkDuration = new Histogram({
    name: 'passgate_check_duration_seconds',
    help: 'Time from receiving a Check to sending its answer',
    labelNames: ['gateway'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5],
    registers: [this.registry],
  });
  readonly configReloads = new Counter({
    name: 'passgate_config_reloads_total',
    help: 'Config reload attempts, by result (success, rejected)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly configInfo = new Gauge({
    name: 'passgate_config_last_reload_timestamp_seconds',
    help: 'When the serving config was loaded',
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({
    name: 'passgate_checks_in_flight',
    help: 'Checks being decided right now',
    registers: [this.registry],
  });
  readonly shadowChecks = new Counter({
    name: 'passgate_shadow_checks_total',
    help: 'Checks on routes with shadow (dry-run) routes or stages, by what they would have answered had nothing been shadowed',
    labelNames: ['gateway', 'route', 'decision', 'reason'] as const,
    registers: [this.registry],
  });
  readonly stageFailures = new Counter({
    name: 'passgate_stage_failures_total',
    help: 'Stages that could not decide (error, timeout), by stage and the failure mode applied',
    labelNames: ['stage', 'mode'] as const,
    registers: [this.registry],
  });

  constructor(withDefaults = true) {
    if (withDefaults) collectDefaultMetrics({ register: this.registry, prefix: 'passgate_' });
  }
}
