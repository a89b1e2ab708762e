/**
 * A small consecutive-failure circuit breaker: after `failureThreshold`
 * failures in a row the circuit opens and calls fail fast for `openMs`; then
 * one trial call is let through (half-open): success closes, failure reopens.
 * Keeps a struggling dependency (the auth service, Redis) from being hammered
 * while it recovers, and answers its callers at once meanwhile.
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

export class CircuitBreaker {
  private failures = 0;
  private openedAt = 0;
  private trialInFlight = false;
  private stateValue: BreakerState = 'closed';

  constructor(
    private readonly failureThreshold: number,
    private readonly openMs: number,
    private readonly onChange?: (state: BreakerState) => void,
  ) {}

  get state(): BreakerState {
    return this.stateValue;
  }

  /** Whether a call may go out now. In half-open, only one trial at a time. */
  allow(now = Date.now()): boolean {
    if (this.stateValue === 'closed') return true;
    if (this.stateValue === 'open') {
      if (now - this.openedAt < this.openMs) return false;
      this.set('half-open');
    }
    if (this.trialInFlight) return false;
    this.trialInFlight = true;
    return true;
  }

  success(): void {
    this.failures = 0;
    this.trialInFlight = false;
    if (this.stateValue !== 'closed') this.set('closed');
  }

  failure(now = Date.now()): void {
    this.trialInFlight = false;
    this.failures++;
    if (this.stateValue === 'half-open' || this.failures >= this.failureThreshold) {
      this.openedAt = now;
      if (this.stateValue !== 'open') this.set('open');
    }
  }

  private set(state: BreakerState): void {
    this.stateValue = state;
    this.onChange?.(state);
  }
}
