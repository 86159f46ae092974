// The only door to the Actions cache. Restores and lookups on cache service v2 (what
// github.com runs) go through our own reader (entry-download.ts: one call, the archive
// streamed); saves, and restores on v1 (GHES), through @actions/cache. A circuit breaker keeps
// a dead cache service from costing more than a few seconds in all.
//
// The library reads the workspace (where tar extracts to and archives from) from
// process.env.GITHUB_WORKSPACE: each library call runs in an async context that names its own
// staging directory, and process.env answers GITHUB_WORKSPACE from that context (a view
// installed once), so that entries carry fixed relative paths, restore on any runner, and
// several restores run at once, each into its own directory. Saves also change the working
// directory (the library globs relative to it) and so run one at a time.
//
// The library never says why a call failed: a restore that failed and a restore that found
// nothing both return undefined, and a save refused for a rate limit, for an existing key or
// because the service is unreachable all return -1. What tells them apart is what it prints
// (from within the call's async context, so each line is attributed to its own call):
// "::warning::Failed to restore: ..." (or ::error::) for a failed restore or lookup, "Failed
// to save: ..." as a warning or error for a failed upload, "Attempt N of 5 failed" while it
// retries 5xx answers, and "You've hit a rate limit, your rate limit will reset in N seconds"
// for a 429. Those lines are watched (and still printed).
import type * as Cache from '@actions/cache';
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CircuitBreaker } from '../shared/index.js';
import { cacheReadable, cacheServiceAvailable, cacheServiceV2, CacheServiceError, EntryConsumerError, EntryTransportError, lookupEntry, readEntry, type EntryFile } from './entry-download.js';

/** The library, loaded on first use: a server that only restores on service v2 never needs it (it costs ~35 ms of start). */
const library = (): Promise<typeof Cache> => import('@actions/cache');

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

/** What the library printed during one call. */
interface Observed {
  failed: boolean;
  /** The library retried a request (5xx answers or no JSON: the service is failing). */
  retried: boolean;
  retryAfterMs?: number;
  rateLimited: boolean;
}

/** One library call: what it printed, and its workspace. */
interface Call {
  observed: Observed;
  workspace?: string;
}

// A refused reservation ("Failed to save: Unable to reserve cache with key ...") is no failure:
// the client logs it as info, or, bundled (esbuild renames the error class, so the client's
// name comparison misses it), as a warning.
const FAILURE_LINE = /^::(?:warning|error)(?: [^:]*)?::Failed to (?:restore|save): (?!Unable to reserve cache)/m;
const RATE_LIMIT_LINE = /rate limit will reset in (\d+) seconds/;
const RETRY_LINE = /^Attempt \d+ of \d+ failed with error/m;
const RATE_LIMITED_LINE = /^::(?:warning|error)(?: [^:]*)?::You've hit a rate limit/m;

/** The library call running in the current async context. */
const current = new AsyncLocalStorage<Call>();
let hooked = false;

/**
 * Installed once: stdout lines are attributed to the call that printed them (and passed
 * through), and process.env answers GITHUB_WORKSPACE with the current call's workspace.
 */
function hook(): void {
  if (hooked) return;
  hooked = true;
  const write = process.stdout.write.bind(process.stdout) as (...a: unknown[]) => boolean;
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
    const observer = current.getStore()?.observed;
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
  const env = process.env;
  process.env = new Proxy(env, {
    get: (target, name) => (name === 'GITHUB_WORKSPACE' && current.getStore()?.workspace) || Reflect.get(target, name),
    // Without the proxy as receiver: process.env takes only plain assignments.
    set: (target, name, value) => Reflect.set(target, name, value),
  });
}

/** Bounded access to the Actions cache: restores and lookups run at once, saves one at a time. */
export class ActionsCache {
  /** Saves one at a time in the process (they change the working directory). */
  private static saves: Promise<unknown> = Promise.resolve();
  readonly breaker: CircuitBreaker;
  /** Library calls still running after their budget ran out (the process should not wait for them). */
  private static abandonedCalls = 0;

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

  /** True while a call abandoned after its budget still runs: exit instead of waiting for it. */
  static get abandoned(): boolean {
    return ActionsCache.abandonedCalls > 0;
  }

  /**
   * Runs `fn` in its own context, watching what the library prints. With a `workspace`, that is
   * GITHUB_WORKSPACE for the call; with `chdir` the working directory too, and the call then
   * waits for the saves before it: saveCache globs the path patterns relative to the working
   * directory, not to GITHUB_WORKSPACE (a save from any other directory finds nothing and
   * uploads nothing). Restores do not glob, so the server, whose other work may use relative
   * paths, never changes directory. With a `budgetMs`, the call is abandoned (`timedOut`) when
   * the service has not answered its lookup with an entry by then; an abandoned call's
   * workspace is removed once the library is done with it.
   */
  private call<T>(
    workspace: string | undefined,
    fn: () => Promise<T>,
    o: { chdir?: boolean; budgetMs?: number } = {},
  ): Promise<{ value?: T; observed: Observed; ms: number; timedOut: boolean }> {
    const run = async () => {
      hook();
      const observed: Observed = { failed: false, retried: false, rateLimited: false };
      const dir = workspace === undefined ? undefined : resolve(workspace);
      const cwd = process.cwd();
      const started = Date.now();
      if (dir !== undefined && o.chdir) process.chdir(dir);
      let timer: NodeJS.Timeout | undefined;
      try {
        const call = current.run({ observed, ...(dir !== undefined ? { workspace: dir } : {}) }, fn);
        if (o.budgetMs === undefined) return { value: await call, observed, ms: Date.now() - started, timedOut: false };
        const expired = Symbol('expired');
        const budget = new Promise<T | typeof expired>((r) => {
          timer = setTimeout(() => r(expired), o.budgetMs);
        });
        const first = await Promise.race([call, budget]);
        if (first === expired) {
          ActionsCache.abandonedCalls++;
          void call
            .catch(() => {})
            .then(async () => {
              if (dir !== undefined) await rm(dir, { recursive: true, force: true }).catch(() => {});
              ActionsCache.abandonedCalls--;
            });
          return { observed, ms: Date.now() - started, timedOut: true };
        }
        return { value: first as T, observed, ms: Date.now() - started, timedOut: false };
      } finally {
        clearTimeout(timer);
        if (dir !== undefined && o.chdir) process.chdir(cwd);
      }
    };
    if (!o.chdir) return run();
    const p = ActionsCache.saves.then(run, run);
    ActionsCache.saves = p.catch(() => {});
    return p;
  }

  private download(lookupOnly: boolean): Cache.DownloadOptions {
    const t = this.opts.timeoutMs ?? 60_000;
    return { lookupOnly, timeoutInMs: t, segmentTimeoutInMs: t };
  }

  /**
   * Looks `key` (then each restore key, as the service matches them) up without downloading:
   * a download-side call, not rate-limited. Bounded by the lookup budget.
   */
  async lookup(path: string, key: string, restoreKeys: string[] = []): Promise<RestoreResult> {
    if (this.streams) return (await this.find(path, key, restoreKeys)).result;
    // A lookup reads no file: it needs no workspace (and so can run on after being abandoned).
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
   * One restoreCache call: a lookup without `workspace` (abandoned without an answer within the
   * lookup budget), else a restore into it. The breaker hears how it went.
   */
  private async attempt(workspace: string | undefined, path: string, key: string, restoreKeys: string[]): Promise<RestoreResult> {
    if (!this.breaker.allow()) return { outcome: 'unavailable' };
    const download = this.download(workspace === undefined);
    try {
      const cache = await library();
      const r = await this.call(workspace, () => cache.restoreCache([path], key, restoreKeys, download), {
        ...(workspace === undefined ? { budgetMs: this.opts.lookupBudgetMs ?? 10_000 } : {}),
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

  /** True when entry `key` exists; undefined when the service could not tell. */
  async exists(key: string, path: string): Promise<boolean | undefined> {
    const r = await this.lookup(path, key);
    if (r.outcome === 'unavailable') return undefined;
    return r.outcome === 'restored' && r.key === key;
  }

  /** Saves `path` of `workspace` as entry `key`. */
  async save(workspace: string, path: string, key: string): Promise<SaveResult> {
    if (!this.breaker.allow()) return { outcome: 'failed' };
    const r = await this.call(
      workspace,
      async () => {
        try {
          return await (await library()).saveCache([path], key);
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
