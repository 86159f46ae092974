// Listing a bucket under a key prefix, page by page (ListObjectsV2 answers at most 1000 keys a
// request and a continuation token for the rest). Keys come in the service's order: ascending
// by their UTF-8 bytes.
import { ListObjectsV2Command, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { storageError } from './errors.js';
import type { S3Location } from './location.js';

/** The pages of ListObjectsV2 under the full key prefix `prefix` (with `delimiter`: one level). */
export async function* listPages(s3: S3Location, prefix: string, delimiter?: string): AsyncGenerator<ListObjectsV2CommandOutput> {
  let token: string | undefined;
  do {
    let page: ListObjectsV2CommandOutput;
    try {
      page = await s3.client.send(
        new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix, ContinuationToken: token, ...(delimiter ? { Delimiter: delimiter } : {}) }),
      );
    } catch (err) {
      throw storageError(err, s3, `ListObjectsV2 ${prefix.slice(s3.prefix.length) || '/'}`);
    }
    yield page;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}

/**
 * Every object under the full key prefix `prefix`: its key relative to the storage prefix, size
 * and LastModified in ms, to the second as a HEAD answers it (a listing has milliseconds), so
 * that a listed time and a HEAD's agree.
 */
export async function* listObjects(s3: S3Location, prefix: string): AsyncGenerator<{ key: string; size: number; mtimeMs: number; etag: string }> {
  for await (const page of listPages(s3, prefix)) {
    for (const o of page.Contents ?? []) {
      if (o.Key === undefined) continue;
      yield { key: o.Key.slice(s3.prefix.length), size: o.Size ?? 0, mtimeMs: Math.floor((o.LastModified?.getTime() ?? 0) / 1000) * 1000, etag: unquoted(o.ETag) };
    }
  }
}

/** An ETag without its quotes ('' when absent): listings and HEADs quote it differently. */
export function unquoted(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}
