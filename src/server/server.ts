// The server: one storage root, the registry port (writable) and the cache port (read-only)
// over it, started and stopped together.
import { accessSync, constants, statSync, type Stats as FileStats } from 'node:fs';
import { readFile, writeFile, rename } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { DEFAULT_UPLOAD_MAX_AGE_MS, describeOwner, openS3Backend, openStorage, type S3StorageSettings, type LockWait, type Storage, type StorageLockLostError } from '../storage/index.js';
import { buildRegistryApp, BasicAuth, type ClientTimeouts } from '../registry/index.js';
import { createCache, type Credentials } from '../proxy/index.js';
import { Stats, countPushes, toPrometheus } from '../stats/index.js';
import type { PackRestorer, RestoringRegistry } from '../persist/index.js';
import type { Digest } from '../oci/index.js';
import { parseAddress, urlOf } from './address.js';
import { loadTlsFiles } from './tls-files.js';
import { startGcService } from './gc-service.js';
import { DEFAULT_DRAIN_TIMEOUT_MS, drainApps, seconds, trackRequests, type InFlight } from './drain.js';

/**
 * What the cache port answers before the persistence index is imported: the API version check
 * (`GET /v2/`, the readiness probe) and the statistics (the Action's mirror proof reads them).
 */
const answersBeforeImport = (url: string) => {
  const path = url.split('?')[0];
  return path === '/v2/' || path === '/v2' || path === STATS_PATH || path === METRICS_PATH;
};

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** HOST:PORT of the registry. Default 127.0.0.1:5000. */
  registryAddr?: string;
  /** HOST:PORT of the pull-through cache. Default 127.0.0.1:5001. */
  cacheAddr?: string;
  /** Storage root directory (with `s3`: this server's local directory: temp files, lock, copies of blobs). */
  storage: string;
  /** A shared S3 bucket as the storage, which several servers may use at once. */
  s3?: S3StorageSettings;
  /** htpasswd file enabling basic auth on both ports. */
  htpasswd?: string;
  /** Realm of the basic-auth challenge. Default regcache. */
  realm?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Deletes of manifests, tags and blobs on the registry port; false answers them 405 UNSUPPORTED. Default true. */
  deleteEnabled?: boolean;
  /**
   * How messages name each setting (default: its flag, e.g. `--tls-cert`); a distribution
   * configuration names its key or variable instead.
   */
  names?: Partial<Record<NamedSetting, string>>;
  /** Hears warnings about the settings (htpasswd entries that are not bcrypt). Default: standard error. */
  warn?: (message: string) => void;
  /** pino level: fatal, error, warn, info, debug, trace or silent. Default info. */
  logLevel?: string;
  /** Upstreams of the cache as `NS=URL`; default Docker Hub. */
  upstreams?: string[];
  /** Upstream credentials as `NS=USER:TOKEN` (also read: REGCACHE_UPSTREAM_AUTH, docker config). */
  upstreamAuth?: string[];
  /** Credentials already resolved, by ns (tests). */
  credentials?: Map<string, Credentials>;
  /** How long a cached tag is served before it is revalidated. Default 5 minutes. */
  tagTtlMs?: number;
  /** Bound of the cache's size in bytes (least recently used blobs are evicted beyond it). */
  maxCacheBytes?: number;
  /** Tests: awaited by an eviction pass before it takes each blob it chose (see EvictorOptions). */
  evictionBeforeDelete?: (digest: string) => Promise<void>;
  /**
   * A persistence index restored from the Actions cache: imported at start, its packs restored on
   * demand. `-` reads it from standard input, to its end: the Action starts the server while it
   * restores the index, and hands it over once restored (an empty input is an empty index).
   */
  persistIndex?: string;
  /** Restore every pack of the index in the background at start. */
  persistPrefetch?: boolean;
  /** Import the index's :5000 registry part too (pushed images saved by a job with `persist-registry`). */
  persistRegistry?: boolean;
  /** Where the statistics are written as JSON: kept current while running (within a second), and on close. */
  statsFile?: string;
  /** Upstream retries after the first attempt (default 2) and base backoff (default 200 ms). */
  upstreamRetries?: number;
  upstreamBackoffMs?: number;
  /** Upload sessions idle longer than this are purged, at start and while running. Default 24 hours. */
  uploadMaxAgeMs?: number;
  /** How often stale upload sessions are looked for while running. Default: a tenth of uploadMaxAgeMs, at most an hour. */
  uploadPurgeIntervalMs?: number;
  /** Limits on slow and idle clients, both ports. */
  timeouts?: ClientTimeouts;
  /** Most referrers on one page of the referrers API, both ports (default: as many as fit in 4 MiB). */
  referrersPageSize?: number;
  /** Collect garbage this often while running (default: only when `regcache gc` asks, over the storage's gc socket). */
  gcIntervalMs?: number;
  /** Grace period of the periodic collections. Default one hour. */
  gcGraceMs?: number;
  /** How long close() waits for requests in flight before it closes their connections. Default 5 s. */
  drainTimeoutMs?: number;
  /** The storage lock's lease period. Default: REGCACHE_LOCK_LEASE_MS, else 15 s. */
  lockLeaseMs?: number;
  /** Told, as one line, what the server waits for (a storage lock's lease, a drain). */
  notice?: (message: string) => void;
  /** Told when another process took the storage lock over (this one stalled longer than a lease). */
  onLockLost?: (err: StorageLockLostError) => void;
}

/** A started server. */
export interface RunningServer {
  registryUrl: string;
  cacheUrl: string;
  storage: Storage;
  stats: Stats;
  registryApp: FastifyInstance;
  cacheApp: FastifyInstance;
  /**
   * Stops accepting, waits for in-flight requests up to the drain timeout, closes the
   * connections of those still running, waits for the work they started, releases the storage.
   */
  close(): Promise<void>;
  /** Requests in flight on both ports now. */
  inFlight(): InFlight;
  /** Releases the storage lock at once, synchronously: for a process about to exit without draining. */
  abandon(): void;
}

/** The settings whose messages name them. */
export type NamedSetting = 'registryAddr' | 'cacheAddr' | 'storage' | 'htpasswd' | 'tlsCert' | 'tlsKey';

const FLAGS: Record<NamedSetting, string> = {
  registryAddr: '--registry-addr',
  cacheAddr: '--cache-addr',
  storage: '--storage',
  htpasswd: '--htpasswd',
  tlsCert: '--tls-cert',
  tlsKey: '--tls-key',
};

/** A listen failure as one line naming the flag to change. */
export class ListenError extends Error {
  constructor(message: string, readonly flag: string, readonly code: string | undefined) {
    super(message);
    this.name = 'ListenError';
  }
}

async function listen(app: FastifyInstance, value: string, flag: string): Promise<AddressInfo> {
  const { host, port } = parseAddress(value, flag);
  try {
    await app.listen({ host, port });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new ListenError(`${host}:${port} is already in use; choose another with ${flag}`, flag, code);
    if (code === 'EADDRNOTAVAIL' || code === 'EACCES') throw new ListenError(`cannot listen on ${host}:${port} (${code}); change ${flag}`, flag, code);
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME') {
      throw new ListenError(`${flag}: cannot resolve the host "${host}"; give an IP address (0.0.0.0 for every interface, 127.0.0.1 for this machine only) or a name this machine resolves`, flag, code);
    }
    if (code === 'EAFNOSUPPORT') throw new ListenError(`${flag}: ${host} is an IPv6 address and IPv6 is off here; use 0.0.0.0`, flag, code);
    throw err;
  }
  return app.server.address() as AddressInfo;
}

/** Opens the storage and starts both ports. */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  if (opts.s3 && opts.persistIndex) throw new Error('--persist-index carries a storage directory through the GitHub Actions cache: it does not apply to a storage on S3 (--storage s3://...), which outlives the job by itself');
  const uploadMaxAgeMs = opts.uploadMaxAgeMs ?? DEFAULT_UPLOAD_MAX_AGE_MS;
  const nameOf = (setting: NamedSetting) => opts.names?.[setting] ?? FLAGS[setting];
  const storage = await openStorage(opts.storage, {
    uploadMaxAgeMs,
    ...(opts.s3 ? { shared: await openS3Backend(opts.s3) } : {}),
    lock: {
      ...(opts.lockLeaseMs !== undefined ? { leaseMs: opts.lockLeaseMs } : {}),
      onWait: (w) => opts.notice?.(lockWaitNotice(opts.storage, w)),
      ...(opts.onLockLost ? { onLost: opts.onLockLost } : {}),
    },
  }).catch((err: unknown) => {
    throw storageOpenError(err, opts.storage, nameOf('storage'));
  });
  const apps: FastifyInstance[] = [];
  const closers: Array<() => Promise<void>> = [];
  try {
    closers.push(purgeUploadsPeriodically(storage, uploadMaxAgeMs, opts.uploadPurgeIntervalMs ?? Math.min(3_600_000, Math.ceil(uploadMaxAgeMs / 10))));
    const auth = opts.htpasswd
      ? BasicAuth.fromFile(opts.htpasswd, { name: `${nameOf('htpasswd')} ${opts.htpasswd}`, ...(opts.realm !== undefined ? { realm: opts.realm } : {}), ...(opts.warn ? { warn: opts.warn } : {}) })
      : undefined;
    const https =
      opts.tlsCert && opts.tlsKey ? await loadTlsFiles({ path: opts.tlsCert, name: nameOf('tlsCert') }, { path: opts.tlsKey, name: nameOf('tlsKey') }) : undefined;
    const logger = { level: opts.logLevel ?? 'info' };
    const common = {
      ...(auth ? { auth } : {}),
      ...(https ? { https } : {}),
      ...(opts.timeouts ? { timeouts: opts.timeouts } : {}),
      ...(opts.referrersPageSize !== undefined ? { referrersPageSize: opts.referrersPageSize } : {}),
      logger,
    };
    const stats = new Stats();
    // The index (from standard input, while the Action restores it) is imported while the ports
    // open: the cache port's requests wait for it, but for the version check, so that the
    // server is ready before the index is. The :5000 backend restoring pushed images cannot
    // answer without it: with persistRegistry, the server waits.
    const persistence = opts.persistIndex ? openPersistence(storage, opts.persistIndex, stats, !!opts.persistPrefetch, !!opts.persistRegistry) : undefined;
    const registryBackend = opts.persistRegistry ? (await persistence)?.registry : undefined;
    let restorer: PackRestorer | undefined;
    let importFailure: unknown;
    // A failed import (the store failing) leaves the cache serving from upstream, and says so.
    const imported = persistence?.then(
      (p) => void (restorer = p.restorer),
      (err: unknown) => void (importFailure = err),
    );
    // Upstream outages go to the cache port's log (built below: bound once it exists).
    let cacheLog: FastifyInstance['log'] | undefined;
    const cache = createCache({
      log: {
        warn: (fields, message) => cacheLog?.warn(fields, message),
        info: (fields, message) => cacheLog?.info(fields, message),
      },
      ...(imported
        ? {
            persist: {
              // Requests reach these only once the index is imported (the hook below).
              fetch: async (d: Digest) => (restorer ? restorer.fetch(d) : false),
              expect: (name: string, ref: string) => restorer?.expect(name, ref),
              claim: (d: Digest) => restorer?.claim(d) ?? false,
            },
          }
        : {}),
      storage,
      stats,
      ...(opts.upstreams ? { upstreams: opts.upstreams } : {}),
      ...(opts.upstreamAuth ? { upstreamAuth: opts.upstreamAuth } : {}),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      ...(opts.tagTtlMs !== undefined ? { tagTtlMs: opts.tagTtlMs } : {}),
      ...(opts.maxCacheBytes ? { maxCacheBytes: opts.maxCacheBytes } : {}),
      ...(opts.evictionBeforeDelete ? { eviction: { beforeDelete: opts.evictionBeforeDelete } } : {}),
      ...(opts.upstreamRetries !== undefined ? { retries: opts.upstreamRetries } : {}),
      ...(opts.upstreamBackoffMs !== undefined ? { backoffMs: opts.upstreamBackoffMs } : {}),
    });
    closers.push(cache.close);
    const statsFile = opts.statsFile ? keepStatsFile(opts.statsFile, stats) : undefined;
    // With the prefetch, the index's tags are confirmed upstream meanwhile too.
    if (opts.persistPrefetch) void persistence?.then((p) => cache.backend.confirmTags(p.tags), () => {});
    await cache.backend.installProbe();
    const registryApp = buildRegistryApp({ backend: countPushes(registryBackend ?? storage.registry, stats, (d) => restorer?.claim(d) ?? false), writable: true, deleteEnabled: opts.deleteEnabled ?? true, ...common });
    apps.push(registryApp);
    const cacheApp = buildRegistryApp({
      backend: cache.backend,
      writable: false,
      resolveName: cache.resolveName,
      extraRoutes: (app) => {
        if (imported) app.addHook('onRequest', async (req) => void (answersBeforeImport(req.url) || (await imported)));
        statsRoutes(app, stats);
      },
      ...common,
    });
    apps.push(cacheApp);
    // Garbage collection through the storage's lifetime owner: periodic, and on `regcache gc`'s request.
    closers.push(
      await startGcService(storage, {
        log: registryApp.log,
        uploadMaxAgeMs,
        ...(opts.gcIntervalMs !== undefined ? { intervalMs: opts.gcIntervalMs } : {}),
        ...(opts.gcGraceMs !== undefined ? { graceMs: opts.gcGraceMs } : {}),
      }),
    );
    const counters = apps.map((a) => trackRequests(a.server));
    const inFlight = () => counters.map((count) => count()).reduce((a, b) => ({ requests: a.requests + b.requests, uploads: a.uploads + b.uploads }));
    cacheLog = cacheApp.log;
    const r = await listen(registryApp, opts.registryAddr ?? '127.0.0.1:5000', nameOf('registryAddr'));
    const c = await listen(cacheApp, opts.cacheAddr ?? '127.0.0.1:5001', nameOf('cacheAddr'));
    void imported?.then(() => importFailure && cacheApp.log.error({ err: importFailure }, 'the persistence index could not be imported: serving without it'));
    return {
      registryUrl: urlOf(r.address, r.port, !!https),
      cacheUrl: urlOf(c.address, c.port, !!https),
      storage,
      stats,
      registryApp,
      cacheApp,
      inFlight,
      abandon: () => storage.abandon(),
      close: async () => {
        await drainApps(apps, inFlight, opts.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS, opts.notice ?? (() => {}));
        await Promise.all(closers.map((c) => c().catch(() => {})));
        await statsFile?.stop();
        if (opts.statsFile) await writeJsonAtomic(opts.statsFile, stats.snapshot());
        await storage.close();
      },
    };
  } catch (err) {
    await Promise.all(apps.map((a) => a.close().catch(() => {})));
    await Promise.all(closers.map((c) => c().catch(() => {})));
    await storage.close();
    throw err;
  }
}

/** What a server waiting for a storage lock's lease says. */
function lockWaitNotice(storage: string, w: LockWait): string {
  const ago = w.renewedAgoMs !== undefined ? `last renewed ${seconds(w.renewedAgoMs)} ago` : 'renewed on a clock that may differ from ours';
  return `storage ${storage} is locked by ${describeOwner(w.owner)}, whose lease was ${ago}; waiting up to ${seconds(w.waitMs)} for it to run out (a running server renews it every third of the lease period)`;
}

/**
 * A storage root that cannot be opened, as one line naming the setting and the fix (the
 * file-system error alone says `ENOENT ... mkdir` for a read-only parent).
 */
function storageOpenError(err: unknown, root: string, name: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return new Error(`${name} ${root}: no space left on the device`);
  if (!['ENOENT', 'EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST'].includes(code ?? '')) return err;
  // mkdir's own code misleads (a read-only parent is reported as ENOENT): ask the deepest
  // existing ancestor instead.
  const { existing, file } = nearestExisting(root);
  if (file) return new Error(`${name} ${root}: ${existing} is a file, not a directory; give a directory`);
  let problem: string | undefined;
  try {
    accessSync(existing, constants.W_OK);
  } catch (e) {
    problem = (e as NodeJS.ErrnoException).code;
  }
  if (problem === 'EROFS') return new Error(`${name} ${root}: ${existing} is on a read-only file system; give a directory on a writable one`);
  if (problem === 'EACCES' || problem === 'EPERM') {
    return new Error(`${name} ${root}: ${existing} is not writable by this user (uid ${process.getuid?.() ?? '?'}); make it writable (chown/chmod) or give another directory`);
  }
  return new Error(`${name} ${root}: cannot be created in ${existing} (${code}); give a writable directory`);
}

/** The deepest existing path at or above `path`, and whether it is a file. */
function nearestExisting(path: string): { existing: string; file: boolean } {
  for (let p = resolve(path); ; p = dirname(p)) {
    let st: FileStats | undefined;
    try {
      st = statSync(p, { throwIfNoEntry: false });
    } catch {
      st = undefined; // ENOTDIR: a file further up
    }
    if (st) return { existing: p, file: !st.isDirectory() };
    if (dirname(p) === p) return { existing: p, file: false };
  }
}

/**
 * Purges upload sessions idle longer than `maxAgeMs` every `intervalMs` while the server runs
 * (clients that never finish or cancel an upload leave their bytes behind). Returns the stopper,
 * which waits for a purge in progress.
 */
function purgeUploadsPeriodically(storage: Storage, maxAgeMs: number, intervalMs: number): () => Promise<void> {
  let running: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(() => storage.uploads.purgeStale(maxAgeMs)).catch(() => {});
  }, Math.max(10, intervalMs));
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}

/** Path of the statistics as JSON on the cache port. */
export const STATS_PATH = '/_regcache/stats';
/** Path of the Prometheus metrics on the cache port. */
export const METRICS_PATH = '/metrics';

function statsRoutes(app: FastifyInstance, stats: Stats): void {
  app.addHook('onRequest', async () => stats.request());
  app.get(STATS_PATH, async (_req, reply) => reply.type('application/json').send(stats.snapshot()));
  app.get(METRICS_PATH, async (_req, reply) => reply.type('text/plain; version=0.0.4').send(toPrometheus(stats.snapshot())));
}

/** How often the statistics file is brought up to date while the server runs. */
export const STATS_FILE_INTERVAL_MS = 1_000;

/**
 * Keeps `path` current while the server runs: rewritten (atomically) within a second of a change
 * of the statistics, so a step of the job (or actions/upload-artifact) can read it at any time.
 * Nothing is written while nothing changes. Returns the stopper, which waits for a write under way.
 */
function keepStatsFile(path: string, stats: Stats): { stop(): Promise<void> } {
  let last = '';
  let writing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    writing = writing.then(async () => {
      const snapshot = stats.snapshot();
      const compared = JSON.stringify({ ...snapshot, takenAtMs: 0 });
      if (compared === last) return;
      last = compared;
      await writeJsonAtomic(path, snapshot);
    }).catch(() => {});
  }, STATS_FILE_INTERVAL_MS);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await writing;
    },
  };
}

async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFile(`${path}.tmp`, JSON.stringify(value, null, 2));
  await rename(`${path}.tmp`, path);
}

/** Standard input, whole, as text ('' when there is none or it fails). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  } catch {
    return '';
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The most tags of an index confirmed upstream in the background (a bound on that traffic). */
const MAX_CONFIRMED_TAGS = 100;

/**
 * Imports a restored index and returns the tier that restores its packs on demand, and with
 * `registry` the :5000 backend restoring the index's registry part. The persistence code (with
 * @actions/cache and the Azure SDK under it) is set up only here, when a server is given an
 * index to persist with: a server without one starts with 7 MB less resident memory (78 MB
 * instead of 85 MB on Node 20).
 */
async function openPersistence(
  storage: Storage,
  indexFile: string,
  stats: Stats,
  prefetch: boolean,
  registry: boolean,
): Promise<{ restorer?: PackRestorer; registry?: RestoringRegistry; tags: Array<{ name: string; tag: string }> }> {
  const [{ ActionsCache, PackRestorer, importIndex, importRegistry, parseIndex }, text] = await Promise.all([
    import('../persist/index.js'),
    indexFile === '-' ? readStdin() : readFile(indexFile, 'utf8').catch(() => ''),
  ]);
  const index = parseIndex(text);
  // What the index brings (its manifests, its inline blobs) counts as the Actions cache's.
  stats.fromActionsCache([...Object.keys(index.inline), ...[index.manifests, index.registry?.manifests ?? {}].flatMap((ms) => Object.values(ms).flatMap((m) => Object.keys(m)))]);
  // The prefetch starts before the import (the index's manifests and tags into the store).
  const restorer = ActionsCache.available() ? new PackRestorer(storage, index, new ActionsCache(), storage.layout.tmpDir) : undefined;
  if (restorer && prefetch) void restorer.prefetchAll();
  const imported = await importIndex(storage, index);
  stats.attach('persistIndex', () => imported);
  let backend: RestoringRegistry | undefined;
  if (registry) {
    const r = await importRegistry(storage, index, restorer);
    stats.attach('persistRegistry', () => r.report);
    backend = r.backend;
  }
  const tags = Object.entries(index.tags)
    .flatMap(([name, byTag]) => Object.keys(byTag).map((tag) => ({ name, tag })))
    .slice(0, MAX_CONFIRMED_TAGS);
  if (!restorer) return { tags, ...(backend ? { registry: backend } : {}) };
  stats.attach('persist', () => restorer.report);
  return { tags, restorer, ...(backend ? { registry: backend } : {}) };
}
