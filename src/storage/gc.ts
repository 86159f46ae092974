// Garbage collection: mark every blob a manifest of any repository references (the
// manifest itself, its config and layers, its child manifests), and every blob the
// pull-through cache holds (cached content leaves only by eviction), then sweep the rest,
// except blobs younger than the grace period (a push may be about to reference them).
// Repository links to swept blobs are removed with them.
import { join } from 'node:path';
import { BlobStore, readdirOrEmpty } from './blob-store.js';
import { Repositories } from './repositories.js';
import { Layout } from './layout.js';
import { removeFile } from './fs-util.js';
import { parseManifest, tryParseDigest } from '../oci/index.js';
import { MAX_MANIFEST_SIZE } from './registry-store.js';

/** Options of a collection. */
export interface GcOptions {
  /** Blobs modified more recently than this are kept. Default: one hour. */
  gracePeriodMs?: number;
  /** Report what would be deleted without deleting it. */
  dryRun?: boolean;
}

/** What a collection found and did. */
export interface GcResult {
  marked: number;
  deleted: number;
  deletedBytes: number;
  keptRecent: number;
}

/** Runs one mark-and-sweep over a storage root. */
export async function collectGarbage(
  layout: Layout,
  blobs: BlobStore,
  repositories: Repositories,
  cache: Repositories,
  opts: GcOptions = {},
): Promise<GcResult> {
  const grace = opts.gracePeriodMs ?? 60 * 60 * 1000;
  const marked = await referencedBlobs(blobs, repositories);
  for (const d of await referencedBlobs(blobs, cache)) marked.add(d);
  for (const name of await cache.list()) for (const d of await cache.listBlobLinks(name)) marked.add(d.value);
  const result: GcResult = { marked: marked.size, deleted: 0, deletedBytes: 0, keptRecent: 0 };
  const cutoff = Date.now() - grace;
  const deleted = new Set<string>();
  for await (const blob of blobs.list()) {
    if (marked.has(blob.digest.value)) continue;
    if (blob.mtimeMs > cutoff) {
      result.keptRecent++;
      continue;
    }
    if (!opts.dryRun) await blobs.delete(blob.digest);
    deleted.add(blob.digest.value);
    result.deleted++;
    result.deletedBytes += blob.size;
  }
  if (!opts.dryRun && deleted.size > 0) await unlinkSwept(layout, repositories, deleted);
  return result;
}

/** Digests of every blob a manifest of `repositories` references, manifests included. */
export async function referencedBlobs(blobs: BlobStore, repositories: Repositories): Promise<Set<string>> {
  const marked = new Set<string>();
  for (const name of await repositories.list()) {
    for (const digest of await repositories.listManifests(name)) {
      marked.add(digest.value);
      let body: Buffer;
      try {
        body = await blobs.readSmall(digest, MAX_MANIFEST_SIZE);
      } catch {
        continue;
      }
      let m;
      try {
        m = parseManifest(body, (await repositories.getManifest(name, digest))?.mediaType);
      } catch {
        continue;
      }
      for (const d of [...(m.config ? [m.config] : []), ...m.layers, ...m.manifests]) marked.add(d.digest);
    }
  }
  return marked;
}

async function unlinkSwept(layout: Layout, repositories: Repositories, deleted: Set<string>): Promise<void> {
  for (const name of await repositories.list()) {
    const dir = join(layout.repository(name), '_layers');
    for (const algorithm of await readdirOrEmpty(dir)) {
      for (const hex of await readdirOrEmpty(join(dir, algorithm))) {
        const d = tryParseDigest(`${algorithm}:${hex}`);
        if (d && deleted.has(d.value)) await removeFile(join(dir, algorithm, hex));
      }
    }
  }
}
