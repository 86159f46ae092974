// A circuit breaker per upstream: after `threshold` consecutive failures the upstream is
// not asked again until `coolDownMs` has passed; then one trial request decides whether
// it closes again. A dead upstream thus costs a pull milliseconds, not a retry storm.

/** The breaker's state as statistics report it. */
export type BreakerState = 'closed' | 'open' | 'half-open';

/** Consecutive-failure circuit breaker. */
export class CircuitBreaker {
  private failures = 0;
  private openedAt = 0;
  private trialInFlight = false;

  constructor(private readonly threshold = 5, private readonly coolDownMs = 30_000, private readonly now = Date.now) {}

  /** Current state. */
  get state(): BreakerState {
    if (this.failures < this.threshold) return 'closed';
    return this.now() - this.openedAt >= this.coolDownMs ? 'half-open' : 'open';
  }

  /** True when a request may go out now (in half-open state, only one trial at a time). */
  allow(): boolean {
    const s = this.state;
    if (s === 'closed') return true;
    if (s === 'open' || this.trialInFlight) return false;
    this.trialInFlight = true;
    return true;
  }

  /** Records a success: the breaker closes. */
  success(): void {
    this.failures = 0;
    this.trialInFlight = false;
  }

  /** Records a failure: counts towards opening, or re-opens after a failed trial. */
  failure(): void {
    this.trialInFlight = false;
    this.failures++;
    if (this.failures >= this.threshold) this.openedAt = this.now();
  }

  /** Opens the breaker now (a failure so slow that one is enough). */
  trip(): void {
    this.trialInFlight = false;
    this.failures = Math.max(this.failures, this.threshold);
    this.openedAt = this.now();
  }

  /** Milliseconds until the next trial is allowed (0 when closed). */
  retryInMs(): number {
    return this.state === 'open' ? this.coolDownMs - (this.now() - this.openedAt) : 0;
  }
}
