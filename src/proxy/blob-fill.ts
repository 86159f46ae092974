// One download of a blob from upstream into the store, shared by every client that asks
// for it while it runs. Bytes are hashed and written to a temp file; each client reads
// that file behind the writer as it grows (latecomers start at once, from byte 0), and
// the final bytes are held back until the digest checks, so a client never receives a
// complete wrong blob: on a mismatch every reader is destroyed and nothing is stored.
// A client that disconnects only stops its own reader; the fill goes on.
import { Readable } from 'node:stream';
import { open, type FileHandle } from 'node:fs/promises';
import type { BlobStore, BlobWriter } from '../storage/index.js';
import { RegistryError, type Digest } from '../oci/index.js';

/** Bytes withheld from readers until the blob is verified. */
const HOLDBACK = 64 * 1024;
const READ_CHUNK = 1024 * 1024;
/**
 * While the download runs, a reader waits until this much is readable before it reads: one
 * read and one socket write per 256 KiB instead of one per upstream chunk (~16-64 KiB).
 */
const MIN_READ = 256 * 1024;

/** Where a fill stands. */
export type FillState = 'filling' | 'committed' | 'failed';

/** The upstream side of a fill: its announced size and its body. */
export interface FillSource {
  size: number | undefined;
  body: AsyncIterable<Uint8Array> & { destroy?(err?: Error): void };
}

/** A shared, verified download of one blob. */
export class BlobFill {
  state: FillState = 'filling';
  error: Error | undefined;
  written = 0;
  private readonly waiters = new Set<() => void>();
  readonly done: Promise<void>;

  private constructor(
    readonly digest: Digest,
    readonly size: number | undefined,
    private readonly writer: BlobWriter,
    private readonly blobs: BlobStore,
    private readonly source: FillSource,
    onBytes?: (n: number) => void,
  ) {
    this.done = this.run(source, onBytes);
  }

  /** Stops the download (server shutdown): the fill fails, nothing is stored. */
  abort(): void {
    if (this.state === 'filling') this.source.body.destroy?.(new Error('aborted: the server is stopping'));
  }

  /** Starts filling `digest` from `source` into `blobs`. */
  static async start(blobs: BlobStore, digest: Digest, source: FillSource, onBytes?: (n: number) => void): Promise<BlobFill> {
    // With the size announced, a blob that cannot fit fails here, before a client got any answer.
    const writer = await blobs.createWriter(digest.algorithm, source.size);
    return new BlobFill(digest, source.size, writer, blobs, source, onBytes);
  }

  private async run(source: FillSource, onBytes?: (n: number) => void): Promise<void> {
    try {
      // Readers follow the temp file: `written` counts only bytes already in it.
      await this.writer.write(source.body, this.size, (n) => {
        this.written += n;
        onBytes?.(n);
        this.notify();
      });
      await this.writer.commit(this.digest, this.size);
      this.state = 'committed';
    } catch (err) {
      this.error = err as Error;
      this.state = 'failed';
      source.body.destroy?.();
      await this.writer.cancel();
    } finally {
      this.notify();
    }
  }

  private notify(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
  }

  private progress(): Promise<void> {
    return new Promise((resolve) => this.waiters.add(resolve));
  }

  /** True when the whole blob fits in the held-back tail: readers get none of it before it is verified. */
  get heldBackWhole(): boolean {
    return this.size !== undefined && this.size <= HOLDBACK;
  }

  /** How far readers may read now: all once verified, else all but the held-back tail. */
  private readable(): number {
    if (this.state === 'committed') return this.written;
    const limit = (this.size ?? this.written) - HOLDBACK;
    return Math.max(0, Math.min(this.written, limit));
  }

  /** A reader of bytes `[start, end]` (inclusive; default all) that follows the download. */
  reader(range?: { start: number; end: number }): Readable {
    const fill = this;
    let fh: FileHandle | undefined;
    let pos = range?.start ?? 0;
    const last = range ? range.end + 1 : undefined;
    return new Readable({
      highWaterMark: READ_CHUNK,
      async read() {
        try {
          fh ??= await fill.open();
          for (;;) {
            const end = last ?? (fill.state === 'committed' ? fill.written : Number.POSITIVE_INFINITY);
            if (pos >= end) {
              this.push(null);
              return;
            }
            if (fill.state === 'failed') throw fill.failure();
            const allowed = Math.min(fill.readable(), end);
            const enough = allowed >= end || fill.state !== 'filling' || allowed - pos >= MIN_READ;
            if (pos < allowed && enough) {
              const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, allowed - pos));
              const { bytesRead } = await fh.read(buf, 0, buf.byteLength, pos);
              if (bytesRead === 0) throw new Error('blob file ended early');
              pos += bytesRead;
              this.push(bytesRead === buf.byteLength ? buf : buf.subarray(0, bytesRead));
              return;
            }
            await fill.progress();
          }
        } catch (err) {
          this.destroy(err as Error);
        }
      },
      destroy(err, cb) {
        const closing = fh?.close();
        fh = undefined;
        if (closing) closing.then(() => cb(err), () => cb(err));
        else cb(err);
      },
    });
  }

  /**
   * Opens the file being written, or the blob once the fill published it. Publication renames
   * the verified file before it returns (it fsyncs the directory after), so the temp file can
   * be gone while the state still says 'filling'; the blob's path only ever holds verified bytes.
   */
  private async open(): Promise<FileHandle> {
    try {
      return await open(this.writer.path, 'r');
    } catch (err) {
      if (this.state === 'failed') throw this.failure();
      return open(this.blobs.layout.blob(this.digest), 'r').catch(() => Promise.reject(err));
    }
  }

  /** What a reader of a failed fill ends with: the upstream is to blame, so 503, never a wrong blob. */
  failure(): RegistryError {
    return new RegistryError('UNAVAILABLE', 'the upstream download of this blob failed', { cause: this.error });
  }
}
