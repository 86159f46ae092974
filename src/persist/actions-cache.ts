// The only door to the Actions cache. Restores and lookups on cache service v2 (what
// github.com runs) go through our own reader (entry-download.ts: one call, the archive
// streamed); saves, and restores on v1 (GHES), through @actions/cache. A circuit breaker keeps
// a dead cache service from costing more than a few seconds in all.
//
// Each @actions/cache call runs in a child process of its own (library-call.ts), with its own
// environment (GITHUB_WORKSPACE names the call's staging directory, so that entries carry fixed
// relative paths and restore on any runner) and working directory (a save globs its paths from
// there): nothing global changes in this process, and saves and restores run at once. How a call
// ended is told from what the library returned or threw and from the service's answers to the
// call's requests (library-outcome.ts), not from the library's printed lines, which go to the
// step's log untouched.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CircuitBreaker } from '../shared/index.js';
import { cacheReadable, cacheServiceAvailable, cacheWritable, cacheServiceV2, CacheServiceError, EntryConsumerError, EntryTransportError, lookupEntry, readEntry, type EntryFile } from './entry-download.js';
import { callLibrary, type LibraryCall } from './library-call.js';
import { judgeRestore, judgeSave, type BreakerNote } from './library-outcome.js';
import type { WorkerRequest } from './worker-protocol.js';

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
   * abandoned (through the library: its process is killed) and the breaker opens.
   * Default 10 s: a healthy service answers in well under a second.
   */
  lookupBudgetMs?: number;
  /**
   * How long failing lookups (5xx answers, answers without JSON) are retried, backing off 1 s,
   * 2 s, 4 s (service v2). Default: the lookup budget. The Action's main step keeps it short: a
   * down service then costs it about a second, and post does not save after a failed start.
   */
  retryBudgetMs?: number;
  breaker?: CircuitBreaker;
  /**
   * Restore and look up through @actions/cache even on service v2 (as on v1): what GHES runs,
   * tested against the v2 stand-in. Default: only where the service is not v2.
   */
  throughLibrary?: boolean;
}

/** Bounded access to the Actions cache: saves, restores and lookups all run at once. */
export class ActionsCache {
  readonly breaker: CircuitBreaker;

  constructor(private readonly opts: ActionsCacheOptions = {}) {
    this.breaker = opts.breaker ?? new CircuitBreaker(3, 5 * 60_000);
  }

  /** True when restores stream through our own reader (service v2), not through the library. */
  private get streams(): boolean {
    return !this.opts.throughLibrary && cacheServiceV2();
  }

  /** True when the runner gave this job a cache service. */
  static available(): boolean {
    return cacheServiceAvailable();
  }

  /**
   * One library call in its own child process. With a `workspace`, that directory is the call's
   * GITHUB_WORKSPACE (tar archives from and extracts into it) and its working directory
   * (saveCache globs the paths relative to the working directory, not to GITHUB_WORKSPACE).
   * With a `budgetMs`, the call is killed when it has not ended by then.
   */
  private call(request: WorkerRequest, workspace: string | undefined, budgetMs?: number): Promise<LibraryCall> {
    const dir = workspace === undefined ? undefined : resolve(workspace);
    return callLibrary(request, {
      env: { ...process.env, ...(dir !== undefined ? { GITHUB_WORKSPACE: dir } : {}) },
      ...(dir !== undefined ? { cwd: dir } : {}),
      ...(budgetMs !== undefined ? { budgetMs } : {}),
    });
  }

  /** Tells the breaker how a call went. */
  private note(how: BreakerNote): void {
    if (how === 'success') this.breaker.success();
    else if (how === 'failure') this.breaker.failure();
    else this.breaker.trip();
  }

  /**
   * Looks `key` (then each restore key, as the service matches them) up without downloading:
   * a download-side call, not rate-limited. Bounded by the lookup budget.
   */
  async lookup(path: string, key: string, restoreKeys: string[] = []): Promise<RestoreResult> {
    if (this.streams) return (await this.find(path, key, restoreKeys)).result;
    // A lookup reads no file: it needs no workspace.
    return this.attempt(undefined, path, key, restoreKeys);
  }

  /**
   * Restores entry `key` (or the newest matching a restore key) of `path`, handing each file in
   * it to `onFile` as it arrives (its path inside the entry, e.g. `regcache-pack/sha256-...`).
   * On service v2 the archive streams from the service (`pace` may hold it back); on v1 the
   * library restores it into a directory under `staging` first, and the files are read from there.
   */
  async restoreEntry(path: string, key: string, restoreKeys: string[], onFile: (f: EntryFile) => Promise<void>, o: { staging: string; pace?: () => Promise<void> }): Promise<RestoreResult> {
    if (!this.streams) return this.restoreThroughLibrary(path, key, restoreKeys, onFile, o.staging);
    const { result, url } = await this.find(path, key, restoreKeys);
    if (result.outcome !== 'restored' || url === undefined) return result;
    try {
      await readEntry(url, onFile, { idleTimeoutMs: this.opts.timeoutMs ?? 60_000, ...(o.pace ? { pace: o.pace } : {}) });
      this.breaker.success();
      return result;
    } catch (err) {
      // onFile failed (the local store): not the service's doing, nor the entry's.
      if (err instanceof EntryConsumerError) throw err.cause;
      this.breaker.failure();
      // The transfer failed: the entry may be fine (a later request may try again).
      if (err instanceof EntryTransportError) return { outcome: 'unavailable' };
      return { outcome: 'broken', ...(result.key !== undefined ? { key: result.key } : {}) };
    }
  }

  /**
   * One bounded lookup of our own (service v2): the entry and its signed URL. 5xx answers and
   * answers without JSON are retried, backing off, within the lookup budget; a lookup that
   * needed retries or ran out of time opens the breaker, another failure counts towards it.
   */
  private async find(path: string, key: string, restoreKeys: string[]): Promise<{ result: RestoreResult; url?: string }> {
    // The runner forbids reads (ACTIONS_CACHE_MODE): nothing to find, as with the library.
    if (!cacheReadable()) return { result: { outcome: 'missing' } };
    if (!this.breaker.allow()) return { result: { outcome: 'unavailable' } };
    const start = Date.now();
    const deadline = start + (this.opts.lookupBudgetMs ?? 10_000);
    const retryDeadline = Math.min(deadline, start + (this.opts.retryBudgetMs ?? Infinity));
    for (let attempt = 0; ; attempt++) {
      try {
        const found = await lookupEntry(path, key, restoreKeys, AbortSignal.timeout(Math.max(1, deadline - Date.now())));
        // Answered. After a retried request it still counts towards the breaker.
        if (attempt > 0) this.breaker.failure();
        else this.breaker.success();
        return found ? { result: { outcome: 'restored', key: found.key }, url: found.url } : { result: { outcome: 'missing' } };
      } catch (err) {
        const retryable = err instanceof CacheServiceError && err.retryable;
        const wait = 1000 * 2 ** attempt;
        if (retryable && Date.now() + wait < retryDeadline) {
          await sleep(wait);
          continue;
        }
        if (retryable || attempt > 0 || Date.now() >= deadline) this.breaker.trip();
        else this.breaker.failure();
        return { result: { outcome: 'unavailable' } };
      }
    }
  }

  /** restoreEntry on service v1: the library restores into a staging directory, read from there. */
  private async restoreThroughLibrary(path: string, key: string, restoreKeys: string[], onFile: (f: EntryFile) => Promise<void>, staging: string): Promise<RestoreResult> {
    const workspace = join(staging, `restore-${randomBytes(6).toString('hex')}`);
    await mkdir(workspace, { recursive: true });
    try {
      const r = await this.restore(workspace, path, key, restoreKeys);
      if (r.outcome !== 'restored') return r;
      const dir = join(workspace, path);
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        const file = join(dir, name);
        // Only regular files (never a link out of the entry).
        const st = await lstat(file);
        if (!st.isFile()) continue;
        const body = createReadStream(file);
        try {
          await onFile({ path: `${path}/${name}`, size: st.size, body });
        } finally {
          body.destroy(); // closes the file when onFile left it unread
        }
      }
      return r;
    } finally {
      await rm(workspace, { recursive: true, force: true });
    }
  }

  /**
   * Restores `path` of entry `key` (or the newest matching a restore key) into `workspace`
   * through the library (service v1): a bounded lookup goes first (a dead service costs the
   * budget, not the library's half minute of retries), then the download of exactly the entry
   * found, bounded by the library's download timeouts.
   */
  private async restore(workspace: string, path: string, key: string, restoreKeys: string[] = []): Promise<RestoreResult> {
    const found = await this.attempt(undefined, path, key, restoreKeys);
    if (found.outcome !== 'restored' || !found.key) return found;
    return this.attempt(workspace, path, found.key, []);
  }

  /**
   * One restoreCache call: a lookup without `workspace` (killed without an answer within the
   * lookup budget), else a restore into it. The breaker hears how it went.
   */
  private async attempt(workspace: string | undefined, path: string, key: string, restoreKeys: string[]): Promise<RestoreResult> {
    if (!this.breaker.allow()) return { outcome: 'unavailable' };
    const lookupOnly = workspace === undefined;
    const request: WorkerRequest = { op: 'restore', path, key, restoreKeys, lookupOnly, timeoutMs: this.opts.timeoutMs ?? 60_000 };
    const call = await this.call(request, workspace, lookupOnly ? (this.opts.lookupBudgetMs ?? 10_000) : undefined);
    const judged = judgeRestore(call, SLOW_FAILURE_MS);
    this.note(judged.breaker);
    return { outcome: judged.outcome, ...(judged.key !== undefined ? { key: judged.key } : {}) };
  }

  /** True when entry `key` exists; undefined when the service could not tell. */
  async exists(key: string, path: string): Promise<boolean | undefined> {
    const r = await this.lookup(path, key);
    if (r.outcome === 'unavailable') return undefined;
    return r.outcome === 'restored' && r.key === key;
  }

  /** Saves `path` of `workspace` as entry `key`. */
  async save(workspace: string, path: string, key: string): Promise<SaveResult> {
    // The runner forbids writes (ACTIONS_CACHE_MODE): the library would not ask the service.
    if (!cacheWritable()) return { outcome: 'failed' };
    if (!this.breaker.allow()) return { outcome: 'failed' };
    const judged = judgeSave(await this.call({ op: 'save', path, key }, workspace));
    this.note(judged.breaker);
    if (judged.finding === 'saved') return { outcome: 'saved' };
    if (judged.finding === 'failed') return { outcome: 'failed' };
    if (judged.finding === 'rate-limited') return { outcome: 'refused', rateLimited: true, ...(judged.retryAfterMs !== undefined ? { retryAfterMs: judged.retryAfterMs } : {}) };
    // The key is taken: the entry exists (another job saved it), or another job is uploading
    // it right now. A lookup tells which.
    const exists = await this.exists(key, path);
    if (exists === undefined) return { outcome: 'failed' };
    return { outcome: exists ? 'exists' : 'refused' };
  }
}
