// A storage on S3: the shared backend several servers use at once, built from the bucket's
// settings, and the implementations of the backend interfaces over a location (client, bucket,
// prefix); keys.ts draws the bucket's layout. Loaded only when a storage is an s3:// URL.
import type { SharedBackend } from '../index.js';
import { openS3Location, probeS3Location, type S3Settings } from './location.js';
import { S3Records } from './records.js';
import { S3BucketBlobs } from './bucket-blobs.js';
import { S3Uploads } from './uploads.js';
import { S3WorkLease } from './lease.js';
import { S3FillClaims } from './fill-claims.js';

export { openS3Location, parseS3Url, probeS3Location, DEFAULT_S3_CONNECT_TIMEOUT_MS, DEFAULT_S3_IDLE_TIMEOUT_MS, type S3Location, type S3Settings } from './location.js';
export { S3Records } from './records.js';
export { S3BucketBlobs, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, DEFAULT_PART_CONCURRENCY, type S3BucketBlobsOptions } from './bucket-blobs.js';
export { S3WorkLease, DEFAULT_LEASE_TTL_MS, type S3WorkLeaseOptions } from './lease.js';
export { S3FillClaims } from './fill-claims.js';
export { parseLease, type LeaseOwner, type LeaseBody, type LeaseRecordOptions } from './lease-record.js';
export { storageError, isNotFound, isConditionFailed } from './errors.js';
export { RESERVED_PREFIXES } from './keys.js';

/** The settings of a storage on S3. */
export interface S3StorageSettings extends S3Settings {
  /** Bytes of read-through copies of blobs this server keeps on its local disk at most. */
  localCopiesBytes?: number;
  /** Answer blob GETs of the registry port with a redirect to a presigned URL of the bucket. */
  redirect?: boolean;
}

/** Opens the bucket's tiers, after checking that the bucket answers (it names a missing bucket or bad credentials). */
export async function openS3Backend(settings: S3StorageSettings): Promise<SharedBackend> {
  const location = openS3Location(settings);
  await probeS3Location(location);
  const records = new S3Records(location);
  const prefix = location.prefix;
  return {
    location: location.url,
    records,
    blobs: new S3BucketBlobs(location),
    uploads: (store) =>
      new S3Uploads(location, {
        // The session's assembled object (a full key) becomes the blob under the digest's lock.
        publish: (d, source, link) => store.lifetime.publishObject(source.bucketKey.slice(prefix.length), d, source.size, link),
      }),
    lease: new S3WorkLease(records),
    fills: new S3FillClaims(records),
    ...(settings.localCopiesBytes !== undefined ? { localCopiesBytes: settings.localCopiesBytes } : {}),
    ...(settings.redirect ? { redirect: true } : {}),
  };
}
