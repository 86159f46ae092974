// Domain errors of the storage layer. Storage knows nothing of HTTP: the registry's error
// handler maps these to OCI error codes.
import { dirname } from 'node:path';

/** A blob that is not in the store (or not linked into the repository asked about). */
export class BlobNotFoundError extends Error {
  constructor(readonly digest: string) {
    super(`blob ${digest} not found`);
    this.name = 'BlobNotFoundError';
  }
}

/** Content whose digest is not the one the client or manifest claimed. */
export class DigestMismatchError extends Error {
  constructor(readonly expected: string, readonly actual: string) {
    super(`digest mismatch: expected ${expected}, got ${actual}`);
    this.name = 'DigestMismatchError';
  }
}

/** Content whose length is not the one claimed. */
export class SizeMismatchError extends Error {
  constructor(readonly expected: number, readonly actual: number) {
    super(`size mismatch: expected ${expected}, got ${actual}`);
    this.name = 'SizeMismatchError';
  }
}

/** An upload session that does not exist (or belongs to another repository). */
export class UploadNotFoundError extends Error {
  constructor(readonly id: string) {
    super(`upload ${id} not found`);
    this.name = 'UploadNotFoundError';
  }
}

/** A chunk that does not continue an upload where it stands. */
export class UploadRangeError extends Error {
  constructor(readonly expectedStart: number, readonly start: number) {
    super(`chunk starts at ${start}, upload is at ${expectedStart}`);
    this.name = 'UploadRangeError';
  }
}

/** An upload session already busy with another request. */
export class UploadBusyError extends Error {
  constructor(readonly id: string) {
    super(`upload ${id} is busy with another request`);
    this.name = 'UploadBusyError';
  }
}

/** More bytes than a limit allows. */
export class TooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`content exceeds ${limit} bytes`);
    this.name = 'TooLargeError';
  }
}

/**
 * The storage directory is owned by another process that runs or keeps its lease fresh.
 * `holder` names it in words; `rule` says what to do.
 */
export class StorageLockedError extends Error {
  constructor(readonly path: string, readonly pid: number, readonly holder = `process ${pid}`, readonly rule = '') {
    super(`storage ${dirname(path)} is in use by ${holder}${rule ? `: ${rule}` : ''}`);
    this.name = 'StorageLockedError';
  }
}

/** The storage lock this process held was taken over by another process (this one stalled longer than a lease period). */
export class StorageLockLostError extends Error {
  constructor(readonly path: string, readonly holder: string) {
    super(`the lock of storage ${dirname(path)} was taken over by ${holder}: another server uses this storage now`);
    this.name = 'StorageLockLostError';
  }
}

/**
 * Storage without room for content of an announced size. It carries `code: 'ENOSPC'` so that
 * it is handled like the write that would have failed.
 */
export class StorageFullError extends Error {
  readonly code = 'ENOSPC';
  constructor(readonly needed: number, readonly available: number) {
    super(`storage is full: ${needed} bytes needed, ${available} available`);
    this.name = 'StorageFullError';
  }
}

/**
 * A shared storage (an S3 bucket) that did not answer, or answered with a failure of its own:
 * connection refused or timed out, a 5xx. `url` is the storage (`s3://bucket/prefix`),
 * `operation` what was asked of it (`GetObject blobs/sha256/ab/ab…`). The registry answers 503.
 */
export class StorageUnavailableError extends Error {
  constructor(readonly url: string, readonly operation: string, readonly reason: string, options?: { cause?: unknown; message?: string }) {
    super(options?.message ?? `storage ${url} is unavailable: ${operation} failed: ${reason}`, { cause: options?.cause });
    this.name = 'StorageUnavailableError';
  }
}

/** A shared storage that refused this server's credentials (403): unavailable until they are fixed. */
export class StorageCredentialsError extends StorageUnavailableError {
  constructor(url: string, operation: string, reason: string, options?: { cause?: unknown }) {
    super(url, operation, reason, {
      ...options,
      message:
        `storage ${url} refused ${operation} (${reason}): check the credentials regcache uses ` +
        '(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared credentials file, or ' +
        "distribution's storage.s3.accesskey/secretkey) and that they may read and write this bucket and prefix",
    });
    this.name = 'StorageCredentialsError';
  }
}

/** A shared storage whose bucket does not exist: unavailable until it is created or the URL fixed. */
export class StorageBucketMissingError extends StorageUnavailableError {
  constructor(url: string, operation: string, readonly bucket: string, options?: { cause?: unknown }) {
    super(url, operation, 'NoSuchBucket', {
      ...options,
      message: `storage ${url}: bucket ${bucket} does not exist (${operation} answered NoSuchBucket): create it, or fix the storage URL or endpoint`,
    });
    this.name = 'StorageBucketMissingError';
  }
}
