// Storage entry point: opens a storage root (lock, directories, startup scan) and hands
// out its stores. Other folders import storage only through this file.
import { Layout } from './layout.js';
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
export { referencedBlobs, DEFAULT_GC_GRACE_MS, type GcOptions, type GcResult, type GcUpload } from './gc.js';
export * from './errors.js';
export { StorageAccessError, checkStorageRoot, distributionLayoutIn, DISTRIBUTION_LAYOUT } from './root-check.js';
export { DEFAULT_LOCK_LEASE_MS, defaultLeaseMs, parseOwner, describeOwner, type LockOptions, type LockOwner, type LockWait } from './lock.js';

/** How long an upload session may sit idle before it is purged, unless told otherwise: 24 hours. */
export const DEFAULT_UPLOAD_MAX_AGE_MS = 24 * 60 * 60 * 1000;

/** Options of {@link openStorage}. */
export interface StorageOptions {
  /** Upload sessions idle longer than this are purged at startup. Default: {@link DEFAULT_UPLOAD_MAX_AGE_MS}. */
  uploadMaxAgeMs?: number;
  /** The storage lock's lease period and whom it tells when it waits or is lost (lock.ts). */
  lock?: LockOptions;
}

/** An open storage root. */
export interface Storage {
  layout: Layout;
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

/** Opens (creating if needed) the storage root at `root`, taking its lock. */
export async function openStorage(root: string, opts: StorageOptions = {}): Promise<Storage> {
  await checkStorageRoot(root);
  const layout = new Layout(root);
  for (const d of [layout.blobsDir, layout.uploadsDir, layout.repositoriesDir, layout.tmpDir]) await makeDirDurable(d);
  const lock = await acquireLock(layout.lockFile, opts.lock);
  const blobs = new BlobStore(layout);
  const uploads = new Uploads(layout, blobs);
  const repositories = new Repositories(layout);
  const cacheLayout = new Layout(root, 'cache');
  await makeDirDurable(cacheLayout.repositoriesDir);
  const cacheRepositories = new Repositories(cacheLayout);
  const registry = new RegistryStore(blobs, uploads, repositories);
  const tempFilesRemoved = await blobs.clearTemp();
  // No request runs yet: sessions a crash left half-made or half-completed can go too.
  const stalePurged = await uploads.purgeStale(opts.uploadMaxAgeMs ?? DEFAULT_UPLOAD_MAX_AGE_MS, { broken: true });
  return {
    layout,
    blobs,
    lifetime: blobs.lifetime,
    uploads,
    repositories,
    cacheRepositories,
    registry,
    startup: { tempFilesRemoved, stalePurged },
    gc: (o) => collectGarbage(blobs, repositories, cacheRepositories, uploads, o),
    close: async () => {
      await uploads.settled();
      await lock.release();
    },
    abandon: () => lock.releaseSync(),
  };
}
