// The S3 backend of a storage: a location (client, bucket, prefix) and the implementations of
// the backend interfaces over it. keys.ts draws the bucket's layout.
export { openS3Location, parseS3Url, probeS3Location, DEFAULT_S3_CONNECT_TIMEOUT_MS, DEFAULT_S3_IDLE_TIMEOUT_MS, type S3Location, type S3Settings } from './location.js';
export { S3Records } from './records.js';
export { S3BucketBlobs, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, DEFAULT_PART_CONCURRENCY, type S3BucketBlobsOptions } from './bucket-blobs.js';
export { S3WorkLease, DEFAULT_LEASE_TTL_MS, type S3WorkLeaseOptions } from './lease.js';
export { S3FillClaims } from './fill-claims.js';
export { parseLease, type LeaseOwner, type LeaseBody, type LeaseRecordOptions } from './lease-record.js';
export { storageError, isNotFound, isConditionFailed } from './errors.js';
export { RESERVED_PREFIXES } from './keys.js';
