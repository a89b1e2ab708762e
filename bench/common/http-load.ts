/**
 * The measuring half of the HTTP load generators (bench:e2e, bench:e2ee): one timed request at a
 * time per caller on a keep-alive agent, latencies and statuses kept, errors counted, and a reset
 * after the warm-up so connection set-up is not in the figures.
 */
import type http from 'node:http';
import type https from 'node:https';
import { SampleBuffer } from './stats.js';

export class HttpLoad {
  latencies = new SampleBuffer();
  readonly statuses: Record<string, number> = {};
  errors = 0;

  constructor(
    private readonly lib: typeof http | typeof https,
    private readonly agent: http.Agent,
  ) {}

  /** One request; resolves when its answer has been read (or it failed, which counts as an error). */
  once(options: http.RequestOptions, body?: Buffer): Promise<void> {
    return new Promise((resolve) => {
      const t0 = process.hrtime.bigint();
      const req = this.lib.request({ ...options, agent: this.agent }, (res) => {
        res.resume();
        res.on('end', () => {
          this.latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
          this.statuses[String(res.statusCode)] = (this.statuses[String(res.statusCode)] ?? 0) + 1;
          resolve();
        });
      });
      req.on('error', () => {
        this.errors++;
        resolve();
      });
      req.end(body);
    });
  }

  /** Forget what the warm-up measured. */
  reset(): void {
    this.latencies = new SampleBuffer();
    for (const k of Object.keys(this.statuses)) delete this.statuses[k];
    this.errors = 0;
  }
}
