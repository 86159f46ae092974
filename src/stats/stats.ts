// Counters the server keeps about what it served and what it asked upstream, per
// repository, per upstream, and in total; and, per digest, where the content entered this
// runner's store in this server's life (its origin): fetched upstream, restored from the
// Actions cache, pushed to the registry port, or already on disk when the server started.
// Bytes served are attributed by origin, so a blob the Actions cache restored counts as the
// Actions cache's however often it is served, and docker's by-digest re-request of a manifest
// it just got by tag is not a disk hit. Rendered as JSON (stats file, HTTP endpoint),
// Prometheus text, and, by the Action, the job summary.

/** How a response was answered. */
export type Source = 'local' | 'upstream' | 'stale' | 'persist';

/** Where content in the store came from: this job's upstream fetch, the Actions cache, a push, or the disk as found. */
export type Origin = 'upstream' | 'actionsCache' | 'pushed' | 'disk';

/** The origins, in the order reports list them. */
export const ORIGINS: readonly Origin[] = ['upstream', 'actionsCache', 'disk', 'pushed'];

/** Bytes per origin. */
export type ByOrigin = Record<Origin, number>;

/** Counters of one repository (an image) of the cache or the registry. */
export interface RepositoryStats {
  /** Tags and digests clients asked for. */
  references: string[];
  manifestHits: number;
  manifestMisses: number;
  manifestStale: number;
  /** Manifest requests answered after a HEAD revalidation instead of a counted GET. */
  manifestRevalidated: number;
  /** By-digest manifest requests for a manifest this server fetched upstream (docker's second request): not hits. */
  manifestRepeats: number;
  blobHits: number;
  blobMisses: number;
  /** Blob requests served from another request's in-flight upstream download. */
  blobJoins: number;
  /** Blobs restored from the Actions cache. */
  blobPersistHits: number;
  /** Blob requests by where the blob's content came from (a config restored with the index is the Actions cache's). */
  blobsByOrigin: ByOrigin;
  bytesServed: number;
  /** Bytes sent to clients, by where the content came from (sums to bytesServed). */
  bytesServedByOrigin: ByOrigin;
  /** Size of the distinct manifests and blobs served (each once), by origin: the image's size. */
  sizeByOrigin: ByOrigin;
  bytesFetched: number;
  /** Digests tags resolved to, last first. */
  digests: string[];
  firstSeenMs: number;
  lastSeenMs: number;
}

/** Counters of one upstream registry. */
export interface UpstreamStats {
  /** Requests by `METHOD STATUS` (status 0: no response). */
  requests: Record<string, number>;
  /** Manifest GETs: what Docker Hub counts against the pull limit. */
  countedManifestGets: number;
  /** Manifest GETs avoided: served fresh within the TTL or after a HEAD showed no change. */
  manifestGetsAvoided: number;
  bytesFetched: number;
  /** Last `ratelimit-limit` / `ratelimit-remaining` seen (Docker Hub's `N;w=21600` form kept as sent). */
  rateLimit?: { limit: string; remaining: string; seenAtMs: number };
  errors: number;
  latencyMs: { count: number; sum: number; max: number };
}

/** What clients pushed to one repository of the registry port. */
export interface PushStats {
  /** Tags pushed, last first. */
  tags: string[];
  /** Manifest digests pushed, last first. */
  digests: string[];
  manifests: number;
  blobs: number;
  /** Bytes of the manifests and blobs pushed. */
  bytes: number;
  firstSeenMs: number;
  lastSeenMs: number;
}

/** What clients pulled from one repository of the registry port. */
export interface RegistryPullStats {
  /** Tags asked for, last first. */
  tags: string[];
  /** Digests tags resolved to, last first. */
  digests: string[];
  /** Size of the distinct manifests and blobs served, by origin (pushed images restored with persist-registry: the Actions cache). */
  sizeByOrigin: ByOrigin;
  bytesServed: number;
}

/** A snapshot of every counter, as written to the stats file. */
export interface StatsSnapshot {
  startedAtMs: number;
  takenAtMs: number;
  /** The cache port's repositories (canonical names: `docker.io/library/alpine`). */
  repositories: Record<string, RepositoryStats>;
  upstreams: Record<string, UpstreamStats>;
  /** The registry port's repositories clients pushed to. */
  pushes: Record<string, PushStats>;
  /** The registry port's repositories clients pulled from. */
  registryPulls: Record<string, RegistryPullStats>;
  /** Reports of other parts (the Actions cache restore tier as `persist`). */
  extras: Record<string, unknown>;
  totals: {
    requests: number;
    bytesServed: number;
    bytesFetched: number;
    manifestHits: number;
    manifestMisses: number;
    manifestStale: number;
    blobHits: number;
    blobMisses: number;
    blobJoins: number;
    blobPersistHits: number;
    bytesServedByOrigin: ByOrigin;
    /** Size of the distinct content served over every repository (a layer two images share, once), by origin. */
    sizeByOrigin: ByOrigin;
  };
}

const MAX_REFERENCES = 50;
/** Digests whose origin and size are remembered (beyond it, new content counts as the disk's). */
const MAX_TRACKED = 200_000;

/** Zero bytes for every origin. */
export function noBytes(): ByOrigin {
  return { upstream: 0, actionsCache: 0, pushed: 0, disk: 0 };
}

function newRepository(now: number): RepositoryStats {
  return {
    references: [],
    manifestHits: 0,
    manifestMisses: 0,
    manifestStale: 0,
    manifestRevalidated: 0,
    manifestRepeats: 0,
    blobHits: 0,
    blobMisses: 0,
    blobJoins: 0,
    blobPersistHits: 0,
    blobsByOrigin: noBytes(),
    bytesServed: 0,
    bytesServedByOrigin: noBytes(),
    sizeByOrigin: noBytes(),
    bytesFetched: 0,
    digests: [],
    firstSeenMs: now,
    lastSeenMs: now,
  };
}

function newUpstream(): UpstreamStats {
  return { requests: {}, countedManifestGets: 0, manifestGetsAvoided: 0, bytesFetched: 0, errors: 0, latencyMs: { count: 0, sum: 0, max: 0 } };
}

function pushUnique(list: string[], value: string): void {
  const i = list.indexOf(value);
  if (i === 0) return;
  if (i > 0) list.splice(i, 1);
  list.unshift(value);
  if (list.length > MAX_REFERENCES) list.length = MAX_REFERENCES;
}

/** The server's statistics. */
export class Stats {
  readonly startedAtMs = Date.now();
  private readonly repositories = new Map<string, RepositoryStats>();
  private readonly upstreams = new Map<string, UpstreamStats>();
  private readonly pushes = new Map<string, PushStats>();
  private readonly registryPulls = new Map<string, RegistryPullStats>();
  /** Digests served per registry repository (each counted once in its size). */
  private readonly registryServedBy = new Map<string, Set<string>>();
  private readonly extras = new Map<string, () => unknown>();
  /** Where each digest's content came from, when not the disk as found. */
  private readonly origins = new Map<string, Origin>();
  /** Digests served, with their size (the distinct content served, over every repository). */
  private readonly served = new Map<string, number>();
  /** Digests served per repository (each counted once in its size). */
  private readonly servedBy = new Map<string, Set<string>>();
  private requests = 0;

  /** Includes what `report` returns under `name` in every snapshot. */
  attach(name: string, report: () => unknown): void {
    this.extras.set(name, report);
  }

  private repo(name: string): RepositoryStats {
    let r = this.repositories.get(name);
    const now = Date.now();
    if (!r) {
      r = newRepository(now);
      this.repositories.set(name, r);
    }
    r.lastSeenMs = now;
    return r;
  }

  private upstream(ns: string): UpstreamStats {
    let u = this.upstreams.get(ns);
    if (!u) {
      u = newUpstream();
      this.upstreams.set(ns, u);
    }
    return u;
  }

  /** Where `digest`'s content came from ('disk' when this server did not put it in the store). */
  originOf(digest: string): Origin {
    return this.origins.get(digest) ?? 'disk';
  }

  /** Records that `digests` entered the store from `origin` (the first origin recorded stays). */
  private mark(digests: Iterable<string>, origin: Origin): void {
    for (const d of digests) {
      if (this.origins.has(d)) continue;
      if (this.origins.size >= MAX_TRACKED) return;
      this.origins.set(d, origin);
    }
  }

  /** Content fetched from an upstream into the store. */
  fromUpstream(digest: string): void {
    this.mark([digest], 'upstream');
  }

  /** Content restored from the Actions cache (packs, and the index's manifests and inline blobs). */
  fromActionsCache(digests: Iterable<string>): void {
    this.mark(digests, 'actionsCache');
  }

  /** Counts `digest` (of `size` bytes) once in the size of `name`'s image and in the totals. */
  private sized(name: string, r: RepositoryStats, digest: string, size: number): void {
    let seen = this.servedBy.get(name);
    if (!seen) {
      seen = new Set();
      this.servedBy.set(name, seen);
    }
    if (seen.has(digest) || seen.size >= MAX_TRACKED) return;
    seen.add(digest);
    r.sizeByOrigin[this.originOf(digest)] += size;
    if (!this.served.has(digest) && this.served.size < MAX_TRACKED) this.served.set(digest, size);
  }

  /** Counts one client request. */
  request(): void {
    this.requests++;
  }

  /** A manifest served to a client, and how (`bytes` is 0 for a HEAD). */
  manifestServed(name: string, reference: string, digest: string, source: Source, bytes: number, revalidated = false): void {
    const r = this.repo(name);
    pushUnique(r.references, reference);
    const byDigest = reference.includes(':');
    // The image's digest is what its tag resolves to; by-digest fetches (children, re-fetches) do not change it.
    if (!byDigest) pushUnique(r.digests, digest);
    if (source === 'upstream') r.manifestMisses++;
    else if (source === 'stale') r.manifestStale++;
    else if (byDigest && this.originOf(digest) === 'upstream') r.manifestRepeats++;
    else r.manifestHits++;
    if (revalidated) r.manifestRevalidated++;
    r.bytesServed += bytes;
    r.bytesServedByOrigin[this.originOf(digest)] += bytes;
    if (bytes > 0) this.sized(name, r, digest, bytes);
  }

  /** A referrers list served to a client, and from where: counted with the manifests (it is an image index). */
  referrersServed(name: string, source: Source): void {
    const r = this.repo(name);
    if (source === 'upstream') r.manifestMisses++;
    else if (source === 'stale') r.manifestStale++;
    else r.manifestHits++;
  }

  /** A blob response of `size` bytes started, and how; `joined` when it shares another's download. */
  blobServed(name: string, digest: string, size: number, source: Source, joined = false): void {
    const r = this.repo(name);
    if (source === 'upstream') r.blobMisses++;
    else if (source === 'persist') r.blobPersistHits++;
    else r.blobHits++;
    if (joined) r.blobJoins++;
    if (source === 'persist') this.fromActionsCache([digest]);
    if (source === 'upstream') this.fromUpstream(digest);
    r.blobsByOrigin[this.originOf(digest)]++;
    this.sized(name, r, digest, size);
  }

  /** Bytes of `digest` sent to a client for `name`. */
  bytesServed(name: string, digest: string, bytes: number): void {
    const r = this.repo(name);
    r.bytesServed += bytes;
    r.bytesServedByOrigin[this.originOf(digest)] += bytes;
  }

  /** Bytes received from upstream `ns` for `name`. */
  bytesFetched(ns: string, name: string, bytes: number): void {
    this.repo(name).bytesFetched += bytes;
    this.upstream(ns).bytesFetched += bytes;
  }

  /** One request sent upstream (status 0 when no response came). */
  upstreamRequest(ns: string, method: string, status: number, ms: number, countedPull: boolean): void {
    const u = this.upstream(ns);
    const key = `${method} ${status}`;
    u.requests[key] = (u.requests[key] ?? 0) + 1;
    if (countedPull) u.countedManifestGets++;
    if (status === 0 || status >= 500) u.errors++;
    u.latencyMs.count++;
    u.latencyMs.sum += ms;
    if (ms > u.latencyMs.max) u.latencyMs.max = ms;
  }

  /** A counted manifest GET that did not happen (fresh within TTL, or unchanged after HEAD). */
  manifestGetAvoided(ns: string): void {
    this.upstream(ns).manifestGetsAvoided++;
  }

  /** Rate-limit headers an upstream sent. */
  rateLimit(ns: string, limit: string, remaining: string): void {
    this.upstream(ns).rateLimit = { limit, remaining, seenAtMs: Date.now() };
  }

  private push(name: string): PushStats {
    let p = this.pushes.get(name);
    const now = Date.now();
    if (!p) {
      p = { tags: [], digests: [], manifests: 0, blobs: 0, bytes: 0, firstSeenMs: now, lastSeenMs: now };
      this.pushes.set(name, p);
    }
    p.lastSeenMs = now;
    return p;
  }

  /** A blob a client pushed to the registry port (an upload or a mount). */
  blobPushed(name: string, digest: string, size: number): void {
    const p = this.push(name);
    p.blobs++;
    p.bytes += size;
    this.mark([digest], 'pushed');
  }

  /** A manifest a client pushed to the registry port, by tag or by digest. */
  manifestPushed(name: string, reference: string, digest: string, size: number): void {
    const p = this.push(name);
    p.manifests++;
    p.bytes += size;
    if (!reference.includes(':')) pushUnique(p.tags, reference);
    pushUnique(p.digests, digest);
    this.mark([digest], 'pushed');
  }

  private registryPull(name: string): RegistryPullStats {
    let p = this.registryPulls.get(name);
    if (!p) {
      p = { tags: [], digests: [], sizeByOrigin: noBytes(), bytesServed: 0 };
      this.registryPulls.set(name, p);
    }
    return p;
  }

  /** Content of `size` bytes served from the registry port (`reference` for a manifest: its tag or digest). */
  registryServed(name: string, digest: string, size: number, reference?: string): void {
    const p = this.registryPull(name);
    if (reference !== undefined && !reference.includes(':')) {
      pushUnique(p.tags, reference);
      pushUnique(p.digests, digest);
    }
    p.bytesServed += size;
    let seen = this.registryServedBy.get(name);
    if (!seen) {
      seen = new Set();
      this.registryServedBy.set(name, seen);
    }
    if (size === 0 || seen.has(digest) || seen.size >= MAX_TRACKED) return;
    seen.add(digest);
    p.sizeByOrigin[this.originOf(digest)] += size;
  }

  /** Every counter, as plain data. */
  snapshot(): StatsSnapshot {
    const repositories = Object.fromEntries([...this.repositories].map(([k, v]) => [k, structuredClone(v)]));
    const totals = {
      requests: this.requests,
      bytesServed: 0,
      bytesFetched: 0,
      manifestHits: 0,
      manifestMisses: 0,
      manifestStale: 0,
      blobHits: 0,
      blobMisses: 0,
      blobJoins: 0,
      blobPersistHits: 0,
      bytesServedByOrigin: noBytes(),
      sizeByOrigin: noBytes(),
    };
    for (const r of this.repositories.values()) {
      totals.bytesServed += r.bytesServed;
      totals.bytesFetched += r.bytesFetched;
      totals.manifestHits += r.manifestHits;
      totals.manifestMisses += r.manifestMisses;
      totals.manifestStale += r.manifestStale;
      totals.blobHits += r.blobHits;
      totals.blobMisses += r.blobMisses;
      totals.blobJoins += r.blobJoins;
      totals.blobPersistHits += r.blobPersistHits;
      for (const o of ORIGINS) totals.bytesServedByOrigin[o] += r.bytesServedByOrigin[o];
    }
    for (const [d, size] of this.served) totals.sizeByOrigin[this.originOf(d)] += size;
    const upstreams = Object.fromEntries([...this.upstreams].map(([k, v]) => [k, structuredClone(v)]));
    const pushes = Object.fromEntries([...this.pushes].map(([k, v]) => [k, structuredClone(v)]));
    const registryPulls = Object.fromEntries([...this.registryPulls].map(([k, v]) => [k, structuredClone(v)]));
    const extras = Object.fromEntries([...this.extras].map(([k, f]) => [k, structuredClone(f())]));
    return { startedAtMs: this.startedAtMs, takenAtMs: Date.now(), repositories, upstreams, pushes, registryPulls, extras, totals };
  }
}
