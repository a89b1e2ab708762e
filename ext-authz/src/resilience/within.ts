/**
 * Waits for a promise, but no longer than `ms`. Resolves to TIMED_OUT when
 * time ran out first; the late promise's rejection is kept handled. One
 * timer, cleared as soon as either side settles.
 */
export const TIMED_OUT: unique symbol = Symbol('timed out');
const MAX_TIMER_MS = 2 ** 31 - 1;

export function within<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  if (ms <= 0) {
    p.catch(() => undefined);
    return Promise.resolve(TIMED_OUT);
  }
  // One promise and one timer, no race of two (this runs once per FDS call on every Check).
  return new Promise<T | typeof TIMED_OUT>((resolve, reject) => {
    // Past 2^31-1 ms Node fires a timer after 1 ms; such a wait is "no limit" in practice.
    const timer = setTimeout(resolve, Math.min(ms, MAX_TIMER_MS), TIMED_OUT);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
