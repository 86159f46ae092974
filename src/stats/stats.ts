// Counters the server keeps about what it served and what it asked upstream, per
// repository, per upstream, and in total. Rendered as JSON (stats file, HTTP endpoint),
// Prometheus text, and, by the Action, the job summary.

/** Where the bytes of a response came from. */
export type Source = 'local' | 'upstream' | 'stale' | 'persist';

/** Counters of one repository (an image) of the cache or the registry. */
export interface RepositoryStats {
  /** Tags and digests clients asked for. */
  references: string[];
  manifestHits: number;
  manifestMisses: number;
  manifestStale: number;
  /** Manifest requests answered after a HEAD revalidation instead of a counted GET. */
  manifestRevalidated: number;
  blobHits: number;
  blobMisses: number;
  /** Blob requests served from another request's in-flight upstream download. */
  blobJoins: number;
  /** Blobs restored from the Actions cache. */
  blobPersistHits: number;
  bytesServed: number;
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

/** A snapshot of every counter, as written to the stats file. */
export interface StatsSnapshot {
  startedAtMs: number;
  takenAtMs: number;
  repositories: Record<string, RepositoryStats>;
  upstreams: Record<string, UpstreamStats>;
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
  };
}

const MAX_REFERENCES = 50;

function newRepository(now: number): RepositoryStats {
  return {
    references: [],
    manifestHits: 0,
    manifestMisses: 0,
    manifestStale: 0,
    manifestRevalidated: 0,
    blobHits: 0,
    blobMisses: 0,
    blobJoins: 0,
    blobPersistHits: 0,
    bytesServed: 0,
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
  private readonly extras = new Map<string, () => unknown>();
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

  /** Counts one client request. */
  request(): void {
    this.requests++;
  }

  /** A manifest served to a client, and from where. */
  manifestServed(name: string, reference: string, digest: string, source: Source, bytes: number, revalidated = false): void {
    const r = this.repo(name);
    pushUnique(r.references, reference);
    // The image's digest is what its tag resolves to; by-digest fetches (children, re-fetches) do not change it.
    if (!reference.includes(':')) pushUnique(r.digests, digest);
    if (source === 'upstream') r.manifestMisses++;
    else if (source === 'stale') r.manifestStale++;
    else r.manifestHits++;
    if (revalidated) r.manifestRevalidated++;
    r.bytesServed += bytes;
  }

  /** A referrers list served to a client, and from where: counted with the manifests (it is an image index). */
  referrersServed(name: string, source: Source): void {
    const r = this.repo(name);
    if (source === 'upstream') r.manifestMisses++;
    else if (source === 'stale') r.manifestStale++;
    else r.manifestHits++;
  }

  /** A blob response started, and from where; `joined` when it shares another's download. */
  blobServed(name: string, source: Source, joined = false): void {
    const r = this.repo(name);
    if (source === 'upstream') r.blobMisses++;
    else if (source === 'persist') r.blobPersistHits++;
    else r.blobHits++;
    if (joined) r.blobJoins++;
  }

  /** Bytes sent to a client for `name`. */
  bytesServed(name: string, bytes: number): void {
    this.repo(name).bytesServed += bytes;
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
    }
    const upstreams = Object.fromEntries([...this.upstreams].map(([k, v]) => [k, structuredClone(v)]));
    const extras = Object.fromEntries([...this.extras].map(([k, f]) => [k, structuredClone(f())]));
    return { startedAtMs: this.startedAtMs, takenAtMs: Date.now(), repositories, upstreams, extras, totals };
  }
}
