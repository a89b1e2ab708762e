/**
 * Latency statistics for benchmarks: exact percentiles over recorded samples
 * (nearest-rank on a sorted copy), so small tails are not smoothed away by
 * histogram buckets.
 */

export interface LatencySummary {
  readonly count: number;
  /** All values in milliseconds. */
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

export const EMPTY_SUMMARY: LatencySummary = Object.freeze({ count: 0, mean: NaN, p50: NaN, p90: NaN, p99: NaN, p999: NaN, max: NaN });

/** Nearest-rank percentile of an ascending array; q in [0, 1]. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** Summarizes the first `count` samples (defaults to all); does not modify `samples`. */
export function summarize(samples: Float64Array | readonly number[], count = samples.length): LatencySummary {
  if (count === 0) return EMPTY_SUMMARY;
  const sorted = Float64Array.from(samples instanceof Float64Array ? samples.subarray(0, count) : samples.slice(0, count));
  sorted.sort();
  let sum = 0;
  for (let i = 0; i < sorted.length; i++) sum += sorted[i]!;
  return {
    count,
    mean: sum / count,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    p999: percentile(sorted, 0.999),
    max: sorted[sorted.length - 1]!,
  };
}

/** A growable Float64Array for the hot loop of a load generator: no per-sample allocation. */
export class SampleBuffer {
  private data: Float64Array;
  length = 0;

  constructor(initialCapacity = 65_536) {
    this.data = new Float64Array(initialCapacity);
  }

  push(value: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
  }

  summary(): LatencySummary {
    return summarize(this.data, this.length);
  }
}

/** Formats milliseconds for a table: 3 significant digits, '-' when absent. */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  if (ms >= 100) return ms.toFixed(0);
  if (ms >= 10) return ms.toFixed(1);
  return ms.toFixed(2);
}

/** A GitHub-flavoured Markdown table. */
export function markdownTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join('\n');
}
