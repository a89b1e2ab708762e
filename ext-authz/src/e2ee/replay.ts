/**
 * Single-use claims for the envelope's `enc` (a fresh ephemeral key per
 * message, so a repeated `enc` is a replayed body).
 *
 * Written against this small interface so the store can change without the
 * processor knowing: today it runs over the FDS store's one-round-trip
 * `evaluate` (a counter with threshold 2 on the subject, plus a block check);
 * once the `tokens` branch's claims land in the FDS script
 * (`FdsStore.evaluate(check, ops, claims)` → `replayed`), `FdsReplayClaims`
 * becomes one call with one `Claim` and no counter.
 */
import type { FdsStore } from '../fds/store/store.js';

export type ClaimResult = 'fresh' | 'replayed' | 'unavailable';

export interface ReplayClaims {
  /** Claims `key` until `expiresAt` (epoch ms); one store round trip; never rejects. */
  claim(key: string, expiresAt: number): Promise<ClaimResult>;
}

const REPLAY_RULE = 'e2ee-replay';

/** Over the FDS store (memory or Redis): ONE `evaluate` call per claim. */
export class FdsReplayClaims implements ReplayClaims {
  constructor(
    private readonly store: FdsStore,
    private readonly timeoutMs: number,
  ) {}

  async claim(key: string, expiresAt: number): Promise<ClaimResult> {
    const ttl = Math.max(1000, expiresAt - Date.now());
    const subject = `e2ee:${key}`;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'unavailable'>((resolve) => {
      timer = setTimeout(resolve, this.timeoutMs, 'unavailable');
    });
    const work = this.store
      .evaluate(
        [{ kind: 'client', subject }],
        [{ rule: REPLAY_RULE, kind: 'client', subject, increment: 1, windowMs: ttl, threshold: 2, ttls: [ttl], memoryMs: ttl, reason: 'e2ee_replayed' }],
      )
      .then((r): ClaimResult => (r.blocked !== undefined || r.created.length > 0 ? 'replayed' : 'fresh'))
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
