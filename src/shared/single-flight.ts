// Single-flight: concurrent callers asking for the same key share one execution; the first
// starts it, latecomers await the same promise. The key is free again once it settles.

/** Runs at most one `fn` per key at a time. */
export class SingleFlight<T> {
  private readonly inflight = new Map<string, Promise<T>>();

  /** The in-flight promise for `key`, or a new one from `fn`; `joined` tells which. */
  run(key: string, fn: () => Promise<T>): { promise: Promise<T>; joined: boolean } {
    const existing = this.inflight.get(key);
    if (existing) return { promise: existing, joined: true };
    const promise = fn().finally(() => {
      if (this.inflight.get(key) === promise) this.inflight.delete(key);
    });
    this.inflight.set(key, promise);
    return { promise, joined: false };
  }

  /** True while `key` is in flight. */
  has(key: string): boolean {
    return this.inflight.has(key);
  }
}
