// Repository metadata: which blobs a repository may serve, its manifest revisions, tags
// and referrers. Records are small files written atomically; reads are answered from a
// bounded in-memory cache kept coherent by routing every write through this class (one
// server process owns a storage root; see lock.ts).
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Layout } from './layout.js';
import { writeFileAtomic, readJson, removeFile, isNotFound } from './fs-util.js';
import { readdirOrEmpty } from './blob-store.js';
import { tryParseDigest, type Descriptor, type Digest } from '../oci/index.js';

/** What is recorded for each manifest revision of a repository. */
export interface ManifestRecord {
  mediaType: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  /** Digest of the manifest this one refers to (its `subject`), if any. */
  subject?: string;
}

const CACHE_ENTRIES = 100_000;

/** Manifests, tags, blob links and referrers of every repository under one root. */
export class Repositories {
  private readonly tagCache: Map<string, string | null> = new Map();
  private readonly revisionCache: Map<string, ManifestRecord | null> = new Map();

  constructor(private readonly layout: Layout) {}

  // ---- blob links ----

  /**
   * Lets `name` serve blob `d`. BlobLifetime's tool: other code links through the lifetime
   * owner (`storage.lifetime.link`, or a publish with a link), which serializes it with deletes.
   */
  async writeBlobLink(name: string, d: Digest): Promise<void> {
    const path = this.layout.layerLink(name, d);
    if (await exists(path)) return;
    await writeFileAtomic(this.layout.tmpDir, path, d.value);
  }

  /** True when `name` links blob `d`. */
  hasBlobLink(name: string, d: Digest): Promise<boolean> {
    return exists(this.layout.layerLink(name, d));
  }

  /** Digests of every blob linked into `name`. */
  async listBlobLinks(name: string): Promise<Digest[]> {
    const out: Digest[] = [];
    const dir = join(this.layout.repository(name), '_layers');
    for (const algorithm of await readdirOrEmpty(dir)) {
      for (const hex of await readdirOrEmpty(join(dir, algorithm))) {
        const d = tryParseDigest(`${algorithm}:${hex}`);
        if (d) out.push(d);
      }
    }
    return out;
  }

  /** Removes the link of blob `d` from `name`; true when it existed. BlobLifetime's tool, as {@link writeBlobLink}. */
  removeBlobLink(name: string, d: Digest): Promise<boolean> {
    return removeFile(this.layout.layerLink(name, d));
  }

  // ---- manifests ----

  /** Records manifest `d` in `name`, and its referrer entry when it has a subject. */
  async putManifest(name: string, d: Digest, record: ManifestRecord): Promise<void> {
    const subject = record.subject ? tryParseDigest(record.subject) : undefined;
    if (subject) {
      const descriptor: Descriptor = { mediaType: record.mediaType, digest: d.value, size: record.size };
      if (record.artifactType) descriptor.artifactType = record.artifactType;
      if (record.annotations) descriptor.annotations = record.annotations;
      await writeFileAtomic(this.layout.tmpDir, this.layout.referrer(name, subject, d), JSON.stringify(descriptor));
    }
    await writeFileAtomic(this.layout.tmpDir, this.layout.manifestRevision(name, d), JSON.stringify(record));
    this.remember(this.revisionCache, `${name}\0${d.value}`, record);
  }

  /** The record of manifest `d` in `name`, or undefined. */
  async getManifest(name: string, d: Digest): Promise<ManifestRecord | undefined> {
    const key = `${name}\0${d.value}`;
    const cached = this.revisionCache.get(key);
    if (cached !== undefined) return cached ?? undefined;
    const record = await readJson<ManifestRecord>(this.layout.manifestRevision(name, d));
    this.remember(this.revisionCache, key, record ?? null);
    return record;
  }

  /** Removes manifest `d` from `name` with the tags that point at it and its referrer entry. */
  async deleteManifest(name: string, d: Digest): Promise<boolean> {
    const record = await this.getManifest(name, d);
    if (!record) return false;
    for (const tag of (await this.listTags(name)) ?? []) {
      if ((await this.resolveTag(name, tag)) === d.value) await this.deleteTag(name, tag);
    }
    const subject = record.subject ? tryParseDigest(record.subject) : undefined;
    if (subject) await removeFile(this.layout.referrer(name, subject, d));
    await removeFile(this.layout.manifestRevision(name, d));
    this.revisionCache.delete(`${name}\0${d.value}`);
    return true;
  }

  /** Digests of every manifest revision of `name`. */
  async listManifests(name: string): Promise<Digest[]> {
    const out: Digest[] = [];
    const dir = this.layout.manifestRevisions(name);
    for (const algorithm of await readdirOrEmpty(dir)) {
      for (const hex of await readdirOrEmpty(join(dir, algorithm))) {
        const d = tryParseDigest(`${algorithm}:${hex}`);
        if (d) out.push(d);
      }
    }
    return out;
  }

  // ---- tags ----

  /** Points `tag` of `name` at manifest `d`. */
  async putTag(name: string, tag: string, d: Digest): Promise<void> {
    await writeFileAtomic(this.layout.tmpDir, this.layout.tag(name, tag), JSON.stringify({ digest: d.value }));
    this.remember(this.tagCache, `${name}\0${tag}`, d.value);
  }

  /** The digest `tag` of `name` points at, or undefined. */
  async resolveTag(name: string, tag: string): Promise<string | undefined> {
    const key = `${name}\0${tag}`;
    const cached = this.tagCache.get(key);
    if (cached !== undefined) return cached ?? undefined;
    const rec = await readJson<{ digest: string }>(this.layout.tag(name, tag));
    this.remember(this.tagCache, key, rec?.digest ?? null);
    return rec?.digest;
  }

  /** Removes `tag` from `name`; true when it existed. */
  async deleteTag(name: string, tag: string): Promise<boolean> {
    const removed = await removeFile(this.layout.tag(name, tag));
    this.tagCache.set(`${name}\0${tag}`, null);
    return removed;
  }

  /** Every tag of `name`, sorted; undefined when the repository does not exist. */
  async listTags(name: string): Promise<string[] | undefined> {
    try {
      return (await readdir(this.layout.tags(name))).sort();
    } catch (err) {
      if (!isNotFound(err)) throw err;
      return (await this.exists(name)) ? [] : undefined;
    }
  }

  // ---- referrers ----

  /** Descriptors of the manifests in `name` whose subject is `subject`. */
  async listReferrers(name: string, subject: Digest): Promise<Descriptor[]> {
    const dir = this.layout.referrers(name, subject);
    const entries = (await readdirOrEmpty(dir)).sort();
    const out: Descriptor[] = [];
    for (const e of entries) {
      const d = await readJson<Descriptor>(join(dir, e)).catch(() => undefined);
      if (d) out.push(d);
    }
    return out;
  }

  // ---- repositories ----

  /**
   * True when `name` has any metadata of its own. A directory that only holds nested
   * repositories (`a` of `a/b`) is not a repository: its records start with `_`.
   */
  async exists(name: string): Promise<boolean> {
    return (await readdirOrEmpty(this.layout.repository(name))).some((e) => e.startsWith('_'));
  }

  /** Every repository name, sorted. */
  async list(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      const entries = await readdirOrEmpty(join(this.layout.repositoriesDir, rel));
      if (rel && entries.some((e) => e.startsWith('_'))) out.push(rel);
      for (const e of entries) if (!e.startsWith('_')) await walk(rel ? `${rel}/${e}` : e);
    };
    await walk('');
    return out.sort();
  }

  /** Removes a whole repository's metadata (blobs stay until garbage collection). */
  async remove(name: string): Promise<void> {
    await rm(this.layout.repository(name), { recursive: true, force: true });
    this.tagCache.clear();
    this.revisionCache.clear();
  }

  private remember<V>(cache: Map<string, V>, key: string, value: V): void {
    if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value as string);
    cache.set(key, value);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}
