// Garbage collection: mark every blob a manifest of any repository references (the
// manifest itself, its config and layers, its child manifests), and every blob the
// pull-through cache holds (cached content leaves only by eviction), then sweep the rest,
// except blobs younger than the grace period (a push may be about to reference them).
// The sweep is one of the lifetime owner (blob-lifetime.ts): each blob goes under its
// digest's lock, with its repository links, once the owner checked again that nobody holds
// it and nothing pushed, mounted or linked it since the collection began. So a collection
// can run while the server serves (periodically, or when `regcache gc` asks the server).
// Incomplete upload sessions are reported, and removed once idle past `uploadMaxAgeMs`.
import { BlobStore } from './blob-store.js';
import { Repositories } from './repositories.js';
import type { UploadSessions } from './upload-sessions.js';
import type { BlobLink } from './blob-lifetime.js';
import { parseManifest } from '../oci/index.js';
import { BlobNotFoundError, TooLargeError } from './errors.js';
import { MAX_MANIFEST_SIZE } from './registry-store.js';

/** Default grace period of a collection: one hour. */
export const DEFAULT_GC_GRACE_MS = 60 * 60 * 1000;

/** Options of a collection. */
export interface GcOptions {
  /** Blobs modified more recently than this are kept. Default: one hour. */
  gracePeriodMs?: number;
  /** Report what would be deleted without deleting it. */
  dryRun?: boolean;
  /** Upload sessions idle longer than this are removed (reported either way). Default: not removed. */
  uploadMaxAgeMs?: number;
}

/** An incomplete upload session as a collection found it. */
export interface GcUpload {
  id: string;
  repository: string | undefined;
  /** Bytes received so far. */
  size: number;
  /** Time since the session last received bytes. */
  idleMs: number;
  /** Removed (or, in a dry run, would be removed): idle past the upload max age. */
  removed: boolean;
}

/** What a collection found and did. */
export interface GcResult {
  dryRun: boolean;
  gracePeriodMs: number;
  /** Blobs kept because a manifest or the cache references them. */
  marked: number;
  /** Blobs deleted (in a dry run: that would be deleted) and their bytes. */
  deleted: number;
  deletedBytes: number;
  /** Unreferenced blobs kept because they are younger than the grace period, and their bytes. */
  keptRecent: number;
  keptRecentBytes: number;
  /** Unreferenced blobs kept because they were in use at the last check (served, filled, just referenced). */
  keptInUse: number;
  /** Incomplete upload sessions. */
  uploads: GcUpload[];
}

/** Runs one mark-and-sweep over a storage root. */
export async function collectGarbage(
  blobs: BlobStore,
  repositories: Repositories,
  cache: Repositories,
  uploads: UploadSessions,
  opts: GcOptions = {},
): Promise<GcResult> {
  const grace = opts.gracePeriodMs ?? DEFAULT_GC_GRACE_MS;
  const dryRun = !!opts.dryRun;
  const result: GcResult = { dryRun, gracePeriodMs: grace, marked: 0, deleted: 0, deletedBytes: 0, keptRecent: 0, keptRecentBytes: 0, keptInUse: 0, uploads: [] };
  // Opened before anything is read: whatever is published or linked from now on is kept.
  const sweep = blobs.lifetime.beginSweep();
  // Taken before the marks are read: a blob referenced since (by another server sharing a
  // bucket, which this sweep cannot see) has a later time, and is kept.
  const cutoff = Date.now() - grace;
  try {
    const marked = await referencedBlobs(blobs, repositories);
    for (const d of await referencedBlobs(blobs, cache)) marked.add(d);
    for (const name of await cache.list()) for (const d of await cache.listBlobLinks(name)) marked.add(d.value);
    result.marked = marked.size;
    const links = await linksByDigest(repositories);
    for await (const blob of blobs.list()) {
      if (marked.has(blob.digest.value)) continue;
      if (blob.mtimeMs > cutoff) {
        result.keptRecent++;
        result.keptRecentBytes += blob.size;
        continue;
      }
      const gone = dryRun
        ? !blobs.lifetime.isHeld(blob.digest.value) && !sweep.touched.has(blob.digest.value)
        : (await sweep.remove(blob.digest, {
            unlink: links.get(blob.digest.value) ?? [],
            // Another server sharing a bucket may have referenced it since the listing: its version
            // (on a bucket) or its time says so.
            stillUnreferenced: async () => unchangedSince(await blobs.statInfo(blob.digest), blob, cutoff),
          })) === true;
      if (!gone) {
        result.keptInUse++;
        continue;
      }
      result.deleted++;
      result.deletedBytes += blob.size;
    }
  } finally {
    sweep.end();
  }
  result.uploads = await collectUploads(uploads, opts.uploadMaxAgeMs, dryRun);
  return result;
}

/** Reports the upload sessions, removing those idle past `maxAgeMs` (unless a dry run). */
async function collectUploads(uploads: UploadSessions, maxAgeMs: number | undefined, dryRun: boolean): Promise<GcUpload[]> {
  const out: GcUpload[] = [];
  const now = Date.now();
  for (const s of await uploads.describe()) {
    const idleMs = Math.max(0, now - s.lastActiveMs);
    let removed = maxAgeMs !== undefined && idleMs > maxAgeMs;
    if (removed && !dryRun) removed = await uploads.removeIfIdle(s.id, now - maxAgeMs!);
    out.push({ id: s.id, repository: s.repository, size: s.size, idleMs, removed });
  }
  return out;
}

/** The repositories of `repositories` that link each blob. */
async function linksByDigest(repositories: Repositories): Promise<Map<string, BlobLink[]>> {
  const out = new Map<string, BlobLink[]>();
  for (const name of await repositories.list()) {
    for (const d of await repositories.listBlobLinks(name)) {
      const list = out.get(d.value) ?? [];
      list.push({ repositories, name });
      out.set(d.value, list);
    }
  }
  return out;
}

/**
 * Digests of every blob a manifest of `repositories` references, manifests included. A manifest
 * whose bytes are gone or do not parse marks nothing more; any other failure to read one (a disk
 * error, a bucket that does not answer) ends the pass: marks left out would delete what it names.
 */
export async function referencedBlobs(blobs: BlobStore, repositories: Repositories): Promise<Set<string>> {
  const marked = new Set<string>();
  for (const name of await repositories.list()) {
    for (const digest of await repositories.listManifests(name)) {
      marked.add(digest.value);
      let body: Buffer;
      try {
        body = await blobs.readSmall(digest, MAX_MANIFEST_SIZE);
      } catch (err) {
        if (err instanceof BlobNotFoundError || err instanceof TooLargeError) continue;
        throw err;
      }
      const mediaType = (await repositories.getManifest(name, digest))?.mediaType;
      let m;
      try {
        m = parseManifest(body, mediaType);
      } catch {
        continue;
      }
      for (const d of [...(m.config ? [m.config] : []), ...m.layers, ...m.manifests]) marked.add(d.digest);
    }
  }
  return marked;
}

/**
 * True when a blob's state now (`now`, undefined when gone) shows no reference since it was
 * listed as `listed`: the same version on a bucket (every touch makes a new one), else a time no
 * later than `cutoff`.
 */
export function unchangedSince(now: { mtimeMs: number; version?: string } | undefined, listed: { version?: string }, cutoff: number): boolean {
  if (!now) return true;
  if (listed.version !== undefined) return now.version === listed.version;
  return now.mtimeMs <= cutoff;
}
