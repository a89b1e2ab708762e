/** Messages between run.ts and the load-generator process (loadgen.ts). */
import type { LatencySummary } from '../common/stats.js';

export const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

export interface RunCommand {
  readonly id: number;
  readonly target: string;
  readonly mode: 'open' | 'closed';
  readonly rate?: number;
  readonly concurrency?: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly deadlineMs: number;
  /** JSON: { bodies: base64[], sequence: index[] } (see run.ts). */
  readonly requestsFile: string;
}

export interface RunResult {
  readonly id: number;
  readonly error?: string;
  readonly mode: 'open' | 'closed';
  readonly target: string;
  readonly rate?: number;
  readonly concurrency?: number;
  readonly durationMs: number;
  /** Calls whose result counts (scheduled/started inside the measurement window). */
  readonly measured: number;
  readonly errors: Record<string, number>;
  /** One message per error code, e.g. why calls ended INTERNAL. */
  readonly errorSamples?: Record<string, string>;
  readonly achievedRps: number;
  readonly latency: LatencySummary;
  /** open mode: how late the generator actually sent vs. the timetable. */
  readonly sendLag?: LatencySummary;
  /** open mode: latency from the actual send (excludes generator lag; not coordinated-omission safe). */
  readonly latencyFromSend?: LatencySummary;
}

