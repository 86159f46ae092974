// The only door to @actions/cache. Calls are serialized (per process) because the library
// reads the workspace from the process environment: each call makes a staging directory the
// workspace, so that entries carry fixed relative paths and restore on any runner. A
// circuit breaker keeps a dead cache service from costing more than a few seconds in all.
//
// The library never says why a call failed: a restore that failed and a restore that found
// nothing both return undefined, and a save refused for a rate limit, for an existing key or
// because the service is unreachable all return -1. What tells them apart is what it prints:
// "::warning::Failed to restore: ..." (or ::error::) for a failed restore or lookup, "Failed
// to save: ..." as a warning or error for a failed upload, "Attempt N of 5 failed" while it
// retries 5xx answers, and "You've hit a rate limit, your rate limit will reset in N seconds"
// for a 429. Those lines are watched (and still printed).
import * as cache from '@actions/cache';
import { resolve } from 'node:path';
import { CircuitBreaker } from '../proxy/index.js';

/** How a save ended. `refused`: the service would not reserve the key (rate limit, or another job is uploading it). */
export type SaveOutcome = 'saved' | 'exists' | 'refused' | 'failed';

/** A save's outcome with what the service said about a rate limit. */
export interface SaveResult {
  outcome: SaveOutcome;
  /** When refused for a rate limit: how long until the service accepts creations again. */
  retryAfterMs?: number;
  /** True when the refusal was a rate limit (429). */
  rateLimited?: boolean;
}

/** How a lookup or a restore ended. */
export type RestoreOutcome =
  /** The entry was restored into the workspace. */
  | 'restored'
  /** The service answered that there is no such entry (never saved, or evicted). */
  | 'missing'
  /** The entry exists, but downloading or extracting it failed. */
  | 'broken'
  /** The service failed, did not answer within the budget, or the breaker is open. */
  | 'unavailable';

/** What {@link ActionsCache.restore} returns. */
export interface RestoreResult {
  outcome: RestoreOutcome;
  /** The key restored (with restore keys: the one that matched). */
  key?: string;
}

/**
 * A failed call that took this long (the library retried, or waited on a hung connection) opens
 * the breaker at once. A miss the service answered is an answer however slow: a busy machine or
 * a loaded service takes seconds, and taking that for a failure once cost a job every save after
 * it (a two-image job saved one pack, and no index). The lookup budget bounds a slow answer.
 */
const SLOW_FAILURE_MS = 5_000;

/** Bounds of the calls, for tests and the fault suite. */
export interface ActionsCacheOptions {
  /** Download timeouts of a restore. */
  timeoutMs?: number;
  /**
   * Longest wait for a lookup (a download-side call without transfer). Beyond it the lookup is
   * abandoned (the library goes on retrying in the background) and the breaker opens.
   * Default 10 s: a healthy service answers in well under a second.
   */
  lookupBudgetMs?: number;
  breaker?: CircuitBreaker;
}

/** What the library printed during one call. */
interface Observed {
  failed: boolean;
  /** The library retried a request (5xx answers or no JSON: the service is failing). */
  retried: boolean;
  retryAfterMs?: number;
  rateLimited: boolean;
}

// A refused reservation ("Failed to save: Unable to reserve cache with key ...") is no failure:
// the client logs it as info, or, bundled (esbuild renames the error class, so the client's
// name comparison misses it), as a warning.
const FAILURE_LINE = /^::(?:warning|error)(?: [^:]*)?::Failed to (?:restore|save): (?!Unable to reserve cache)/m;
const RATE_LIMIT_LINE = /rate limit will reset in (\d+) seconds/;
const RETRY_LINE = /^Attempt \d+ of \d+ failed with error/m;
const RATE_LIMITED_LINE = /^::(?:warning|error)(?: [^:]*)?::You've hit a rate limit/m;

/** The call whose library output is being watched (one at a time: calls are serialized). */
let observer: Observed | undefined;
let hooked = false;

/** Watches stdout for the library's failure lines (installed once; passes everything through). */
function hookStdout(): void {
  if (hooked) return;
  hooked = true;
  const write = process.stdout.write.bind(process.stdout) as (...a: unknown[]) => boolean;
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (observer && (typeof chunk === 'string' || Buffer.isBuffer(chunk))) {
      const text = String(chunk);
      if (FAILURE_LINE.test(text)) observer.failed = true;
      if (RETRY_LINE.test(text)) observer.retried = true;
      if (RATE_LIMITED_LINE.test(text)) observer.rateLimited = true;
      const m = RATE_LIMIT_LINE.exec(text);
      if (m) observer.retryAfterMs = Number(m[1]) * 1000;
    }
    return write(chunk, ...rest);
  }) as typeof process.stdout.write;
}

/** Serialized, bounded access to the Actions cache. */
export class ActionsCache {
  /** One call at a time in the process (GITHUB_WORKSPACE and the working directory are the process's). */
  private static queue: Promise<unknown> = Promise.resolve();
  readonly breaker: CircuitBreaker;
  /** Library calls still running after their budget ran out (the process should not wait for them). */
  private static abandonedCalls = 0;

  constructor(private readonly opts: ActionsCacheOptions = {}) {
    this.breaker = opts.breaker ?? new CircuitBreaker(3, 5 * 60_000);
  }

  /** True when the runner gave this job a cache service. */
  static available(): boolean {
    return cache.isFeatureAvailable();
  }

  /** True while a call abandoned after its budget still runs: exit instead of waiting for it. */
  static get abandoned(): boolean {
    return ActionsCache.abandonedCalls > 0;
  }

  /**
   * Runs `fn` alone, watching what the library prints. With a `workspace`, it is GITHUB_WORKSPACE
   * (where tar archives from and extracts to) during the call and, with `chdir`, the working
   * directory too: saveCache globs the path patterns relative to the working directory, not
   * to GITHUB_WORKSPACE (a save from any other directory finds nothing and uploads nothing).
   * Restores do not glob, so the server, whose other work may use relative paths, never
   * changes directory. With a `budgetMs`, the call is abandoned after that long (`timedOut`).
   */
  private exclusive<T>(
    workspace: string | undefined,
    fn: () => Promise<T>,
    o: { chdir?: boolean; budgetMs?: number } = {},
  ): Promise<{ value?: T; observed: Observed; ms: number; timedOut: boolean }> {
    const run = async () => {
      hookStdout();
      const saved = process.env.GITHUB_WORKSPACE;
      const cwd = process.cwd();
      const observed: Observed = { failed: false, retried: false, rateLimited: false };
      const started = Date.now();
      if (workspace !== undefined) {
        const dir = resolve(workspace);
        process.env.GITHUB_WORKSPACE = dir;
        if (o.chdir) process.chdir(dir);
      }
      observer = observed;
      let timer: NodeJS.Timeout | undefined;
      try {
        const call = fn();
        if (o.budgetMs === undefined) return { value: await call, observed, ms: Date.now() - started, timedOut: false };
        const expired = Symbol('expired');
        const budget = new Promise<typeof expired>((r) => {
          timer = setTimeout(() => r(expired), o.budgetMs);
        });
        const first = await Promise.race([call, budget]);
        if (first === expired) {
          ActionsCache.abandonedCalls++;
          void call.then(
            () => ActionsCache.abandonedCalls--,
            () => ActionsCache.abandonedCalls--,
          );
          return { observed, ms: Date.now() - started, timedOut: true };
        }
        return { value: first as T, observed, ms: Date.now() - started, timedOut: false };
      } finally {
        clearTimeout(timer);
        if (observer === observed) observer = undefined;
        if (workspace !== undefined) {
          if (o.chdir) process.chdir(cwd);
          if (saved === undefined) delete process.env.GITHUB_WORKSPACE;
          else process.env.GITHUB_WORKSPACE = saved;
        }
      }
    };
    const p = ActionsCache.queue.then(run, run);
    ActionsCache.queue = p.catch(() => {});
    return p;
  }

  private download(lookupOnly: boolean): cache.DownloadOptions {
    const t = this.opts.timeoutMs ?? 60_000;
    return { lookupOnly, timeoutInMs: t, segmentTimeoutInMs: t };
  }

  /**
   * Looks `key` (then each restore key, as the service matches them) up without downloading:
   * a download-side call, not rate-limited. Bounded by the lookup budget.
   */
  async lookup(path: string, key: string, restoreKeys: string[] = []): Promise<RestoreResult> {
    if (!this.breaker.allow()) return { outcome: 'unavailable' };
    try {
      // A lookup reads no file: it needs no workspace (and so can run on after being abandoned).
      const r = await this.exclusive(undefined, () => cache.restoreCache([path], key, restoreKeys, this.download(true)), {
        budgetMs: this.opts.lookupBudgetMs ?? 10_000,
      });
      if (r.timedOut) {
        this.breaker.trip();
        return { outcome: 'unavailable' };
      }
      if (r.value !== undefined) {
        this.breaker.success();
        return { outcome: 'restored', key: r.value };
      }
      if (r.observed.failed) {
        if (r.observed.retried || r.ms > SLOW_FAILURE_MS) this.breaker.trip();
        else this.breaker.failure();
        return { outcome: 'unavailable' };
      }
      // Answered: not there. After a retried request it still counts towards the breaker.
      if (r.observed.retried) this.breaker.failure();
      else this.breaker.success();
      return { outcome: 'missing' };
    } catch {
      this.breaker.failure();
      return { outcome: 'unavailable' };
    }
  }

  /**
   * Restores `path` of entry `key` (or the newest matching a restore key) into `workspace`:
   * a bounded lookup first (a dead service costs the budget, not the library's half minute of
   * retries), then the download of exactly the entry found.
   */
  async restore(workspace: string, path: string, key: string, restoreKeys: string[] = []): Promise<RestoreResult> {
    const found = await this.lookup(path, key, restoreKeys);
    if (found.outcome !== 'restored' || !found.key) return found;
    if (!this.breaker.allow()) return { outcome: 'unavailable' };
    try {
      const r = await this.exclusive(workspace, () => cache.restoreCache([path], found.key!, [], this.download(false)));
      if (r.value === found.key) {
        this.breaker.success();
        return { outcome: 'restored', key: found.key };
      }
      // The entry was there a moment ago: its download or extraction failed.
      if (r.observed.retried) this.breaker.trip();
      else this.breaker.failure();
      return { outcome: 'broken', key: found.key };
    } catch {
      this.breaker.failure();
      return { outcome: 'broken', key: found.key };
    }
  }

  /** True when entry `key` exists; undefined when the service could not tell. */
  async exists(key: string, path: string): Promise<boolean | undefined> {
    const r = await this.lookup(path, key);
    if (r.outcome === 'unavailable') return undefined;
    return r.outcome === 'restored' && r.key === key;
  }

  /** Saves `path` of `workspace` as entry `key`. */
  async save(workspace: string, path: string, key: string): Promise<SaveResult> {
    if (!this.breaker.allow()) return { outcome: 'failed' };
    const r = await this.exclusive(
      workspace,
      async () => {
        try {
          return await cache.saveCache([path], key);
        } catch {
          return -2;
        }
      },
      { chdir: true },
    );
    const id = r.value ?? -2;
    if (id >= 0) {
      this.breaker.success();
      return { outcome: 'saved' };
    }
    if (id === -2 || r.observed.failed) {
      // An upload or finalize that failed, or an exception: the service is failing.
      if (r.observed.retried) this.breaker.trip();
      else this.breaker.failure();
      return { outcome: 'failed' };
    }
    if (r.observed.rateLimited) {
      this.breaker.success();
      return { outcome: 'refused', rateLimited: true, ...(r.observed.retryAfterMs !== undefined ? { retryAfterMs: r.observed.retryAfterMs } : {}) };
    }
    if (r.observed.retried) {
      // The reservation was retried for half a minute: 5xx answers.
      this.breaker.trip();
      return { outcome: 'failed' };
    }
    // -1 otherwise: the reservation was refused: the entry exists (another job saved it), is
    // being uploaded by another job, or the service is unreachable. A lookup tells which.
    const exists = await this.exists(key, path);
    if (exists === undefined) return { outcome: 'failed' };
    return { outcome: exists ? 'exists' : 'refused' };
  }
}
