// A storage on S3: the shared backend that several servers use at once, built from the
// bucket's settings. Loaded only when a storage is an s3:// URL (the filesystem never needs it).
import type { SharedBackend } from '../index.js';
import { openS3Location, type S3Settings } from './location.js';
import { S3Records } from './records.js';
import { S3BucketBlobs } from './bucket-blobs.js';
import { S3Uploads } from './uploads.js';
import { S3WorkLease } from './lease.js';
import { S3FillClaims } from './fill-claims.js';

export { parseS3Url, type S3Settings } from './location.js';

/** The settings of a storage on S3. */
export interface S3StorageSettings extends S3Settings {
  /** Bytes of read-through copies of blobs this server keeps on its local disk at most. */
  localCopiesBytes?: number;
  /** Answer blob GETs of the registry port with a redirect to a presigned URL of the bucket. */
  redirect?: boolean;
}

/** Opens the bucket's tiers (no request is sent yet). */
export function openS3Backend(settings: S3StorageSettings): SharedBackend {
  const location = openS3Location(settings);
  const blobs = new S3BucketBlobs(location);
  return {
    location: location.url,
    records: new S3Records(location),
    blobs,
    uploads: (store) => new S3Uploads(location, { publish: (d, source, link) => store.lifetime.publishObject(source.bucketKey, d, source.size, link) }),
    lease: new S3WorkLease(location),
    fills: new S3FillClaims(location),
    ...(settings.localCopiesBytes !== undefined ? { localCopiesBytes: settings.localCopiesBytes } : {}),
    ...(settings.redirect ? { redirect: true } : {}),
  };
}
