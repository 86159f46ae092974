// Bounds the cache's size (`--max-cache-size`): when the blobs the cache holds exceed the
// bound, the least recently used are deleted until it is 90% full again, except blobs being
// served right now and blobs a pushed (:5000) image references. Cached manifests stay (they
// are small); a layer evicted from under one is fetched again on the next pull.
import type { BlobStore, Repositories } from '../storage/index.js';
import { referencedBlobs } from '../storage/index.js';
import type { Digest } from '../oci/index.js';

/** What one eviction pass did. */
export interface EvictionResult {
  cachedBytes: number;
  evicted: number;
  evictedBytes: number;
}

/** Least-recently-used eviction of cached blobs. */
export class CacheEvictor {
  private readonly lastUse = new Map<string, number>();
  private readonly readers = new Map<string, number>();
  private running: Promise<EvictionResult> | undefined;
  private again = false;

  constructor(
    private readonly blobs: BlobStore,
    private readonly cache: Repositories,
    private readonly pushed: Repositories,
    readonly maxBytes: number,
  ) {}

  /** Marks a blob as used now. */
  touch(digest: string): void {
    this.lastUse.set(digest, Date.now());
  }

  /** Counts a reader of `digest` until the returned function is called. */
  acquire(digest: string): () => void {
    this.touch(digest);
    this.readers.set(digest, (this.readers.get(digest) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.readers.get(digest) ?? 1) - 1;
      if (n <= 0) this.readers.delete(digest);
      else this.readers.set(digest, n);
    };
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
    const entries: Array<{ digest: Digest; names: string[]; size: number; used: number }> = [];
    let total = 0;
    for (const e of linked.values()) {
      if (pushed.has(e.digest.value)) continue;
      const info = await this.blobs.statInfo(e.digest);
      if (!info) continue;
      total += info.size;
      entries.push({ ...e, size: info.size, used: this.lastUse.get(e.digest.value) ?? info.mtimeMs });
    }
    const result: EvictionResult = { cachedBytes: total, evicted: 0, evictedBytes: 0 };
    if (total <= this.maxBytes) return result;
    const target = this.maxBytes * 0.9;
    entries.sort((a, b) => a.used - b.used);
    for (const e of entries) {
      if (total <= target) break;
      if (this.readers.has(e.digest.value)) continue;
      for (const name of e.names) await this.cache.unlinkBlob(name, e.digest);
      await this.blobs.delete(e.digest);
      this.lastUse.delete(e.digest.value);
      total -= e.size;
      result.evicted++;
      result.evictedBytes += e.size;
    }
    result.cachedBytes = total;
    return result;
  }
}

/** Parses a size such as `10G`, `512MiB`, `2000000`. */
export function parseSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$/i.exec(value.trim());
  if (!m) throw new Error(`"${value}" is not a size such as 10G or 512M`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * unit);
}

