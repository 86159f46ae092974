// Bounds the cache's size (`--max-cache-size`): when the blobs the cache holds exceed the
// bound, the least recently used are deleted until it is 90% full again, except blobs being
// served or filled right now and blobs pushed (:5000) content references. Cached manifests
// stay (they are small); a layer evicted from under one is fetched again on the next pull.
// A pass is a sweep of the storage's lifetime owner (src/storage/blob-lifetime.ts): each
// blob is deleted under its digest's lock after the owner checked again that nothing pushed,
// mounted or linked it since the pass began and that nobody holds it. On a bucket shared with
// other servers a pass runs under the storage's work lease (one server at a time), and a blob
// whose time moved since the pass listed it (another server referenced it) is kept.
import type { BlobStore, Repositories, Sweep, WorkLease } from '../storage/index.js';
import { referencedBlobs, unchangedSince } from '../storage/index.js';
import type { Digest } from '../oci/index.js';

/** What one eviction pass did. */
export interface EvictionResult {
  cachedBytes: number;
  evicted: number;
  evictedBytes: number;
  /** Blobs chosen but kept at the last check (held, or referenced since the pass began). */
  kept: number;
}

/** Options of a {@link CacheEvictor}. */
export interface EvictorOptions {
  /**
   * Awaited before each blob the pass chose is looked at and taken (tests: a pass held there
   * lets a push run between the choice and the delete, deterministically).
   */
  beforeDelete?: (digest: string) => Promise<void>;
  /** On a shared bucket: the lease a pass runs under, so that one server at a time evicts. */
  lease?: WorkLease;
}

/** A cached blob the pass may take. */
interface Candidate {
  digest: Digest;
  names: string[];
  size: number;
  used: number;
  /** On a bucket: the blob's version when listed. */
  version?: string;
}

/** Least-recently-used eviction of cached blobs. */
export class CacheEvictor {
  private readonly lastUse = new Map<string, number>();
  private running: Promise<EvictionResult> | undefined;
  private again = false;

  constructor(
    private readonly blobs: BlobStore,
    private readonly cache: Repositories,
    private readonly pushed: Repositories,
    readonly maxBytes: number,
    private readonly opts: EvictorOptions = {},
  ) {}

  /** Marks a blob as used now. */
  touch(digest: string): void {
    this.lastUse.set(digest, Date.now());
  }

  /** Runs a pass now, or once more after the one running (passes never overlap). */
  evict(): Promise<EvictionResult> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.pass().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        void this.evict();
      }
    });
    return this.running;
  }

  private async pass(): Promise<EvictionResult> {
    if (!this.opts.lease) return this.sweepPass();
    const result = await this.opts.lease.runOnce('eviction', () => this.sweepPass());
    return result ?? { cachedBytes: 0, evicted: 0, evictedBytes: 0, kept: 0 };
  }

  private async sweepPass(): Promise<EvictionResult> {
    // Opened before anything is read: whatever is pushed or linked from now on is known to it.
    const sweep = this.blobs.lifetime.beginSweep();
    try {
      return await this.sweepOver(sweep);
    } finally {
      sweep.end();
    }
  }

  private async sweepOver(sweep: Sweep): Promise<EvictionResult> {
    // A blob whose time is later than the pass's start was referenced since (on a shared bucket,
    // maybe by another server, which the sweep cannot see): it is kept.
    const started = Date.now();
    const candidates = await this.candidates();
    let total = candidates.reduce((n, e) => n + e.size, 0);
    const result: EvictionResult = { cachedBytes: total, evicted: 0, evictedBytes: 0, kept: 0 };
    if (total <= this.maxBytes) return result;
    const target = this.maxBytes * 0.9;
    candidates.sort((a, b) => a.used - b.used);
    for (const e of candidates) {
      if (total <= target) break;
      await this.opts.beforeDelete?.(e.digest.value);
      // The owner keeps it if it is being served or filled, or was pushed or linked meanwhile.
      const unlink = e.names.map((name) => ({ repositories: this.cache, name }));
      const stillUnreferenced = async () => unchangedSince(await this.blobs.statInfo(e.digest), e, started);
      if ((await sweep.remove(e.digest, { unlink, stillUnreferenced })) !== true) {
        result.kept++;
        continue;
      }
      this.lastUse.delete(e.digest.value);
      total -= e.size;
      result.evicted++;
      result.evictedBytes += e.size;
    }
    result.cachedBytes = total;
    return result;
  }

  /** The blobs the cache links that no pushed content references, with their size and last use. */
  private async candidates(): Promise<Candidate[]> {
    const linked = new Map<string, { digest: Digest; names: string[] }>();
    for (const name of await this.cache.list()) {
      for (const d of await this.cache.listBlobLinks(name)) {
        const e = linked.get(d.value) ?? { digest: d, names: [] };
        e.names.push(name);
        linked.set(d.value, e);
      }
    }
    // Pushed content is not the cache's: blobs a pushed manifest references, and blobs pushed
    // to a repository whose manifest has not arrived yet, neither count nor go.
    const pushed = await referencedBlobs(this.blobs, this.pushed);
    for (const name of await this.pushed.list()) for (const d of await this.pushed.listBlobLinks(name)) pushed.add(d.value);
    const out: Candidate[] = [];
    for (const e of linked.values()) {
      if (pushed.has(e.digest.value)) continue;
      const info = await this.blobs.statInfo(e.digest);
      if (!info) continue;
      out.push({ ...e, size: info.size, used: this.lastUse.get(e.digest.value) ?? info.mtimeMs, ...(info.version !== undefined ? { version: info.version } : {}) });
    }
    return out;
  }
}


