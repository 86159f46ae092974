// Saves what the job added to the Actions cache: the new blobs, grouped per image into
// content-addressed packs (matrix legs fetching the same image compute the same key, and
// the second finds it with a lookup, which is not rate-limited, and uploads nothing), a
// bounded number of entries per job, refusals (409, 429) answered by a lookup and a backoff
// within a time budget; then the job's index entry: the union of what it restored and added.
import { link, mkdir, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Storage } from '../storage/index.js';
import { tryParseDigest } from '../oci/index.js';
import { INDEX_FILE, INDEX_PATH, PACK_PATH, indexKey, packKey } from './keys.js';
import { mergeIndex, packOfBlob, type PersistIndex } from './persist-index.js';
import { exportIndex } from './index-sync.js';
import { packFileName } from './pack-restore.js';
import type { ActionsCache } from './actions-cache.js';

/** The repository's cache size beyond which entries evict each other (GitHub's default). */
export const REPOSITORY_CACHE_LIMIT = 10 * 1024 ** 3;

/** Options of {@link saveNewContent}. */
export interface SaveOptions {
  storage: Storage;
  restored: PersistIndex;
  cache: ActionsCache;
  /** Key prefix (the Action's `key-prefix`). */
  prefix: string;
  env: NodeJS.ProcessEnv;
  /** The job's matrix values as JSON (distinguishes legs of one run). */
  matrix: string;
  /** Upload at most this many bytes of packs. */
  maxSaveBytes: number;
  /** Create at most this many pack entries (small groups are merged beyond it). */
  maxPacks: number;
  /** Give up retrying refused uploads after this long. */
  budgetMs: number;
}

/** What a save did, for the job summary. */
export interface SaveReport {
  packsSaved: number;
  packsExisting: number;
  packsRefused: number;
  packsSkippedForSize: number;
  bytesSaved: number;
  indexKey?: string;
  /** Bytes of every pack the index now names: the working set. */
  workingSetBytes: number;
  seconds: number;
}

interface Group {
  digests: string[];
  size: number;
}

/** Groups new blobs per image, merging the smallest groups beyond `maxPacks`. */
export function groupNewBlobs(blobsByRepo: Record<string, string[]>, known: Set<string>, sizes: Map<string, number>, maxPacks: number): Group[] {
  const taken = new Set(known);
  const groups: Group[] = [];
  for (const repo of Object.keys(blobsByRepo).sort()) {
    const digests = blobsByRepo[repo]!.filter((d) => !taken.has(d) && sizes.has(d));
    if (digests.length === 0) continue;
    for (const d of digests) taken.add(d);
    groups.push({ digests: digests.sort(), size: digests.reduce((a, d) => a + sizes.get(d)!, 0) });
  }
  groups.sort((a, b) => b.size - a.size);
  while (groups.length > Math.max(1, maxPacks)) {
    const a = groups.pop()!;
    const b = groups.pop()!;
    groups.push({ digests: [...a.digests, ...b.digests].sort(), size: a.size + b.size });
    groups.sort((x, y) => y.size - x.size);
  }
  return groups;
}

async function stagePack(storage: Storage, workspace: string, digests: string[]): Promise<void> {
  const dir = join(workspace, PACK_PATH);
  await mkdir(dir, { recursive: true });
  for (const v of digests) {
    const d = tryParseDigest(v)!;
    await link(storage.layout.blob(d), join(dir, packFileName(d)));
  }
}

/** Saves the job's new content and its index entry. */
export async function saveNewContent(o: SaveOptions): Promise<SaveReport> {
  const started = Date.now();
  const report: SaveReport = { packsSaved: 0, packsExisting: 0, packsRefused: 0, packsSkippedForSize: 0, bytesSaved: 0, workingSetBytes: 0, seconds: 0 };
  const current = await exportIndex(o.storage);
  const known = new Set([...packOfBlob(o.restored).keys(), ...Object.keys(current.inline), ...Object.keys(o.restored.inline)]);
  const sizes = new Map<string, number>();
  for (const digests of Object.values(current.blobs)) {
    for (const v of digests) {
      const d = tryParseDigest(v);
      const size = d ? await o.storage.blobs.stat(d) : undefined;
      if (size !== undefined) sizes.set(v, size);
    }
  }
  const added: PersistIndex = { ...current, packs: {} };
  const staging = join(o.storage.layout.tmpDir, `save-${randomBytes(6).toString('hex')}`);
  try {
    let budgetBytes = o.maxSaveBytes;
    let refusedInARow = 0;
    for (const group of groupNewBlobs(current.blobs, known, sizes, o.maxPacks)) {
      const key = packKey(o.prefix, group.digests);
      if (await o.cache.exists(key, PACK_PATH)) {
        added.packs[key] = { digests: group.digests, size: group.size };
        report.packsExisting++;
        continue;
      }
      if (group.size > budgetBytes) {
        report.packsSkippedForSize++;
        continue;
      }
      const workspace = join(staging, key);
      await stagePack(o.storage, workspace, group.digests);
      let outcome = refusedInARow >= 2 ? 'refused' : await o.cache.save(workspace, PACK_PATH, key);
      // Refused: rate-limited (429), or the service is gone (the client cannot tell us which).
      // A few backed-off tries within the budget, and after two packs refused in a row, no more.
      for (let attempt = 0; outcome === 'refused' && refusedInARow < 2 && attempt < 3 && Date.now() - started < o.budgetMs; attempt++) {
        await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
        outcome = await o.cache.save(workspace, PACK_PATH, key);
      }
      refusedInARow = outcome === 'refused' || outcome === 'failed' ? refusedInARow + 1 : 0;
      await rm(workspace, { recursive: true, force: true });
      if (outcome === 'saved' || outcome === 'exists') {
        added.packs[key] = { digests: group.digests, size: group.size };
        if (outcome === 'saved') {
          report.packsSaved++;
          report.bytesSaved += group.size;
          budgetBytes -= group.size;
        } else {
          report.packsExisting++;
        }
      } else {
        report.packsRefused++;
      }
    }
    const merged = mergeIndex(o.restored, added);
    report.workingSetBytes = Object.values(merged.packs).reduce((a, p) => a + p.size, 0);
    if (JSON.stringify(merged) !== JSON.stringify(o.restored)) {
      const key = indexKey(o.prefix, o.env, o.matrix);
      const workspace = join(staging, 'index');
      await mkdir(join(workspace, INDEX_PATH), { recursive: true });
      await writeFile(join(workspace, INDEX_PATH, INDEX_FILE), JSON.stringify(merged));
      if ((await o.cache.save(workspace, INDEX_PATH, key)) === 'saved') report.indexKey = key;
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
    report.seconds = (Date.now() - started) / 1000;
  }
  return report;
}
