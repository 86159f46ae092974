// Moves what the index carries between it and the store: at startup the server imports the
// restored index's manifests, small blobs and tags (tags as hints: they are revalidated on
// first use); at the end of the job the store is described as an index again.
import type { Repositories, Storage } from '../storage/index.js';
import { MAX_MANIFEST_SIZE } from '../storage/index.js';
import { digestOf, parseManifest, tryParseDigest } from '../oci/index.js';
import { PROBE_REPOSITORY } from '../proxy/index.js';
import { emptyIndex, emptyRepositories, type IndexedRepositories, type PersistIndex } from './persist-index.js';

/** Configs and other blobs up to this size travel inline in the index. */
export const INLINE_LIMIT = 64 * 1024;

/** Imports a restored index into the cache's records; entries that fail verification are skipped. */
export async function importIndex(storage: Storage, index: PersistIndex): Promise<{ manifests: number; inline: number; rejected: number }> {
  const repos = storage.cacheRepositories;
  const out = { manifests: 0, inline: 0, rejected: 0 };
  for (const [digest, b64] of Object.entries(index.inline)) {
    const d = tryParseDigest(digest);
    const data = Buffer.from(b64, 'base64');
    if (!d || digestOf(data, d.algorithm).value !== d.value) {
      out.rejected++;
      continue;
    }
    await storage.blobs.putBytes(d, data);
    out.inline++;
  }
  for (const [repo, manifests] of Object.entries(index.manifests)) {
    for (const [digest, m] of Object.entries(manifests)) {
      const d = tryParseDigest(digest);
      const body = Buffer.from(m.body, 'base64');
      if (!d || digestOf(body, d.algorithm).value !== d.value) {
        out.rejected++;
        continue;
      }
      // Held from its bytes to its record: no eviction or gc falls between (BlobLifetime).
      await storage.blobs.lifetime.holding([d.value], async () => {
        await storage.blobs.putBytes(d, body);
        await repos.putManifest(repo, d, { mediaType: m.mediaType, size: body.byteLength, ...(m.subject ? { subject: m.subject } : {}) });
      });
      out.manifests++;
    }
    for (const digest of index.blobs[repo] ?? []) {
      const d = tryParseDigest(digest);
      if (d && index.inline[digest] !== undefined) await storage.blobs.lifetime.link({ repositories: repos, name: repo }, d);
    }
  }
  for (const [repo, tags] of Object.entries(index.tags)) {
    for (const [tag, digest] of Object.entries(tags)) {
      const d = tryParseDigest(digest);
      if (d && (await repos.getManifest(repo, d))) await repos.putTag(repo, tag, d);
    }
  }
  return out;
}

/**
 * Describes the cache's current records as an index (packs left empty: the saver fills them),
 * and with `registry` the :5000 registry's repositories too. The mirror probe is left out:
 * every server installs it itself.
 */
export async function exportIndex(storage: Storage, o: { registry?: boolean } = {}): Promise<PersistIndex> {
  const index = emptyIndex();
  await exportRepositories(storage, storage.cacheRepositories, index, index.inline, (repo) => repo.endsWith(`/${PROBE_REPOSITORY}`));
  if (o.registry) {
    const registry = emptyRepositories();
    await exportRepositories(storage, storage.repositories, registry, index.inline, () => false);
    // An empty registry is no registry part (an index without pushes stays byte-equal).
    if (Object.keys(registry.manifests).length || Object.keys(registry.blobs).length) index.registry = registry;
  }
  return index;
}

/** Adds the tags, manifests (inline), configs (inline when small) and blob lists of `repos` to `into`. */
async function exportRepositories(storage: Storage, repos: Repositories, into: IndexedRepositories, inline: Record<string, string>, skip: (repo: string) => boolean): Promise<void> {
  for (const repo of await repos.list()) {
    if (skip(repo)) continue;
    const tags: Record<string, string> = {};
    for (const tag of (await repos.listTags(repo)) ?? []) {
      const d = await repos.resolveTag(repo, tag);
      if (d) tags[tag] = d;
    }
    if (Object.keys(tags).length) into.tags[repo] = tags;
    const manifests: IndexedRepositories['manifests'][string] = {};
    for (const d of await repos.listManifests(repo)) {
      const record = await repos.getManifest(repo, d);
      if (!record) continue;
      let body: Buffer;
      try {
        body = await storage.blobs.readSmall(d, MAX_MANIFEST_SIZE);
      } catch {
        continue;
      }
      manifests[d.value] = { mediaType: record.mediaType, body: body.toString('base64'), ...(record.subject ? { subject: record.subject } : {}) };
      try {
        const config = parseManifest(body, record.mediaType).config;
        const cd = config && tryParseDigest(config.digest);
        if (cd && config.size <= INLINE_LIMIT && (await storage.blobs.stat(cd)) !== undefined) {
          inline[cd.value] = (await storage.blobs.readSmall(cd, INLINE_LIMIT)).toString('base64');
        }
      } catch {
        // not an image manifest we can read: nothing inline
      }
    }
    if (Object.keys(manifests).length) into.manifests[repo] = manifests;
    const blobs = (await repos.listBlobLinks(repo)).map((d) => d.value).sort();
    if (blobs.length) into.blobs[repo] = blobs;
  }
}
