/**
 * Single-use claims for the envelope's `enc` (a fresh ephemeral key per
 * message, so a repeated `enc` is a replayed body).
 *
 * Written against this small interface so the processor does not know the
 * store: it runs as one single-use claim (set-if-absent with a TTL by the
 * store's clock) in the FDS store's one-round-trip `evaluate`, the same
 * mechanism the proof stage uses for jti.
 */
import type { FdsStore } from '../fds/store/store.js';

export type ClaimResult = 'fresh' | 'replayed' | 'unavailable';

export interface ReplayClaims {
  /** Claims `key` until `expiresAt` (epoch ms); one store round trip; never rejects. */
  claim(key: string, expiresAt: number): Promise<ClaimResult>;
}

/** Over the FDS store (memory or Redis): ONE `evaluate` call per claim. */
export class FdsReplayClaims implements ReplayClaims {
  constructor(
    private readonly store: FdsStore,
    private readonly timeoutMs: number,
  ) {}

  async claim(key: string, expiresAt: number): Promise<ClaimResult> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'unavailable'>((resolve) => {
      timer = setTimeout(resolve, this.timeoutMs, 'unavailable');
    });
    const work = this.store
      .evaluate([], [], [{ key: `e2ee:${key}`, expiresAt, minTtlMs: 1000 }])
      .then((r): ClaimResult => (r.replayed ? 'replayed' : 'fresh'))
      .catch((): ClaimResult => 'unavailable');
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * One process only (no FDS configured): a map bounded by bytes. When full it
 * refuses new claims ('unavailable', so 503) instead of evicting one, since an
 * evicted claim could be replayed.
 */
export class MemoryReplayClaims implements ReplayClaims {
  private readonly seen = new Map<string, number>();
  private bytes = 0;
  private lastSweep = 0;

  constructor(private readonly maxBytes: number) {}

  claim(key: string, expiresAt: number): Promise<ClaimResult> {
    const now = Date.now();
    if (now - this.lastSweep > 1000) this.sweep(now);
    const until = this.seen.get(key);
    if (until !== undefined && until > now) return Promise.resolve('replayed');
    const cost = key.length * 2 + 64;
    if (until === undefined && this.bytes + cost > this.maxBytes) {
      this.sweep(now);
      if (this.bytes + cost > this.maxBytes) return Promise.resolve('unavailable');
    }
    if (until === undefined) this.bytes += cost;
    this.seen.set(key, expiresAt);
    return Promise.resolve('fresh');
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [k, until] of this.seen) {
      if (until <= now) {
        this.seen.delete(k);
        this.bytes -= k.length * 2 + 64;
      }
    }
  }

  get size(): number {
    return this.seen.size;
  }
}
