// The only door to @actions/cache. Calls are serialized because the library reads the
// workspace from the process environment: each call makes a staging directory the
// workspace, so that entries carry fixed relative paths and restore on any runner. A
// circuit breaker keeps a dead cache service from costing more than a few seconds in all.
import * as cache from '@actions/cache';
import { CircuitBreaker } from '../proxy/index.js';

/** How a save ended. */
export type SaveOutcome = 'saved' | 'exists' | 'refused' | 'failed';

/**
 * @actions/cache swallows a failed restore (undefined and a warning), after retrying 5xx
 * answers for about half a minute: a miss that took this long is taken as a service failure.
 */
const SLOW_MISS_MS = 5_000;

/** Bounds of the calls, for tests and the fault suite. */
export interface ActionsCacheOptions {
  timeoutMs?: number;
  breaker?: CircuitBreaker;
}

/** Serialized, bounded access to the Actions cache. */
export class ActionsCache {
  private queue: Promise<unknown> = Promise.resolve();
  readonly breaker: CircuitBreaker;

  constructor(private readonly opts: ActionsCacheOptions = {}) {
    this.breaker = opts.breaker ?? new CircuitBreaker(3, 5 * 60_000);
  }

  /** True when the runner gave this job a cache service. */
  static available(): boolean {
    return cache.isFeatureAvailable();
  }

  private exclusive<T>(workspace: string, fn: () => Promise<T>): Promise<T> {
    const run = async () => {
      const saved = process.env.GITHUB_WORKSPACE;
      process.env.GITHUB_WORKSPACE = workspace;
      try {
        return await fn();
      } finally {
        if (saved === undefined) delete process.env.GITHUB_WORKSPACE;
        else process.env.GITHUB_WORKSPACE = saved;
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }

  private download(lookupOnly: boolean): cache.DownloadOptions {
    const t = this.opts.timeoutMs ?? 60_000;
    return { lookupOnly, timeoutInMs: t, segmentTimeoutInMs: t };
  }

  /**
   * Restores `path` of entry `key` (or the newest matching a restore key) into `workspace`.
   * `expectHit` (a pack the index names) makes a miss count as a failure too.
   */
  async restore(workspace: string, path: string, key: string, restoreKeys: string[] = [], expectHit = false): Promise<string | undefined> {
    if (!this.breaker.allow()) return undefined;
    return this.exclusive(workspace, async () => {
      const started = Date.now();
      try {
        const hit = await cache.restoreCache([path], key, restoreKeys, this.download(false));
        this.judge(hit !== undefined, started, expectHit);
        return hit;
      } catch (err) {
        this.breaker.failure();
        throw err;
      }
    });
  }

  /** True when entry `key` exists (a download-side call: not rate-limited). */
  async exists(key: string, path: string): Promise<boolean> {
    if (!this.breaker.allow()) return false;
    return this.exclusive(process.cwd(), async () => {
      const started = Date.now();
      try {
        const hit = await cache.restoreCache([path], key, [], this.download(true));
        this.judge(hit !== undefined, started, false);
        return hit === key;
      } catch {
        this.breaker.failure();
        return false;
      }
    });
  }

  /** Feeds the breaker: a slow miss trips it, an expected miss counts as a failure. */
  private judge(hit: boolean, started: number, expectHit: boolean): void {
    if (hit) this.breaker.success();
    else if (Date.now() - started > SLOW_MISS_MS) this.breaker.trip();
    else if (expectHit) this.breaker.failure();
    else this.breaker.success();
  }

  /** Saves `path` of `workspace` as entry `key`. */
  async save(workspace: string, path: string, key: string): Promise<SaveOutcome> {
    if (!this.breaker.allow()) return 'failed';
    const id = await this.exclusive(workspace, async () => {
      try {
        return await cache.saveCache([path], key);
      } catch {
        return -2;
      }
    });
    if (id >= 0) {
      this.breaker.success();
      return 'saved';
    }
    if (id === -2) {
      this.breaker.failure();
      return 'failed';
    }
    // -1: the reservation was refused: the entry exists (another job saved it) or we were
    // rate-limited. A lookup tells which.
    return (await this.exists(key, path)) ? 'exists' : 'refused';
  }
}
