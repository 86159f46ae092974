// The content-addressed blob store: blobs are written to a temp file while hashed, and
// become visible at their digest's path only after the digest is verified, the data
// fsynced and the file renamed into place. Concurrent writers of one digest are harmless:
// both hold the same bytes, and the first rename wins.
//
// On a shared bucket the blobs are the bucket's objects (a verified file is uploaded before it
// counts as published) and the files under the local root are read-through copies of them
// (local-copies.ts): served from local disk once fetched, dropped when the bound needs room.
import { open, stat, statfs, readdir, rm, utimes, type FileHandle } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import type { Hash } from 'node:crypto';
import { Layout } from './layout.js';
import { tempPath, publish, removeFile, isNotFound, writeFileAtomic } from './fs-util.js';
import { DigestMismatchError, SizeMismatchError, TooLargeError, BlobNotFoundError, StorageFullError } from './errors.js';
import { BlobLifetime, type BlobLink } from './blob-lifetime.js';
import type { BucketBlobs } from './backend.js';
import { LocalCopies } from './local-copies.js';
import { newHash, tryParseDigest, type Algorithm, type Digest } from '../oci/index.js';

/**
 * Size of the reads used to serve and hash blobs (node's own default for file streams). Each read
 * allocates a buffer of this size, garbage once written: at 1 MiB, 200 clients pulling kept tens
 * of MB more resident in the server (load test on Node 24: VmRSS peaks of 218-253 MB against
 * 179-216 MB at 64 KiB), without more throughput (test/faults/load-mixed.test.ts).
 */
const READ_CHUNK = 64 * 1024;

/** A blob as the store lists it. */
export interface BlobInfo {
  digest: Digest;
  size: number;
  mtimeMs: number;
  /** On a bucket: changes with every upload and touch (see BucketBlobs). */
  version?: string;
}

/**
 * Bytes gathered into one write while the previous write is in flight, at most: past this the
 * reader of `source` waits for the disk. Writing a request's 64 KiB chunks one by one through the
 * libuv threadpool cost 10-25% more CPU per byte pushed than gathering them (one thread hand-off
 * per write; bench/RESULTS.md, finding 8). Gathers of 1 MiB made pushes slower after the first
 * 512 MiB (the threadpool's kernel time tripled); 256 KiB held steady.
 */
const MAX_GATHERED = 256 * 1024;

/**
 * Writers at once beyond which chunks are no longer gathered (each waits for its own write, one
 * chunk in flight): with 200 uploads at once, gathering raised the load test's peak RSS from 228
 * to 244-252 MB (Node 24, limit 250; 218-221 MB with this bound), while the push bench's 4
 * uploads at a time keep the gain.
 */
const MAX_GATHERING_WRITERS = 16;

/** appendStream calls running now. */
let writers = 0;

/**
 * Appends every chunk of `source` to `fh` at `position`, updating `hash` (if any). Chunks that
 * arrive while a write is in flight are gathered into the next write (one `writev`), so a fast
 * source gets few large writes and a slow one is written as it comes; at most MAX_GATHERED bytes
 * wait. `onWritten` hears of bytes once they are in the file. Returns the number of bytes
 * written; on an error no write is left in flight. A failed write is reported when the next chunk
 * arrives or the source ends (a sender that stalls meanwhile is cut off by the body timeout).
 */
export async function appendStream(
  fh: FileHandle,
  source: AsyncIterable<Uint8Array>,
  hash: Hash | undefined,
  position: number,
  limit = Number.POSITIVE_INFINITY,
  onWritten?: (bytes: number) => void,
): Promise<number> {
  /** Bytes taken from `source`: handed to writes, or gathered for the next one. */
  let accepted = 0;
  let gathered: Uint8Array[] = [];
  let gatheredBytes = 0;
  let inFlight: Promise<void> | undefined;
  /** The first failure of a write or of onWritten: set in a write's callback, thrown by the loop. */
  const failure: { error?: unknown; happened: boolean } = { happened: false };
  const fail = (error: unknown): void => {
    if (!failure.happened) Object.assign(failure, { error, happened: true });
  };
  let stopped = false;
  const flush = (): void => {
    const buffers = gathered;
    const bytes = gatheredBytes;
    gathered = [];
    gatheredBytes = 0;
    inFlight = writeAllAt(fh, buffers, position + accepted - bytes).then(
      () => {
        inFlight = undefined;
        try {
          onWritten?.(bytes);
        } catch (error) {
          return fail(error);
        }
        if (gatheredBytes > 0 && !stopped) flush();
      },
      (error: unknown) => {
        inFlight = undefined;
        fail(error);
      },
    );
  };
  writers++;
  try {
    for await (const chunk of source) {
      if (failure.happened) throw failure.error;
      if (chunk.byteLength === 0) continue;
      if (position + accepted + chunk.byteLength > limit) throw new TooLargeError(limit);
      hash?.update(chunk);
      gathered.push(chunk);
      gatheredBytes += chunk.byteLength;
      accepted += chunk.byteLength;
      if (!inFlight) flush();
      else if (gatheredBytes >= MAX_GATHERED || writers > MAX_GATHERING_WRITERS) await inFlight;
    }
    // Each write's completion starts the next with what was gathered meanwhile.
    while (inFlight) await inFlight;
    if (failure.happened) throw failure.error;
    return accepted;
  } finally {
    writers--;
    stopped = true;
    while (inFlight) await inFlight;
  }
}

/** Writes `buffers` back to back at `position`, whatever the kernel takes per call. */
async function writeAllAt(fh: FileHandle, buffers: Uint8Array[], position: number): Promise<void> {
  let rest = buffers;
  let at = position;
  while (rest.length > 0) {
    let { bytesWritten } = await fh.writev(rest, at);
    if (bytesWritten === 0) throw new Error('the file system accepted no bytes');
    at += bytesWritten;
    const left: Uint8Array[] = [];
    for (const b of rest) {
      if (bytesWritten >= b.byteLength) bytesWritten -= b.byteLength;
      else {
        left.push(bytesWritten > 0 ? b.subarray(bytesWritten) : b);
        bytesWritten = 0;
      }
    }
    rest = left;
  }
}

/** Hashes a whole file (used when an upload's running hash was lost with a restart). */
export async function hashFile(path: string, algorithm: Algorithm): Promise<{ hex: string; size: number }> {
  const hash = newHash(algorithm);
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: READ_CHUNK })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).byteLength;
  }
  return { hex: hash.digest('hex'), size };
}

/** Writes one new blob: stream into it, then `commit(expected)` or `cancel()`. */
export class BlobWriter {
  private readonly hash: Hash;
  private size = 0;
  private done = false;

  private constructor(
    private readonly store: BlobStore,
    private readonly fh: FileHandle,
    /** The temp file being written (readers may follow it while it grows). */
    readonly path: string,
    readonly algorithm: Algorithm,
  ) {
    this.hash = newHash(algorithm);
  }

  /** Opens a writer on a fresh temp file. */
  static async create(store: BlobStore, tmpDir: string, algorithm: Algorithm): Promise<BlobWriter> {
    const path = tempPath(tmpDir);
    const fh = await open(path, 'wx');
    return new BlobWriter(store, fh, path, algorithm);
  }

  /** Bytes written so far. */
  get written(): number {
    return this.size;
  }

  /** Appends a stream of bytes; throws TooLargeError past `limit` total bytes. `onWritten` hears of bytes once they are in the file. */
  async write(source: AsyncIterable<Uint8Array>, limit?: number, onWritten?: (bytes: number) => void): Promise<void> {
    this.size += await appendStream(this.fh, source, this.hash, this.size, limit, onWritten);
  }

  /**
   * Verifies the content against `expected` (and `expectedSize`), fsyncs it and publishes
   * it at its digest's path, linked into `link` in the same step (see BlobLifetime). On a
   * mismatch the temp file is removed and the error thrown.
   */
  async commit(expected?: Digest, expectedSize?: number, link?: BlobLink): Promise<{ digest: Digest; size: number }> {
    const hex = this.hash.digest('hex');
    const digest = tryParseDigest(`${this.algorithm}:${hex}`)!;
    try {
      if (expected && expected.value !== digest.value) throw new DigestMismatchError(expected.value, digest.value);
      if (expectedSize !== undefined && expectedSize !== this.size) throw new SizeMismatchError(expectedSize, this.size);
      await this.fh.sync();
      await this.fh.close();
      this.done = true;
      await this.store.lifetime.publishFile(this.path, digest, link);
      return { digest, size: this.size };
    } catch (err) {
      await this.cancel();
      throw err;
    }
  }

  /** Abandons the blob and removes its temp file; safe to call more than once. */
  async cancel(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.fh.close().catch(() => {});
    }
    await removeFile(this.path).catch(() => {});
  }
}

/**
 * Content-addressed blob storage under one {@link Layout}. Reads are its own; every change to
 * which blobs exist goes through its {@link BlobLifetime} (placeFile, placeBytes and removeBlob
 * are that owner's tools, called under a digest's lock).
 */
export class BlobStore {
  /** The single owner of blob lifetime over this store. */
  readonly lifetime: BlobLifetime;
  /** On a bucket: this server's read-through copies of its blobs (none with a bound of 0: every read goes to the bucket). */
  readonly copies: LocalCopies | undefined;

  /** `bucket`: the shared bucket whose objects are the blobs (absent: the files under `layout` are). */
  constructor(
    readonly layout: Layout,
    readonly bucket?: BucketBlobs,
    opts: { localCopiesBytes?: number } = {},
  ) {
    this.lifetime = new BlobLifetime(this);
    this.copies = bucket && opts.localCopiesBytes !== 0 ? new LocalCopies(layout, bucket, opts.localCopiesBytes) : undefined;
  }

  /** Size of a committed blob, or undefined when the store does not hold it. */
  async stat(d: Digest): Promise<number | undefined> {
    if (this.bucket) return (await this.copies?.stat(d)) ?? (await this.bucket.head(d))?.size;
    return this.statLocal(d);
  }

  /**
   * Size of blob `d` where it is kept for good (on a bucket: the bucket, not a local copy that
   * may outlive it), for decisions of the lifetime owner: a mount links only what is there.
   */
  async statDurable(d: Digest): Promise<number | undefined> {
    if (this.bucket) return (await this.bucket.head(d))?.size;
    return this.statLocal(d);
  }

  private async statLocal(d: Digest): Promise<number | undefined> {
    try {
      return (await stat(this.layout.blob(d))).size;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Size and modification time of a committed blob, or undefined. */
  async statInfo(d: Digest): Promise<{ size: number; mtimeMs: number; version?: string } | undefined> {
    if (this.bucket) return this.bucket.head(d);
    try {
      const s = await stat(this.layout.blob(d));
      return { size: s.size, mtimeMs: s.mtimeMs };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** A stream of the blob's bytes `[start, end]` (inclusive), or all of it. */
  openRead(d: Digest, range?: { start: number; end: number }): Readable {
    const local = () => createReadStream(this.layout.blob(d), { highWaterMark: READ_CHUNK, ...range });
    if (!this.bucket) return local();
    if (!this.copies) {
      const out = new PassThrough({ highWaterMark: READ_CHUNK });
      this.bucket.read(d, range).then(
        (body) => pipeline(body, out, () => {}),
        (err: unknown) => out.destroy(err as Error),
      );
      return out;
    }
    const out = new PassThrough({ highWaterMark: READ_CHUNK });
    this.copies.ensure(d).then(
      () => pipeline(local(), out, () => {}),
      (err: unknown) => out.destroy(err as Error),
    );
    return out;
  }

  /**
   * Opens a committed blob's file for reading (the blob GET reads it into buffers of its own),
   * or undefined when the store no longer holds it. The caller closes the handle.
   */
  async openFile(d: Digest): Promise<FileHandle | undefined> {
    if (!this.servesFiles) return undefined;
    if (this.copies) {
      // A copy dropped (trimmed for room) between its fetch and this open is fetched once more.
      for (let attempt = 0; ; attempt++) {
        try {
          await this.copies.ensure(d);
        } catch (err) {
          if (err instanceof BlobNotFoundError) return undefined;
          throw err;
        }
        try {
          return await open(this.layout.blob(d), 'r');
        } catch (err) {
          if (!isNotFound(err) || attempt > 0) throw err;
        }
      }
    }
    try {
      return await open(this.layout.blob(d), 'r');
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** False when blobs are read from a bucket without local copies: no file to open, {@link openRead} streams. */
  get servesFiles(): boolean {
    return !this.bucket || this.copies !== undefined;
  }

  /** Reads a whole (small) blob into memory: manifests and configs only. */
  async readSmall(d: Digest, limit: number): Promise<Buffer> {
    if (this.bucket && (await this.copies?.stat(d)) === undefined) return this.readSmallFromBucket(this.bucket, d, limit);
    let fh: FileHandle;
    try {
      fh = await open(this.layout.blob(d), 'r');
    } catch (err) {
      if (!isNotFound(err)) throw err;
      // On a bucket the local copy may have been dropped since it was seen: the bucket has it.
      if (this.bucket) return this.readSmallFromBucket(this.bucket, d, limit);
      throw new BlobNotFoundError(d.value);
    }
    try {
      const { size } = await fh.stat();
      if (size > limit) throw new TooLargeError(limit);
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  }

  /** Reads a small blob from the bucket without keeping a local copy (manifests are cached in memory above). */
  private async readSmallFromBucket(bucket: BucketBlobs, d: Digest, limit: number): Promise<Buffer> {
    const head = await bucket.head(d);
    if (!head) throw new BlobNotFoundError(d.value);
    if (head.size > limit) throw new TooLargeError(limit);
    const chunks: Buffer[] = [];
    for await (const chunk of await bucket.read(d)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /**
   * Starts writing a new blob. With `expectedSize` (announced by the client or the upstream),
   * throws StorageFullError at once when the file system has not that much room left, instead
   * of failing after part of it was received (and, for a cache fill, streamed to a client).
   */
  async createWriter(algorithm: Algorithm = 'sha256', expectedSize?: number): Promise<BlobWriter> {
    if (expectedSize !== undefined && expectedSize > 0) {
      const fs = await statfs(this.layout.tmpDir);
      const available = fs.bavail * fs.bsize;
      if (expectedSize > available) throw new StorageFullError(expectedSize, available);
    }
    return BlobWriter.create(this, this.layout.tmpDir, algorithm);
  }

  /** Stores bytes already in memory (and already verified to hash to `d`), through the lifetime owner. */
  putBytes(d: Digest, data: Uint8Array, link?: BlobLink): Promise<void> {
    return this.lifetime.putBytes(d, data, link);
  }

  /**
   * Takes a file made elsewhere (a restored pack) into the store as blob `d`: only a regular
   * file whose bytes hash to `d`, fsynced, then published. Returns its size, or undefined
   * when it is not `d` (the file is then left to the caller).
   */
  async adoptFile(path: string, d: Digest): Promise<number | undefined> {
    const fh = await open(path, 'r');
    let size: number;
    try {
      const st = await fh.stat();
      if (!st.isFile()) return undefined;
      const hash = newHash(d.algorithm);
      for await (const chunk of fh.createReadStream({ highWaterMark: READ_CHUNK, autoClose: false })) hash.update(chunk as Buffer);
      if (hash.digest('hex') !== d.hex) return undefined;
      await fh.sync();
      size = st.size;
    } finally {
      await fh.close();
    }
    await this.lifetime.publishFile(path, d);
    return size;
  }

  /**
   * BlobLifetime's tool (under `d`'s lock): publishes a verified, fsynced file at the digest's
   * path, or removes it when the blob is there already (first writer wins; true then).
   */
  async placeFile(path: string, d: Digest): Promise<boolean> {
    if (this.bucket) {
      const { size } = await stat(path);
      const there = await this.bucket.putFile(path, d, size);
      await this.placeLocalCopy(path, d, size);
      return there;
    }
    if ((await this.stat(d)) !== undefined) {
      await removeFile(path);
      return true;
    }
    await publish(path, this.layout.blob(d));
    return false;
  }

  /** BlobLifetime's tool (under `d`'s lock): makes bucket object `key` blob `d`; true when it was there already. */
  placeObject(key: string, d: Digest, size: number): Promise<boolean> {
    if (!this.bucket) throw new Error('placeObject needs a bucket');
    return this.bucket.copyIn(key, d, size);
  }

  /** BlobLifetime's tool (under `d`'s lock): writes verified bytes as blob `d`; true when it was there already. */
  async placeBytes(d: Digest, data: Uint8Array): Promise<boolean> {
    if (this.bucket) {
      const there = await this.bucket.putBytes(d, data);
      if (this.copies && (await this.copies.stat(d)) === undefined) {
        await writeFileAtomic(this.layout.tmpDir, this.layout.blob(d), data);
        await this.copies.placed(d, data.byteLength);
      }
      return there;
    }
    if ((await this.stat(d)) !== undefined) return true;
    await writeFileAtomic(this.layout.tmpDir, this.layout.blob(d), data);
    return false;
  }

  /** BlobLifetime's tool (under `d`'s lock): removes blob `d`; true when it existed. */
  async removeBlob(d: Digest): Promise<boolean> {
    if (!this.bucket) return removeFile(this.layout.blob(d));
    const existed = await this.bucket.remove(d);
    await this.copies?.drop(d);
    return existed;
  }

  /** BlobLifetime's tool: blob `d` was referenced now, so a gc grace period counts from now. */
  async freshen(d: Digest): Promise<void> {
    if (this.bucket) return this.bucket.touch(d);
    const now = new Date();
    await utimes(this.layout.blob(d), now, now).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }

  /** On a bucket: keeps the uploaded file as this server's local copy (or drops it when one exists). */
  private async placeLocalCopy(path: string, d: Digest, size: number): Promise<void> {
    if (!this.copies || (await this.copies.stat(d)) !== undefined) {
      await removeFile(path);
      return;
    }
    await publish(path, this.layout.blob(d));
    await this.copies.placed(d, size);
  }

  /** Every committed blob, for garbage collection and scans. */
  async *list(): AsyncGenerator<BlobInfo> {
    if (this.bucket) {
      yield* this.bucket.list();
      return;
    }
    for (const algorithm of await readdirOrEmpty(this.layout.blobsDir)) {
      const algDir = `${this.layout.blobsDir}/${algorithm}`;
      for (const prefix of await readdirOrEmpty(algDir)) {
        for (const hex of await readdirOrEmpty(`${algDir}/${prefix}`)) {
          const digest = tryParseDigest(`${algorithm}:${hex}`);
          if (!digest) continue;
          try {
            const s = await stat(`${algDir}/${prefix}/${hex}`);
            yield { digest, size: s.size, mtimeMs: s.mtimeMs };
          } catch (err) {
            if (!isNotFound(err)) throw err;
          }
        }
      }
    }
  }

  /** Empties tmp/ of anything a crash left behind. */
  async clearTemp(): Promise<number> {
    const names = await readdirOrEmpty(this.layout.tmpDir);
    await Promise.all(names.map((n) => rm(`${this.layout.tmpDir}/${n}`, { force: true, recursive: true })));
    return names.length;
  }
}

/** Entries of a directory, or none when it does not exist. */
export async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}
