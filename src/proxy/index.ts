// The pull-through cache: what other folders import from src/proxy.
import type { Storage } from '../storage/index.js';
import type { Stats } from '../stats/index.js';
import { PullThroughCache, type PersistTier } from './pull-through.js';
import { UpstreamClient, createDispatcher, type UpstreamLog } from './upstream-client.js';
import { DEFAULT_UPSTREAMS, UpstreamRouter, parseUpstream, type Credentials } from './upstreams.js';
import { loadCredentials } from './credentials.js';
import { CacheEvictor, type EvictorOptions } from './eviction.js';

export { PullThroughCache, upstreamToRegistryError, type PersistTier } from './pull-through.js';
export { UpstreamClient, UpstreamError, type UpstreamLog } from './upstream-client.js';
export { UpstreamRouter, parseUpstream, normalizeNs, DEFAULT_UPSTREAMS, DOCKER_HUB, type UpstreamConfig, type Credentials } from './upstreams.js';
export { loadCredentials, parseCredentialLines, readDockerConfig } from './credentials.js';
export { PROBE_REPOSITORY, PROBE_TAG } from './probe.js';
export { CacheEvictor, type EvictionResult, type EvictorOptions } from './eviction.js';

/** Options of {@link createCache}. */
export interface CacheOptions {
  storage: Storage;
  stats: Stats;
  /** `NS=URL` values; default: Docker Hub. */
  upstreams?: string[];
  /** `NS=USER:TOKEN` values; the environment and docker config are read too. */
  upstreamAuth?: string[];
  /** Credentials already resolved (tests); merged over the others. */
  credentials?: Map<string, Credentials>;
  tagTtlMs?: number;
  /** A tier asked before the upstream for blobs (the Actions cache). */
  persist?: PersistTier;
  /** Evict least-recently-used cached blobs beyond this many bytes. */
  maxCacheBytes?: number;
  /** Options of the evictor (tests). */
  eviction?: EvictorOptions;
  /** Retries and breaker tuning for tests and the fault suite. */
  retries?: number;
  backoffMs?: number;
  /** Where upstream outages are logged (one line per breaker transition). */
  log?: UpstreamLog;
}

/** A ready pull-through cache with its name resolver. */
export interface Cache {
  backend: PullThroughCache;
  router: UpstreamRouter;
  resolveName(name: string, query: Record<string, string | undefined>): string;
  close(): Promise<void>;
}

/** Builds the cache over a storage root. */
export function createCache(o: CacheOptions): Cache {
  const credentials = loadCredentials(o.upstreamAuth ?? []);
  for (const [k, v] of o.credentials ?? []) credentials.set(k, v);
  const configs = (o.upstreams?.length ? o.upstreams : DEFAULT_UPSTREAMS).map(parseUpstream);
  for (const c of configs) {
    const cred = credentials.get(c.ns);
    if (cred) c.credentials = cred;
  }
  const router = new UpstreamRouter(configs);
  const dispatcher = createDispatcher();
  const clientOpts = {
    stats: o.stats,
    dispatcher,
    ...(o.retries !== undefined ? { retries: o.retries } : {}),
    ...(o.backoffMs !== undefined ? { backoffMs: o.backoffMs } : {}),
    ...(o.log ? { log: o.log } : {}),
  };
  const clients = new Map(configs.map((c) => [c.ns, new UpstreamClient(c, clientOpts)]));
  const backend = new PullThroughCache({
    blobs: o.storage.blobs,
    repositories: o.storage.cacheRepositories,
    router,
    clients,
    stats: o.stats,
    tagTtlMs: o.tagTtlMs ?? 5 * 60 * 1000,
    ...(o.persist ? { persist: o.persist } : {}),
    ...(o.storage.fills ? { fillClaims: o.storage.fills } : {}),
    ...(o.maxCacheBytes ? { evictor: new CacheEvictor(o.storage.blobs, o.storage.cacheRepositories, o.storage.repositories, o.maxCacheBytes, { ...o.eviction, ...(o.storage.lease ? { lease: o.storage.lease } : {}) }) } : {}),
  });
  return {
    backend,
    router,
    resolveName: (name, query) => router.route(name, query.ns).canonical,
    close: async () => {
      await backend.settle();
      await dispatcher.close();
    },
  };
}
