// What a pushed manifest needs to be served whole, and the index's registry part kept to
// manifests that have it. Pushed content is complete, unlike the cache's: a tag of the :5000
// registry is only worth carrying (or publishing) when its manifest, and every blob and child
// manifest that manifest names, can be had again.
import { manifestReferences, parseManifest } from '../oci/index.js';
import { packOfBlob, type IndexedManifest, type IndexedRepositories, type PersistIndex } from './persist-index.js';

/** The blobs (config, layers) and child manifests a manifest names. */
export interface ManifestNeeds {
  blobs: string[];
  children: string[];
}

/** What `body` names (as the registry checks it on push); undefined when it is no manifest regcache can read. */
export function manifestNeeds(body: Buffer, mediaType: string): ManifestNeeds | undefined {
  try {
    return manifestReferences(parseManifest(body, mediaType));
  } catch {
    return undefined;
  }
}

/**
 * The manifests of one repository that can be served whole: readable, every blob they name
 * `available`, every child manifest itself kept (to a fixed point: an index of a dropped
 * image is dropped too).
 */
export function completeManifests(manifests: Record<string, IndexedManifest>, available: (digest: string) => boolean): Set<string> {
  const needs = new Map<string, ManifestNeeds>();
  for (const [digest, m] of Object.entries(manifests)) {
    const n = manifestNeeds(Buffer.from(m.body, 'base64'), m.mediaType);
    if (n && n.blobs.every(available)) needs.set(digest, n);
  }
  for (let changed = true; changed; ) {
    changed = false;
    for (const [digest, n] of needs) {
      if (n.children.every((c) => needs.has(c))) continue;
      needs.delete(digest);
      changed = true;
    }
  }
  return new Set(needs.keys());
}

/**
 * `index` with its registry part kept to what can be restored: manifests whose blobs a pack
 * or the inline blobs hold (packs found evicted or broken have left the index already), tags
 * of those manifests, blobs that are held. Without it a tag whose layers were evicted would
 * travel from index to index.
 */
export function pruneRegistry(index: PersistIndex): PersistIndex {
  if (!index.registry) return index;
  const packed = packOfBlob(index);
  const held = (d: string) => packed.has(d) || index.inline[d] !== undefined;
  const out: IndexedRepositories = { tags: {}, manifests: {}, blobs: {} };
  const repos = new Set([...Object.keys(index.registry.manifests), ...Object.keys(index.registry.blobs)]);
  for (const repo of repos) {
    const manifests = index.registry.manifests[repo] ?? {};
    const kept = completeManifests(manifests, held);
    if (kept.size) out.manifests[repo] = Object.fromEntries(Object.entries(manifests).filter(([d]) => kept.has(d)));
    const tags = Object.entries(index.registry.tags[repo] ?? {}).filter(([, d]) => kept.has(d));
    if (tags.length) out.tags[repo] = Object.fromEntries(tags);
    const blobs = (index.registry.blobs[repo] ?? []).filter(held);
    if (blobs.length) out.blobs[repo] = blobs;
  }
  if (!Object.keys(out.manifests).length && !Object.keys(out.blobs).length) {
    const { registry: _dropped, ...rest } = index;
    return rest;
  }
  return { ...index, registry: out };
}
