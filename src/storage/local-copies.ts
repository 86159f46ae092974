// Read-through copies of a bucket's blobs on this server's disk, for a storage on a shared
// bucket: a blob served is fetched from the bucket once (concurrent readers share the fetch),
// verified against its digest, and kept under the local root's blobs/ so that hot layers are
// served from local files. The copies are bounded in bytes; the least recently used go first.
// A copy is never the blob itself: removing one frees local disk and changes nothing in the
// bucket, so it needs no lifetime lock (a reader that has the file open keeps reading it).
import { open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { BucketBlobs } from './backend.js';
import type { Layout } from './layout.js';
import { DigestMismatchError, StorageUnavailableError } from './errors.js';
import { isNotFound, publish, removeFile, tempPath } from './fs-util.js';
import { SingleFlight } from '../shared/index.js';
import { newHash, tryParseDigest, type Digest } from '../oci/index.js';

/** Default bound of the local copies: 10 GiB. */
export const DEFAULT_LOCAL_COPIES_BYTES = 10 * 1024 * 1024 * 1024;

/** The local copies of one server. */
export class LocalCopies {
  /** Copies by digest, least recently used first (a Map keeps insertion order). */
  private readonly copies = new Map<string, { digest: Digest; size: number }>();
  private bytes = 0;
  private readonly fetches = new SingleFlight<void>();
  /** Blob fetches from the bucket since start, and bytes they carried (for the bench and stats). */
  fetched = { count: 0, bytes: 0 };

  constructor(
    private readonly layout: Layout,
    private readonly bucket: BucketBlobs,
    readonly maxBytes: number = DEFAULT_LOCAL_COPIES_BYTES,
  ) {}

  /** Learns the copies a previous run left (oldest access first, by mtime), trimming to the bound. */
  async scan(): Promise<void> {
    const found: Array<{ digest: Digest; size: number; mtimeMs: number }> = [];
    for (const algorithm of await readdirOr(this.layout.blobsDir)) {
      for (const prefix of await readdirOr(join(this.layout.blobsDir, algorithm))) {
        for (const hex of await readdirOr(join(this.layout.blobsDir, algorithm, prefix))) {
          const digest = tryParseDigest(`${algorithm}:${hex}`);
          const s = digest && (await stat(this.layout.blob(digest)).catch(() => undefined));
          if (digest && s) found.push({ digest, size: s.size, mtimeMs: s.mtimeMs });
        }
      }
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const f of found) this.remember(f.digest, f.size);
    await this.trim();
  }

  /** Size of the local copy of `d`, or undefined (marks it used). */
  async stat(d: Digest): Promise<number | undefined> {
    try {
      const size = (await stat(this.layout.blob(d))).size;
      this.remember(d, size);
      return size;
    } catch (err) {
      if (isNotFound(err)) {
        this.forget(d);
        return undefined;
      }
      throw err;
    }
  }

  /** Makes sure a local copy of `d` exists, fetching it from the bucket (once for concurrent callers). */
  async ensure(d: Digest): Promise<void> {
    if ((await this.stat(d)) !== undefined) return;
    await this.fetches.run(d.value, () => this.fetch(d)).promise;
  }

  /** Records a copy just placed at `d`'s path (a blob published through this server). */
  async placed(d: Digest, size: number): Promise<void> {
    this.remember(d, size);
    await this.trim(d);
  }

  /** Drops the copy of `d` (the blob was removed from the bucket). */
  async drop(d: Digest): Promise<void> {
    this.forget(d);
    await removeFile(this.layout.blob(d));
  }

  /** Bytes held in local copies now. */
  get heldBytes(): number {
    return this.bytes;
  }

  private async fetch(d: Digest): Promise<void> {
    const tmp = tempPath(this.layout.tmpDir);
    const fh = await open(tmp, 'wx');
    let size = 0;
    try {
      const hash = newHash(d.algorithm);
      try {
        const body = await this.bucket.read(d);
        try {
          for await (const chunk of body) {
            const buf = chunk as Buffer;
            hash.update(buf);
            await fh.write(buf);
            size += buf.byteLength;
          }
        } catch (err) {
          // The body broke off (the service went away mid-blob); a local write error stays as it is.
          if ((err as NodeJS.ErrnoException).syscall === 'write') throw err;
          throw new StorageUnavailableError(this.bucket.location, `reading blob ${d.value}`, (err as Error).message, { cause: err });
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      const hex = hash.digest('hex');
      if (hex !== d.hex) throw new DigestMismatchError(d.value, `${d.algorithm}:${hex}`);
      await publish(tmp, this.layout.blob(d));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    this.fetched.count++;
    this.fetched.bytes += size;
    await this.placed(d, size);
  }

  private remember(d: Digest, size: number): void {
    const had = this.copies.get(d.value);
    if (had) {
      this.copies.delete(d.value);
      this.bytes -= had.size;
    }
    this.copies.set(d.value, { digest: d, size });
    this.bytes += size;
  }

  private forget(d: Digest): void {
    const had = this.copies.get(d.value);
    if (!had) return;
    this.copies.delete(d.value);
    this.bytes -= had.size;
  }

  /** Removes the least recently used copies until the bound holds (never `keep`, just placed). */
  private async trim(keep?: Digest): Promise<void> {
    for (const [key, copy] of this.copies) {
      if (this.bytes <= this.maxBytes) return;
      if (key === keep?.value) continue;
      await this.drop(copy.digest);
    }
  }
}

async function readdirOr(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}
