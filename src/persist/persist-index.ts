// The persistence index: what the Actions cache holds for this repository, carried in one
// small entry per job. Tags (hints: revalidated as usual, never taken as fresh), manifests
// and small blobs inline, and for every other blob the pack entry that holds it. Each job
// writes the union of what it restored and what it added, so indexes converge. With the
// `persist-registry` input, the :5000 registry's repositories ride along in `registry`
// (pushed content: complete, its tags authoritative), sharing the packs and inline blobs.

/** A manifest carried inline. */
export interface IndexedManifest {
  mediaType: string;
  /** The manifest's bytes, base64. */
  body: string;
  subject?: string;
}

/** One pack entry of the Actions cache. */
export interface IndexedPack {
  /** Digests of the blobs it holds. */
  digests: string[];
  size: number;
}

/** The index document. */
export interface PersistIndex {
  version: 1;
  /** Cache-port repository (`docker.io/library/alpine`) → tag → manifest digest. */
  tags: Record<string, Record<string, string>>;
  /** Repository → digests of the manifests it holds. */
  manifests: Record<string, Record<string, IndexedManifest>>;
  /** Repository → digests of its blobs (to group them per image). */
  blobs: Record<string, string[]>;
  /** Small blobs (configs) inline, base64, by digest. */
  inline: Record<string, string>;
  /** Pack key → what it holds. */
  packs: Record<string, IndexedPack>;
  /** The :5000 registry's repositories (their blobs in `packs` and `inline` like the cache's). */
  registry?: IndexedRepositories;
}

/** Tags, manifests and blob lists of a set of repositories (the registry's). */
export interface IndexedRepositories {
  /** Repository → tag → manifest digest. */
  tags: Record<string, Record<string, string>>;
  manifests: Record<string, Record<string, IndexedManifest>>;
  blobs: Record<string, string[]>;
}

/** An empty index. */
export function emptyIndex(): PersistIndex {
  return { version: 1, tags: {}, manifests: {}, blobs: {}, inline: {}, packs: {} };
}

/** Parses an index file's text; an unreadable one is treated as empty. */
export function parseIndex(text: string): PersistIndex {
  try {
    const doc = JSON.parse(text) as Partial<PersistIndex>;
    if (doc.version !== 1) return emptyIndex();
    return { ...emptyIndex(), ...doc } as PersistIndex;
  } catch {
    return emptyIndex();
  }
}

/** `b` merged over `a` (newer knowledge wins for tags; everything else is a union). */
export function mergeIndex(a: PersistIndex, b: PersistIndex): PersistIndex {
  const out = emptyIndex();
  for (const src of [a, b]) {
    for (const [repo, tags] of Object.entries(src.tags)) out.tags[repo] = { ...out.tags[repo], ...tags };
    for (const [repo, ms] of Object.entries(src.manifests)) out.manifests[repo] = { ...out.manifests[repo], ...ms };
    for (const [repo, ds] of Object.entries(src.blobs)) out.blobs[repo] = [...new Set([...(out.blobs[repo] ?? []), ...ds])].sort();
    Object.assign(out.inline, src.inline);
    Object.assign(out.packs, src.packs);
    if (src.registry) out.registry = mergeRepositories(out.registry ?? emptyRepositories(), src.registry);
  }
  return out;
}

/** No repositories. */
export function emptyRepositories(): IndexedRepositories {
  return { tags: {}, manifests: {}, blobs: {} };
}

/** `b` merged over `a`: newer tags win, manifests and blobs are a union. */
function mergeRepositories(a: IndexedRepositories, b: IndexedRepositories): IndexedRepositories {
  const out = emptyRepositories();
  for (const src of [a, b]) {
    for (const [repo, tags] of Object.entries(src.tags)) out.tags[repo] = { ...out.tags[repo], ...tags };
    for (const [repo, ms] of Object.entries(src.manifests)) out.manifests[repo] = { ...out.manifests[repo], ...ms };
    for (const [repo, ds] of Object.entries(src.blobs)) out.blobs[repo] = [...new Set([...(out.blobs[repo] ?? []), ...ds])].sort();
  }
  return out;
}

/** Blob digest → pack key, for every packed blob. */
export function packOfBlob(index: PersistIndex): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, pack] of Object.entries(index.packs)) for (const d of pack.digests) out.set(d, key);
  return out;
}
