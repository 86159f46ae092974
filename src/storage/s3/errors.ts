// What an S3 failure means to the storage layer. The AWS SDK throws service exceptions
// (`name` is the S3 error code, `$metadata.httpStatusCode` the status) and plain Node errors for
// the network; this file tells the expected answers apart (404: absent; 412/409: a conditional
// write lost) and turns the rest into domain errors that name the storage URL and the operation:
// unreachable or failing (5xx) → StorageUnavailableError, refused (403, no credentials) →
// StorageCredentialsError, no bucket → StorageBucketMissingError. Anything else (a 4xx regcache
// did not expect) is thrown as the SDK threw it: that is a bug to see, not an outage.
import {
  StorageBucketMissingError,
  StorageCredentialsError,
  StorageUnavailableError,
} from '../errors.js';
import type { S3Location } from './location.js';

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** Node's network error codes that mean the service cannot be reached (or went away mid-request). */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'UND_ERR_SOCKET',
]);

/** S3 error codes that mean the credentials (or the policy) refuse the request. */
const DENIED_NAMES = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'ExpiredToken', 'CredentialsProviderError']);

/** The HTTP status of an SDK error, if the service answered. */
export function statusOf(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode;
}

/** A 404 for the object (NoSuchKey, or HEAD's bare NotFound); a missing bucket is not this. */
export function isNotFound(err: unknown): boolean {
  return statusOf(err) === 404 && (err as SdkError).name !== 'NoSuchBucket';
}

/**
 * A conditional write that lost: 412 (the object exists, or is not at the version given), or
 * AWS's 409 ConditionalRequestConflict (another write to the key finished first).
 */
export function isConditionFailed(err: unknown): boolean {
  const status = statusOf(err);
  return status === 412 || (status === 409 && (err as SdkError).name === 'ConditionalRequestConflict');
}

/** The domain error for a failed S3 call, or `err` itself when it is not an outage, a refusal or a missing bucket. */
export function storageError(err: unknown, location: S3Location, operation: string): unknown {
  if (err instanceof StorageUnavailableError) return err;
  const e = (err ?? {}) as SdkError;
  const status = statusOf(err);
  if (e.name === 'NoSuchBucket') return new StorageBucketMissingError(location.url, operation, location.bucket, { cause: err });
  if (status === 403 || (e.name !== undefined && DENIED_NAMES.has(e.name))) {
    return new StorageCredentialsError(location.url, operation, status ? `${status} ${e.name}` : `${e.name}: ${e.message}`, { cause: err });
  }
  if (status !== undefined && status >= 500) return new StorageUnavailableError(location.url, operation, `${status} ${e.name}`, { cause: err });
  if (status === undefined && ((e.code !== undefined && NETWORK_CODES.has(e.code)) || e.name === 'TimeoutError')) {
    return new StorageUnavailableError(location.url, operation, e.code ?? e.message ?? 'timed out', { cause: err });
  }
  return err;
}
