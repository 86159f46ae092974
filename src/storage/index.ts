// Storage entry point: opens a storage (the local root's lock, directories and startup scan;
// on a shared bucket, its records, blobs, upload sessions, lease and fill claims) and hands out
// its stores. Other folders import storage only through this file.
import { Layout, RecordKeys } from './layout.js';
import { FsRecords } from './fs-records.js';
import type { BucketBlobs, FillClaims, Records, WorkLease } from './backend.js';
import { BlobStore } from './blob-store.js';
import { Uploads } from './uploads.js';
import { Repositories } from './repositories.js';
import { RegistryStore } from './registry-store.js';
import { acquireLock, type LockOptions } from './lock.js';
import { makeDirDurable } from './fs-util.js';
import { collectGarbage, type GcOptions, type GcResult } from './gc.js';
import { checkStorageRoot } from './root-check.js';
import { BlobLifetime } from './blob-lifetime.js';
import type { UploadSessions } from './upload-sessions.js';

export { Layout } from './layout.js';
export { BlobStore, BlobWriter } from './blob-store.js';
export { BlobLifetime, Sweep, type BlobLink, type KeptBecause } from './blob-lifetime.js';
export { Uploads } from './uploads.js';
export type { UploadSession, UploadSessions, UploadRecord, UploadDescription } from './upload-sessions.js';
export type { Records, BucketBlobs, WorkLease, FillClaims, FillClaim, StoredBlobInfo } from './backend.js';
export { Repositories, manifestRecordOf, type ManifestRecord } from './repositories.js';
export { RegistryStore, MAX_MANIFEST_SIZE, type StoredManifest, type RegistryBackend, type RegistryReader, type BlobHandle, type BlobFile, type PutManifestResult, type ServedFrom } from './registry-store.js';
export { referencedBlobs, unchangedSince, DEFAULT_GC_GRACE_MS, type GcOptions, type GcResult, type GcUpload } from './gc.js';
export * from './errors.js';
export { StorageAccessError, checkStorageRoot, distributionLayoutIn, DISTRIBUTION_LAYOUT } from './root-check.js';
export { DEFAULT_LOCK_LEASE_MS, defaultLeaseMs, parseOwner, describeOwner, type LockOptions, type LockOwner, type LockWait } from './lock.js';

/** How long an upload session may sit idle before it is purged, unless told otherwise: 24 hours. */
export const DEFAULT_UPLOAD_MAX_AGE_MS = 24 * 60 * 60 * 1000;

/**
 * A shared bucket behind a storage: what several servers use at once. The local root then
 * holds only this server's temp files, lock and read-through copies of blobs.
 */
export interface SharedBackend {
  /** `s3://bucket/prefix`, for messages. */
  location: string;
  records: Records;
  blobs: BucketBlobs;
  /** The upload sessions, completing into `blobs` (built once the blob store exists). */
  uploads(blobs: BlobStore): UploadSessions;
  lease: WorkLease;
  fills: FillClaims;
  /** Bytes of local copies of blobs this server keeps at most. */
  localCopiesBytes?: number;
  /** Answer blob GETs of the registry port with a redirect to a presigned URL of the bucket. */
  redirect?: boolean;
}

/** The settings of a storage on S3 (s3/index.ts). */
export type { S3StorageSettings } from './s3/index.js';

/**
 * The shared backend of a storage on S3. The S3 client is loaded on first use: a server on a
 * local directory never needs it.
 */
export async function openS3Backend(settings: import('./s3/index.js').S3StorageSettings): Promise<SharedBackend> {
  const s3 = await import('./s3/index.js');
  return await s3.openS3Backend(settings);
}

/** Options of {@link openStorage}. */
export interface StorageOptions {
  /** A shared bucket whose objects are the storage (absent: the local root is). */
  shared?: SharedBackend;
  /** Upload sessions idle longer than this are purged at startup. Default: {@link DEFAULT_UPLOAD_MAX_AGE_MS}. */
  uploadMaxAgeMs?: number;
  /** The storage lock's lease period and whom it tells when it waits or is lost (lock.ts). */
  lock?: LockOptions;
}

/** An open storage root. */
export interface Storage {
  /** Where the storage is, for messages: the local root, or the bucket's `s3://` URL. */
  location: string;
  /** The local root: this server's temp files and lock (and on a bucket, its copies of blobs). */
  layout: Layout;
  /** The repository records (files under the root, or the bucket's objects). */
  records: Records;
  /** On a bucket: claims that make one server fetch each blob from an upstream. */
  fills?: FillClaims;
  /** On a bucket: runs work that must run once among the servers sharing it (an eviction pass). */
  lease?: WorkLease;
  blobs: BlobStore;
  /** The single owner of blob lifetime (the same as `blobs.lifetime`). */
  lifetime: BlobLifetime;
  uploads: UploadSessions;
  repositories: Repositories;
  /** Repository records of the pull-through cache (same blobs, its own tree). */
  cacheRepositories: Repositories;
  registry: RegistryStore;
  /** What the startup scan cleaned. */
  startup: { tempFilesRemoved: number; stalePurged: number };
  /** Runs garbage collection over this root (safe while the server serves: see gc.ts). */
  gc(opts?: GcOptions): Promise<GcResult>;
  /** Waits for upload requests still writing (their connections are gone), then releases the lock. */
  close(): Promise<void>;
  /** Releases the lock at once, synchronously: for a process about to exit without draining. */
  abandon(): void;
}

/** A gc asked for while another server sharing the bucket collects. */
export class GcBusyError extends Error {
  constructor(readonly location: string) {
    super(`another server collects garbage in ${location} now; nothing was done`);
    this.name = 'GcBusyError';
  }
}

/** Opens (creating if needed) the storage root at `root`, taking its lock; with `shared`, over that bucket. */
export async function openStorage(root: string, opts: StorageOptions = {}): Promise<Storage> {
  await checkStorageRoot(root);
  const layout = new Layout(root);
  const shared = opts.shared;
  const localDirs = shared ? [layout.blobsDir, layout.tmpDir] : [layout.blobsDir, layout.uploadsDir, layout.repositoriesDir, layout.tmpDir];
  for (const d of localDirs) await makeDirDurable(d);
  const lock = await acquireLock(layout.lockFile, opts.lock);
  const blobs = new BlobStore(layout, shared?.blobs, { localCopiesBytes: shared?.localCopiesBytes });
  const records = shared?.records ?? new FsRecords(root, layout.tmpDir);
  const uploads: UploadSessions = shared ? shared.uploads(blobs) : new Uploads(layout, blobs);
  const repositories = new Repositories(records, new RecordKeys('repositories'));
  if (!shared) await makeDirDurable(new Layout(root, 'cache').repositoriesDir);
  const cacheRepositories = new Repositories(records, new RecordKeys('cache'));
  const registry = new RegistryStore(blobs, uploads, repositories, !!shared?.redirect);
  const tempFilesRemoved = await blobs.clearTemp();
  await blobs.copies?.scan();
  // No request runs yet: sessions a crash left half-made or half-completed can go too (on a
  // bucket, other servers may be making sessions now: only the idle ones go).
  const stalePurged = await uploads.purgeStale(opts.uploadMaxAgeMs ?? DEFAULT_UPLOAD_MAX_AGE_MS, { broken: !shared });
  const gc = (o?: GcOptions) => collectGarbage(blobs, repositories, cacheRepositories, uploads, o);
  return {
    location: shared?.location ?? root,
    layout,
    records,
    fills: shared?.fills,
    lease: shared?.lease,
    blobs,
    lifetime: blobs.lifetime,
    uploads,
    repositories,
    cacheRepositories,
    registry,
    startup: { tempFilesRemoved, stalePurged },
    gc: shared
      ? async (o) => {
          const result = await shared.lease.runOnce('gc', () => gc(o));
          if (!result) throw new GcBusyError(shared.location);
          return result;
        }
      : gc,
    close: async () => {
      await uploads.settled();
      await lock.release();
    },
    abandon: () => lock.releaseSync(),
  };
}
