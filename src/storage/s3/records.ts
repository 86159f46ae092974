// Records as objects in a bucket: the key `k` is the object `<prefix>k`. A write is one
// PutObject, so a reader sees the old or the new bytes whole. Creation and replacement are
// conditional writes (If-None-Match: *, If-Match: <ETag>): among servers racing for the same
// key exactly one wins, the others are told false. Another server may write at any time, so
// nothing read here may be remembered without expiry (`exclusive` is false).
//
// Ceph 16's gateway (and the gateways it stands for here) has two quirks handled below: it
// compares If-Match with the stored ETag without its quotes, so the quotes are dropped; and the
// loser of two conditional writes that reach it at once may get a 500 (its ECANCELED) instead
// of a 412. The SDK retries the 500, and the retry, still conditional, gets the 412.
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type HeadObjectCommandOutput,
} from '@aws-sdk/client-s3';
import type { Records } from '../backend.js';
import { isConditionFailed, isNotFound, storageError } from './errors.js';
import { listPages } from './listing.js';
import type { S3Location } from './location.js';

/** DeleteObjects takes at most this many keys a request. */
const DELETE_BATCH = 1000;

/** The If-Match value for an ETag: without its quotes (AWS takes either; Ceph 16 only this). */
function ifMatch(version: string): string {
  return version.replace(/^"|"$/g, '');
}

/** Records under an S3 location's prefix. */
export class S3Records implements Records {
  readonly location: string;
  readonly exclusive = false;

  constructor(private readonly s3: S3Location) {
    this.location = s3.url;
  }

  async read(key: string): Promise<Buffer | undefined> {
    return (await this.readVersioned(key))?.data;
  }

  async readVersioned(key: string): Promise<{ data: Buffer; version: string } | undefined> {
    try {
      const out = await this.s3.client.send(new GetObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(key) }));
      const data = Buffer.from(await out.Body!.transformToByteArray());
      return { data, version: out.ETag ?? '' };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError(err, this.s3, `GetObject ${key}`);
    }
  }

  async write(key: string, data: string | Uint8Array): Promise<void> {
    try {
      await this.s3.client.send(new PutObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(key), Body: data, ContentLength: byteLength(data) }));
    } catch (err) {
      throw storageError(err, this.s3, `PutObject ${key}`);
    }
  }

  async create(key: string, data: string | Uint8Array): Promise<boolean> {
    return (await this.createVersioned(key, data)) !== undefined;
  }

  async replaceIf(key: string, data: string | Uint8Array, version: string): Promise<boolean> {
    return (await this.replaceIfVersioned(key, data, version)) !== undefined;
  }

  /** {@link create}, answering the new record's version (undefined when one existed). */
  async createVersioned(key: string, data: string | Uint8Array): Promise<string | undefined> {
    return this.putIf(key, data, { IfNoneMatch: '*' }, `PutObject (If-None-Match: *) ${key}`);
  }

  /** {@link replaceIf}, answering the new version (undefined when the record changed or is gone). */
  async replaceIfVersioned(key: string, data: string | Uint8Array, version: string): Promise<string | undefined> {
    return this.putIf(key, data, { IfMatch: ifMatch(version) }, `PutObject (If-Match) ${key}`);
  }

  async has(key: string): Promise<boolean> {
    return (await this.head(key)) !== undefined;
  }

  async remove(key: string): Promise<boolean> {
    // S3's DeleteObject answers 204 whether or not the key existed: the HEAD tells.
    const existed = await this.has(key);
    if (existed) await this.delete(key);
    return existed;
  }

  /**
   * Removes the record if it is still at `version`; false when it changed or is gone. The check
   * and the delete are two requests (Ceph 16 ignores If-Match on DELETE), so use this only on a
   * record that nobody else may replace meanwhile: a lease or claim this server holds unexpired.
   */
  async removeIf(key: string, version: string): Promise<boolean> {
    const head = await this.head(key);
    if (head?.ETag === undefined || ifMatch(head.ETag) !== ifMatch(version)) return false;
    await this.delete(key);
    return true;
  }

  async children(prefix: string): Promise<string[]> {
    const base = this.fullKey(dirPrefix(prefix));
    const names = new Set<string>();
    for await (const page of listPages(this.s3, base, '/')) {
      for (const p of page.CommonPrefixes ?? []) if (p.Prefix) names.add(p.Prefix.slice(base.length, -1));
      for (const o of page.Contents ?? []) if (o.Key && o.Key !== base) names.add(o.Key.slice(base.length));
    }
    return [...names];
  }

  async modifiedMs(key: string): Promise<number | undefined> {
    return (await this.head(key))?.LastModified?.getTime();
  }

  async removeTree(prefix: string): Promise<void> {
    const base = this.fullKey(dirPrefix(prefix));
    let batch: string[] = [];
    for await (const page of listPages(this.s3, base)) {
      for (const o of page.Contents ?? []) {
        if (o.Key) batch.push(o.Key);
        if (batch.length === DELETE_BATCH) {
          await this.deleteBatch(batch, prefix);
          batch = [];
        }
      }
    }
    if (batch.length > 0) await this.deleteBatch(batch, prefix);
  }

  private fullKey(key: string): string {
    return `${this.s3.prefix}${key}`;
  }

  private async head(key: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.s3.client.send(new HeadObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(key) }));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError(err, this.s3, `HeadObject ${key}`);
    }
  }

  private async delete(key: string): Promise<void> {
    try {
      await this.s3.client.send(new DeleteObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(key) }));
    } catch (err) {
      throw storageError(err, this.s3, `DeleteObject ${key}`);
    }
  }

  /** A conditional PutObject: the new ETag, or undefined when the condition failed. */
  private async putIf(key: string, data: string | Uint8Array, condition: { IfNoneMatch: string } | { IfMatch: string }, operation: string): Promise<string | undefined> {
    let etag: string | undefined;
    try {
      etag = (await this.s3.client.send(new PutObjectCommand({ Bucket: this.s3.bucket, Key: this.fullKey(key), Body: data, ContentLength: byteLength(data), ...condition }))).ETag;
    } catch (err) {
      // A 404 is a gateway's way of saying If-Match found no object.
      if (isConditionFailed(err) || isNotFound(err)) return undefined;
      throw storageError(err, this.s3, operation);
    }
    // A service that answers no ETag: the record is this write's until someone replaces it.
    return etag ?? (await this.head(key))?.ETag ?? '';
  }

  private async deleteBatch(keys: string[], prefix: string): Promise<void> {
    try {
      const out = await this.s3.client.send(
        new DeleteObjectsCommand({ Bucket: this.s3.bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
      );
      const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0) {
        throw new Error(`removing ${prefix} from ${this.location}: ${failed.length} objects not deleted, the first ${failed[0]!.Key}: ${failed[0]!.Code} ${failed[0]!.Message ?? ''}`.trim());
      }
    } catch (err) {
      throw storageError(err, this.s3, `DeleteObjects under ${prefix}`);
    }
  }
}

/** `prefix` as a key prefix that ends in `/` ('' stays ''). */
function dirPrefix(prefix: string): string {
  const p = prefix.replace(/\/+$/, '');
  return p === '' ? '' : `${p}/`;
}

/** The length of a record's bytes (given, the SDK does not guess it, nor warn about an empty body). */
function byteLength(data: string | Uint8Array): number {
  return typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
}
