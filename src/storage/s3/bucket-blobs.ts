// Blob bytes in a bucket, named by digest (keys.ts draws the layout). A blob is written once:
// a put that finds it (HEAD) does nothing, and one that races another server's put of the same
// digest either wins or gets 412, which is as good (the bytes are the same: the digest names
// them). Files up to the multipart threshold are one PutObject streamed from disk; bigger ones
// a multipart upload whose parts are ranges of the file, a few in flight at once. A blob's time
// is the later of its upload and its last touch (an empty object beside it, rewritten on each
// touch), so a reference does not rewrite the bytes. S3 keeps those times in whole seconds: a
// time given out is the last millisecond of its second, so that a touch is never taken for older
// than it may be (a gc re-check compares it with its own cutoff).
import { createReadStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Digest } from '../../oci/index.js';
import type { BucketBlobs, StoredBlobInfo } from '../backend.js';
import { BlobNotFoundError } from '../errors.js';
import { isConditionFailed, isNotFound, storageError } from './errors.js';
import { blobKey, condemnedKey, digestOfBlobKey, digestOfTouchKey, touchKey } from './keys.js';
import { listObjects, unquoted } from './listing.js';
import type { S3Location } from './location.js';

/** Files above this size are uploaded in parts: 64 MiB. */
export const DEFAULT_MULTIPART_THRESHOLD = 64 * 1024 * 1024;
/** The size of a part (the last one is smaller): 16 MiB. */
export const DEFAULT_PART_SIZE = 16 * 1024 * 1024;
/** Parts in flight at once, per upload. */
export const DEFAULT_PART_CONCURRENCY = 4;
/** S3 takes at most this many parts; a bigger file gets bigger parts. */
const MAX_PARTS = 10_000;
/** The largest object CopyObject copies in one request: 5 GiB. */
const MAX_COPY_OBJECT = 5 * 1024 * 1024 * 1024;
/** Parts of a copy past that: 1 GiB. */
const COPY_PART_SIZE = 1024 * 1024 * 1024;

/** The last millisecond of the second `ms` falls in (S3's times are whole seconds). */
function endOfSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000 + 999;
}

/** S3's smallest part but the last. */
const MIN_PART_SIZE = 5 * 1024 * 1024;

/** Options of {@link S3BucketBlobs}. */
export interface S3BucketBlobsOptions {
  /** Files bigger than this are uploaded in parts (default {@link DEFAULT_MULTIPART_THRESHOLD}). */
  multipartThreshold?: number;
  /** The size of a part, at least 5 MiB (default {@link DEFAULT_PART_SIZE}). */
  partSize?: number;
  /** Parts uploaded at once (default {@link DEFAULT_PART_CONCURRENCY}). */
  partConcurrency?: number;
}

/** The blobs of a storage on S3, under its location's prefix. */
export class S3BucketBlobs implements BucketBlobs {
  readonly location: string;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly partConcurrency: number;

  constructor(private readonly s3: S3Location, opts: S3BucketBlobsOptions = {}) {
    this.location = s3.url;
    this.multipartThreshold = opts.multipartThreshold ?? DEFAULT_MULTIPART_THRESHOLD;
    this.partSize = Math.max(opts.partSize ?? DEFAULT_PART_SIZE, MIN_PART_SIZE);
    this.partConcurrency = Math.max(1, opts.partConcurrency ?? DEFAULT_PART_CONCURRENCY);
  }

  async head(d: Digest): Promise<{ size: number; mtimeMs: number; version: string } | undefined> {
    const [blob, touch] = await Promise.all([this.headObject(blobKey(d)), this.headObject(touchKey(d))]);
    if (!blob) return undefined;
    return { size: blob.size, mtimeMs: endOfSecond(Math.max(blob.mtimeMs, touch?.mtimeMs ?? 0)), version: `${blob.etag}/${touch?.etag ?? ''}` };
  }

  async condemn(d: Digest): Promise<void> {
    const key = condemnedKey(d);
    try {
      await this.s3.client.send(new PutObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(key), Body: '', ContentLength: 0 }));
    } catch (err) {
      throw storageError(err, this.s3, `PutObject ${key}`);
    }
  }

  async acquit(d: Digest): Promise<void> {
    await this.deleteObject(condemnedKey(d));
  }

  async isCondemned(d: Digest): Promise<boolean> {
    return (await this.headObject(condemnedKey(d))) !== undefined;
  }

  async copyIn(sourceKey: string, d: Digest, size: number): Promise<boolean> {
    if (await this.headObject(blobKey(d))) return true;
    const key = this.fullKey(blobKey(d));
    const source = `${this.s3.bucket}/${this.fullKey(sourceKey).split('/').map(encodeURIComponent).join('/')}`;
    try {
      if (size <= MAX_COPY_OBJECT) {
        await this.s3.client.send(new CopyObjectCommand({ Bucket: this.s3.bucket, Key: key, CopySource: source }));
        return false;
      }
      // Past CopyObject's 5 GiB: a multipart upload whose parts are copied ranges of the source.
      const { UploadId } = await this.s3.client.send(new CreateMultipartUploadCommand({ Bucket: this.s3.bucket, Key: key }));
      try {
        const parts: CompletedPart[] = [];
        for (let start = 0, n = 1; start < size; start += COPY_PART_SIZE, n++) {
          const end = Math.min(size, start + COPY_PART_SIZE) - 1;
          const out = await this.s3.client.send(
            new UploadPartCopyCommand({ Bucket: this.s3.bucket, Key: key, UploadId, PartNumber: n, CopySource: source, CopySourceRange: `bytes=${start}-${end}` }),
          );
          parts.push({ PartNumber: n, ETag: out.CopyPartResult?.ETag });
        }
        await this.s3.client.send(new CompleteMultipartUploadCommand({ Bucket: this.s3.bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
      } catch (err) {
        await this.s3.client.send(new AbortMultipartUploadCommand({ Bucket: this.s3.bucket, Key: key, UploadId })).catch(() => {});
        throw err;
      }
      return false;
    } catch (err) {
      throw storageError(err, this.s3, `CopyObject ${sourceKey} to ${blobKey(d)}`);
    }
  }

  async putFile(path: string, d: Digest, size: number): Promise<boolean> {
    if (await this.headObject(blobKey(d))) return true;
    if (size <= this.multipartThreshold) {
      return this.putObject(d, createReadStream(path), size);
    }
    await this.putMultipart(path, d, size);
    return false;
  }

  async putBytes(d: Digest, data: Uint8Array): Promise<boolean> {
    if (await this.headObject(blobKey(d))) return true;
    return this.putObject(d, data, data.byteLength);
  }

  async read(d: Digest, range?: { start: number; end: number }): Promise<Readable> {
    const key = blobKey(d);
    try {
      const out = await this.s3.client.send(
        new GetObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(key), ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }),
      );
      return out.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) throw new BlobNotFoundError(d.value);
      throw storageError(err, this.s3, `GetObject ${key}`);
    }
  }

  async remove(d: Digest): Promise<boolean> {
    const existed = (await this.headObject(blobKey(d))) !== undefined;
    // The touch record goes too, found or not: a touch may have outlived a blob removed before.
    await Promise.all([this.deleteObject(blobKey(d)), this.deleteObject(touchKey(d))]);
    return existed;
  }

  /**
   * Every blob, in digest order. Both listings come in key order, which is (algorithm, hex)
   * order for blob and touch keys alike, so each blob meets its touch record in one pass.
   */
  async *list(): AsyncGenerator<StoredBlobInfo> {
    const touches = this.touches();
    try {
      let touch = await touches.next();
      for await (const o of listObjects(this.s3, this.fullKey('blobs/'))) {
        const digest = digestOfBlobKey(o.key);
        if (!digest) continue;
        const order = orderKey(digest);
        while (!touch.done && touch.value.order < order) touch = await touches.next();
        const touched = !touch.done && touch.value.order === order ? touch.value : undefined;
        yield { digest, size: o.size, mtimeMs: endOfSecond(Math.max(o.mtimeMs, touched?.mtimeMs ?? 0)), version: `${o.etag}/${touched?.etag ?? ''}` };
      }
    } finally {
      await touches.return(undefined);
    }
  }

  async touch(d: Digest): Promise<void> {
    const key = touchKey(d);
    // A body of its own, so that the touch's ETag (the blob's version) changes even within a second.
    const body = `${Date.now()} ${randomBytes(8).toString('hex')}`;
    try {
      await this.s3.client.send(new PutObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(key), Body: body, ContentLength: Buffer.byteLength(body) }));
    } catch (err) {
      throw storageError(err, this.s3, `PutObject ${key}`);
    }
  }

  async presign(d: Digest, seconds: number): Promise<string> {
    return getSignedUrl(this.s3.client, new GetObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(blobKey(d)) }), { expiresIn: seconds });
  }

  private fullKey(key: string): string {
    return `${this.s3.prefix}${key}`;
  }

  private async *touches(): AsyncGenerator<{ order: string; mtimeMs: number; etag: string }> {
    for await (const o of listObjects(this.s3, this.fullKey('touched/'))) {
      const digest = digestOfTouchKey(o.key);
      if (digest) yield { order: orderKey(digest), mtimeMs: o.mtimeMs, etag: o.etag };
    }
  }

  private async headObject(key: string): Promise<{ size: number; mtimeMs: number; etag: string } | undefined> {
    try {
      const out = await this.s3.client.send(new HeadObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(key) }));
      return { size: out.ContentLength ?? 0, mtimeMs: out.LastModified?.getTime() ?? 0, etag: unquoted(out.ETag) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError(err, this.s3, `HeadObject ${key}`);
    }
  }

  private async deleteObject(key: string): Promise<void> {
    try {
      await this.s3.client.send(new DeleteObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(key) }));
    } catch (err) {
      throw storageError(err, this.s3, `DeleteObject ${key}`);
    }
  }

  /** One PutObject unless the blob exists; true when another writer put it first (412). */
  private async putObject(d: Digest, body: Readable | Uint8Array, size: number): Promise<boolean> {
    const key = blobKey(d);
    try {
      await this.s3.client.send(
        new PutObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(key), Body: body, ContentLength: size, ContentType: 'application/octet-stream', IfNoneMatch: '*' }),
      );
      return false;
    } catch (err) {
      if (isConditionFailed(err)) return true;
      throw storageError(err, this.s3, `PutObject ${key}`);
    } finally {
      if (!(body instanceof Uint8Array)) body.destroy();
    }
  }

  /**
   * A multipart upload of the file's ranges, `partConcurrency` at a time. Not conditional (Ceph
   * 16 ignores If-None-Match on CompleteMultipartUpload): a racing upload of the same digest
   * replaces the object with the same bytes. A failed upload is aborted, its parts freed.
   */
  private async putMultipart(path: string, d: Digest, size: number): Promise<void> {
    const key = blobKey(d);
    const Bucket = this.s3.bucket;
    const Key = this.fullKey(key);
    let uploadId: string | undefined;
    try {
      uploadId = (await this.s3.client.send(new CreateMultipartUploadCommand({ Bucket, Key, ContentType: 'application/octet-stream' }))).UploadId;
      if (!uploadId) throw new Error(`CreateMultipartUpload of ${key} answered no UploadId`);
      const partSize = Math.max(this.partSize, Math.ceil(size / MAX_PARTS));
      const count = Math.ceil(size / partSize);
      const parts: CompletedPart[] = new Array(count);
      let next = 0;
      let failed = false;
      const worker = async (): Promise<void> => {
        while (next < count && !failed) {
          const i = next++;
          const start = i * partSize;
          const end = Math.min(size, start + partSize) - 1;
          const body = createReadStream(path, { start, end });
          try {
            const out = await this.s3.client.send(
              new UploadPartCommand({ Bucket, Key, UploadId: uploadId, PartNumber: i + 1, Body: body, ContentLength: end - start + 1 }),
            );
            parts[i] = { PartNumber: i + 1, ETag: out.ETag };
          } catch (err) {
            failed = true;
            throw err;
          } finally {
            body.destroy();
          }
        }
      };
      // Every worker settles before the upload is completed or aborted.
      const settled = await Promise.allSettled(Array.from({ length: Math.min(this.partConcurrency, count) }, worker));
      const rejected = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (rejected) throw rejected.reason;
      await this.s3.client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId: uploadId, MultipartUpload: { Parts: parts } }));
      uploadId = undefined;
    } catch (err) {
      if (uploadId) {
        await this.s3.client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId: uploadId })).catch(() => {});
      }
      throw storageError(err, this.s3, `multipart upload of ${key}`);
    }
    // Ceph 16 answers CompleteMultipartUpload with an empty ETag; a HEAD sees the object as stored.
    const stored = await this.headObject(key);
    if (stored?.size !== size) throw new Error(`multipart upload of ${key} to ${this.location} left ${stored ? `${stored.size} bytes` : 'no object'}, not ${size}`);
  }
}

/** The order of blob and touch keys for digest `d`. */
function orderKey(d: Digest): string {
  return `${d.algorithm}/${d.hex}`;
}
