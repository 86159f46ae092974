// Saves what the job added to the Actions cache: the new blobs, grouped per image into
// content-addressed packs (matrix legs fetching the same image compute the same key, and
// the second finds it with a lookup, which is not rate-limited, and uploads nothing), a
// bounded number of entries per job, a refused reservation looked up again with a backoff
// within a time budget; then the job's index entry: the union of what it restored and added,
// uploaded only when that differs from what was restored. Once the service refuses creations
// for its rate limit, no further pack is tried: the index, without which the saved packs are
// of no use, waits for the window the service names, within the budget. Packs this job found
// evicted or broken leave the index, and their blobs are packed again under another key.
// With `registry` (the `persist-registry` input), the :5000 registry's repositories are
// described and packed too, a pack per repository like the cache's images; the index keeps
// only the registry manifests (and their tags) whose every blob a pack or the index holds.
import { link, mkdir, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Storage } from '../storage/index.js';
import { tryParseDigest } from '../oci/index.js';
import { INDEX_FILE, INDEX_PATH, PACK_PATH, indexKey, packKey } from './keys.js';
import { mergeIndex, packOfBlob, type PersistIndex } from './persist-index.js';
import { exportIndex } from './index-sync.js';
import { packFileName } from './pack-restore.js';
import { pruneRegistry } from './registry-index.js';
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
  /**
   * Packs of the restored index this job found missing (evicted) or broken: dropped from the
   * index, their blobs packed again under another key.
   */
  unusable?: string[];
  /** Save the :5000 registry's repositories too (the `persist-registry` input). */
  registry?: boolean;
  /** Waits (tests shorten it). */
  sleep?: (ms: number) => Promise<void>;
}

/** What became of the job's index entry. */
export type IndexOutcome = 'saved' | 'unchanged' | 'exists' | 'refused' | 'failed';

/** What a save did, for the job summary. */
export interface SaveReport {
  packsSaved: number;
  /** Packs another job had saved already (found by a lookup: nothing uploaded). */
  packsExisting: number;
  /** Packs the service refused to reserve: rate-limited, or being uploaded by another job. */
  packsRefused: number;
  /** Of the refused packs, those refused for the rate limit (or not tried after one). */
  packsRateLimited: number;
  /** Packs whose upload failed (the service failing). */
  packsFailed: number;
  packsSkippedForSize: number;
  /** Missing or broken packs dropped from the index. */
  packsDropped: number;
  bytesSaved: number;
  indexKey?: string;
  index: IndexOutcome;
  /** Bytes of every pack the index now names: the working set. */
  workingSetBytes: number;
  seconds: number;
}

interface Group {
  digests: string[];
  size: number;
}

/**
 * Groups new blobs per image, merging the smallest groups beyond `maxPacks`; the groups come in
 * the order their first blob entered the store (`firstSeen`, ms): the index keeps that order,
 * and the next run's prefetch restores packs in it, what the job used first, first.
 */
export function groupNewBlobs(blobsByRepo: Record<string, string[]>, known: Set<string>, sizes: Map<string, number>, maxPacks: number, firstSeen: Map<string, number> = new Map()): Group[] {
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
  const first = (g: Group) => Math.min(...g.digests.map((d) => firstSeen.get(d) ?? Infinity));
  return groups.sort((x, y) => {
    const [a, b] = [first(x), first(y)];
    return a < b ? -1 : a > b ? 1 : 0;
  });
}

async function stagePack(storage: Storage, workspace: string, digests: string[]): Promise<void> {
  const dir = join(workspace, PACK_PATH);
  await mkdir(dir, { recursive: true });
  for (const v of digests) {
    const d = tryParseDigest(v)!;
    await link(storage.layout.blob(d), join(dir, packFileName(d)));
  }
}

/** JSON with object keys sorted: equal for equal content whatever the insertion order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

/** `index` without the packs in `drop`. */
function withoutPacks(index: PersistIndex, drop: ReadonlySet<string>): PersistIndex {
  return { ...index, packs: Object.fromEntries(Object.entries(index.packs).filter(([k]) => !drop.has(k))) };
}

/** Saves the job's new content and its index entry. */
export async function saveNewContent(o: SaveOptions): Promise<SaveReport> {
  const started = Date.now();
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const left = () => o.budgetMs - (Date.now() - started);
  const report: SaveReport = {
    packsSaved: 0,
    packsExisting: 0,
    packsRefused: 0,
    packsRateLimited: 0,
    packsFailed: 0,
    packsSkippedForSize: 0,
    packsDropped: 0,
    bytesSaved: 0,
    index: 'unchanged',
    workingSetBytes: 0,
    seconds: 0,
  };
  const unusable = new Set((o.unusable ?? []).filter((k) => o.restored.packs[k] !== undefined));
  const restored = withoutPacks(o.restored, unusable);
  report.packsDropped = unusable.size;
  const current = await exportIndex(o.storage, { registry: !!o.registry });
  // A broken pack's blobs that passed verification are in the store, but clients got them as
  // disk hits, which link no repository: back under the repositories the index lists them
  // for, so that they are packed again with the rest.
  for (const key of unusable) {
    for (const v of o.restored.packs[key]!.digests) {
      const d = tryParseDigest(v);
      if (!d || (await o.storage.blobs.stat(d)) === undefined) continue;
      for (const [from, into] of [[o.restored.blobs, current.blobs], ...(current.registry ? [[o.restored.registry?.blobs ?? {}, current.registry.blobs]] : [])] as const) {
        for (const [repo, digests] of Object.entries(from)) {
          if (!digests.includes(v)) continue;
          const list = (into[repo] ??= []);
          if (!list.includes(v)) list.push(v);
        }
      }
    }
  }
  const known = new Set([...packOfBlob(restored).keys(), ...Object.keys(current.inline), ...Object.keys(restored.inline)]);
  // The registry's repositories are grouped apart from the cache's, and after them ("~" cannot
  // start a repository name, and sorts after every one): a layer both hold stays in the cache's
  // pack, whose key is then the same with or without persist-registry.
  const blobsByRepo: Record<string, string[]> = { ...current.blobs };
  for (const [repo, digests] of Object.entries(current.registry?.blobs ?? {})) blobsByRepo[`~5000/${repo}`] = digests;
  const sizes = new Map<string, number>();
  /** When each blob entered the store (its file's mtime): the order the job first used them. */
  const firstSeen = new Map<string, number>();
  for (const digests of Object.values(blobsByRepo)) {
    for (const v of digests) {
      const d = tryParseDigest(v);
      const info = d ? await o.storage.blobs.statInfo(d) : undefined;
      if (!info) continue;
      sizes.set(v, info.size);
      firstSeen.set(v, info.mtimeMs);
    }
  }
  const added: PersistIndex = { ...current, packs: {} };
  const staging = join(o.storage.layout.tmpDir, `save-${randomBytes(6).toString('hex')}`);
  try {
    let budgetBytes = o.maxSaveBytes;
    let rateLimited = false;
    /** Refused without a rate limit: another job may be uploading the same pack right now. */
    const refused: Array<{ key: string; group: Group }> = [];
    for (const group of groupNewBlobs(blobsByRepo, known, sizes, o.maxPacks, firstSeen)) {
      const key = packKey(o.prefix, group.digests, unusable);
      if (await o.cache.exists(key, PACK_PATH)) {
        added.packs[key] = { digests: group.digests, size: group.size };
        report.packsExisting++;
        continue;
      }
      if (rateLimited) {
        // Creations are refused for a while: what is left of the window goes to the index.
        report.packsRefused++;
        report.packsRateLimited++;
        continue;
      }
      if (group.size > budgetBytes) {
        report.packsSkippedForSize++;
        continue;
      }
      const workspace = join(staging, key);
      await stagePack(o.storage, workspace, group.digests);
      const r = await o.cache.save(workspace, PACK_PATH, key);
      await rm(workspace, { recursive: true, force: true });
      if (r.outcome === 'saved') {
        added.packs[key] = { digests: group.digests, size: group.size };
        report.packsSaved++;
        report.bytesSaved += group.size;
        budgetBytes -= group.size;
      } else if (r.outcome === 'exists') {
        added.packs[key] = { digests: group.digests, size: group.size };
        report.packsExisting++;
      } else if (r.outcome === 'refused' && r.rateLimited) {
        rateLimited = true;
        report.packsRefused++;
        report.packsRateLimited++;
      } else if (r.outcome === 'refused') {
        refused.push({ key, group });
      } else {
        report.packsFailed++;
      }
    }
    // A pack another job is uploading: looked up again, backing off, within the budget.
    for (let attempt = 0; refused.length > 0 && attempt < 3; attempt++) {
      const wait = 2000 * 2 ** attempt;
      if (left() < wait) break;
      await sleep(wait);
      for (const r of [...refused]) {
        if (await o.cache.exists(r.key, PACK_PATH)) {
          added.packs[r.key] = { digests: r.group.digests, size: r.group.size };
          report.packsExisting++;
          refused.splice(refused.indexOf(r), 1);
        }
      }
    }
    report.packsRefused += refused.length;
    const merged = pruneRegistry(mergeIndex(restored, added));
    report.workingSetBytes = Object.values(merged.packs).reduce((a, p) => a + p.size, 0);
    // Nothing new (the union is what was restored): no upload at all.
    if (canonical(merged) !== canonical(o.restored)) {
      const key = indexKey(o.prefix, o.env, o.matrix);
      const workspace = join(staging, 'index');
      await mkdir(join(workspace, INDEX_PATH), { recursive: true });
      await writeFile(join(workspace, INDEX_PATH, INDEX_FILE), JSON.stringify(merged));
      // The index is what makes the packs usable: when rate-limited, wait for the window
      // (the service says how long) within the budget.
      for (let attempt = 0; ; attempt++) {
        const r = await o.cache.save(workspace, INDEX_PATH, key);
        report.index = r.outcome === 'saved' ? 'saved' : r.outcome;
        if (r.outcome === 'saved') report.indexKey = key;
        if (!(r.outcome === 'refused' && r.rateLimited)) break;
        const wait = (r.retryAfterMs ?? 5000 * 2 ** attempt) + 1000;
        if (left() < wait) break;
        await sleep(wait);
      }
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
    report.seconds = (Date.now() - started) / 1000;
  }
  return report;
}
