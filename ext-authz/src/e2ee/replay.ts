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

/**
 * Over an FDS store: the engine's (memory or Redis), or without FDS a memory
 * store of this process (the same bounded claim map, refusing when full).
 * ONE `evaluate` call per claim.
 */
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
