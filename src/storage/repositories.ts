// Repository metadata: which blobs a repository may serve, its manifest revisions, tags
// and referrers, as small records (fs-records.ts under the storage root, or objects in a
// bucket). Reads are answered from a bounded in-memory cache kept coherent by routing every
// write through this class: for good when this process is the only writer (the filesystem,
// behind the storage lock), for `ttlMs` when other servers write the same bucket; a read that
// fails on a bucket is answered from an expired entry when there is one, and a blob link this
// server saw still answers while the bucket fails.
import type { Records } from './backend.js';
import type { RecordKeys } from './layout.js';
import { parseManifest, tryParseDigest, type Descriptor, type Digest } from '../oci/index.js';

/** What is recorded for each manifest revision of a repository. */
export interface ManifestRecord {
  mediaType: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  /** Digest of the manifest this one refers to (its `subject`), if any. */
  subject?: string;
}

/**
 * The record of manifest bytes `body` of media type `mediaType`, as the pull-through cache and
 * the index import store it: its subject, and what its referrers entry lists besides, as the
 * registry port records a push (the spec's artifactType: the manifest's own, else its config's
 * media type; its annotations). A body the parser refuses still records the subject it names.
 */
export function manifestRecordOf(body: Uint8Array, mediaType: string): ManifestRecord {
  const record: ManifestRecord = { mediaType, size: body.byteLength };
  try {
    const m = parseManifest(body, mediaType);
    if (m.artifactType) record.artifactType = m.artifactType;
    if (m.annotations) record.annotations = m.annotations;
    if (m.subject) record.subject = m.subject.digest;
  } catch {
    const subject = namedSubject(body);
    if (subject) record.subject = subject;
  }
  return record;
}

/** The subject digest a manifest the parser refused names, if any. */
function namedSubject(body: Uint8Array): string | undefined {
  try {
    const doc = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')) as { subject?: { digest?: unknown } };
    return typeof doc.subject?.digest === 'string' && tryParseDigest(doc.subject.digest) ? doc.subject.digest : undefined;
  } catch {
    return undefined;
  }
}

const CACHE_ENTRIES = 100_000;

/** How long a read is trusted when other servers write the same records: tags, mostly. */
export const SHARED_RECORD_TTL_MS = 2_000;

/** A remembered read: the value and when it stops being fresh. */
interface Remembered<V> {
  value: V;
  freshUntil: number;
}

/** Manifests, tags, blob links and referrers of every repository of one tree. */
export class Repositories {
  private readonly tagCache = new Map<string, Remembered<string | null>>();
  private readonly revisionCache = new Map<string, Remembered<ManifestRecord | null>>();
  /** Blob links this server wrote or read (on a bucket: answers only while the bucket fails). */
  private readonly linksSeen = new Set<string>();
  private readonly ttlMs: number;

  constructor(
    private readonly records: Records,
    private readonly keys: RecordKeys,
    opts: { ttlMs?: number } = {},
  ) {
    this.ttlMs = opts.ttlMs ?? (records.exclusive ? Number.POSITIVE_INFINITY : SHARED_RECORD_TTL_MS);
  }

  // ---- blob links ----

  /**
   * Lets `name` serve blob `d`. BlobLifetime's tool: other code links through the lifetime
   * owner (`storage.lifetime.link`, or a publish with a link), which serializes it with deletes.
   */
  async writeBlobLink(name: string, d: Digest): Promise<void> {
    const key = this.keys.layerLink(name, d);
    if (!(await this.records.has(key))) await this.records.write(key, d.value);
    this.sawLink(key);
  }

  /**
   * True when `name` links blob `d`. Always asked of the records (a link another server removed
   * shows at once); on a bucket that fails, a link this server saw answers, as a stale tag does.
   */
  async hasBlobLink(name: string, d: Digest): Promise<boolean> {
    const key = this.keys.layerLink(name, d);
    let linked: boolean;
    try {
      linked = await this.records.has(key);
    } catch (err) {
      if (!this.records.exclusive && this.linksSeen.has(key)) return true;
      throw err;
    }
    if (linked) this.sawLink(key);
    else this.linksSeen.delete(key);
    return linked;
  }

  /** Digests of every blob linked into `name`. */
  listBlobLinks(name: string): Promise<Digest[]> {
    return this.digestsUnder(this.keys.layerLinks(name));
  }

  /** Removes the link of blob `d` from `name`; true when it existed. BlobLifetime's tool, as {@link writeBlobLink}. */
  removeBlobLink(name: string, d: Digest): Promise<boolean> {
    const key = this.keys.layerLink(name, d);
    this.linksSeen.delete(key);
    return this.records.remove(key);
  }

  // ---- manifests ----

  /** Records manifest `d` in `name`, and its referrer entry when it has a subject. */
  async putManifest(name: string, d: Digest, record: ManifestRecord): Promise<void> {
    const subject = record.subject ? tryParseDigest(record.subject) : undefined;
    if (subject) {
      const descriptor: Descriptor = { mediaType: record.mediaType, digest: d.value, size: record.size };
      if (record.artifactType) descriptor.artifactType = record.artifactType;
      if (record.annotations) descriptor.annotations = record.annotations;
      await this.records.write(this.keys.referrer(name, subject, d), JSON.stringify(descriptor));
    }
    await this.records.write(this.keys.manifestRevision(name, d), JSON.stringify(record));
    this.remember(this.revisionCache, `${name}\0${d.value}`, record);
  }

  /** The record of manifest `d` in `name`, or undefined. */
  getManifest(name: string, d: Digest): Promise<ManifestRecord | undefined> {
    return this.cachedRead(this.revisionCache, `${name}\0${d.value}`, async () => {
      const data = await this.records.read(this.keys.manifestRevision(name, d));
      return data ? (JSON.parse(data.toString('utf8')) as ManifestRecord) : null;
    });
  }

  /** Removes manifest `d` from `name` with the tags that point at it and its referrer entry. */
  async deleteManifest(name: string, d: Digest): Promise<boolean> {
    const record = await this.getManifest(name, d);
    if (!record) return false;
    for (const tag of (await this.listTags(name)) ?? []) {
      if ((await this.resolveTag(name, tag)) === d.value) await this.deleteTag(name, tag);
    }
    const subject = record.subject ? tryParseDigest(record.subject) : undefined;
    if (subject) await this.records.remove(this.keys.referrer(name, subject, d));
    await this.records.remove(this.keys.manifestRevision(name, d));
    this.revisionCache.delete(`${name}\0${d.value}`);
    return true;
  }

  /** Digests of every manifest revision of `name`. */
  listManifests(name: string): Promise<Digest[]> {
    return this.digestsUnder(this.keys.manifestRevisions(name));
  }

  // ---- tags ----

  /** Points `tag` of `name` at manifest `d` (one record per tag, replaced whole: the last writer wins). */
  async putTag(name: string, tag: string, d: Digest): Promise<void> {
    await this.records.write(this.keys.tag(name, tag), JSON.stringify({ digest: d.value }));
    this.remember(this.tagCache, `${name}\0${tag}`, d.value);
  }

  /** The digest `tag` of `name` points at, or undefined. */
  resolveTag(name: string, tag: string): Promise<string | undefined> {
    return this.cachedRead(this.tagCache, `${name}\0${tag}`, async () => {
      const data = await this.records.read(this.keys.tag(name, tag));
      return data ? (JSON.parse(data.toString('utf8')) as { digest: string }).digest : null;
    });
  }

  /** Removes `tag` from `name`; true when it existed. */
  async deleteTag(name: string, tag: string): Promise<boolean> {
    const removed = await this.records.remove(this.keys.tag(name, tag));
    this.remember(this.tagCache, `${name}\0${tag}`, null);
    return removed;
  }

  /** Every tag of `name`, sorted; undefined when the repository does not exist. */
  async listTags(name: string): Promise<string[] | undefined> {
    const tags = await this.records.children(this.keys.tags(name));
    if (tags.length > 0) return tags.sort();
    return (await this.exists(name)) ? [] : undefined;
  }

  // ---- referrers ----

  /** Descriptors of the manifests in `name` whose subject is `subject`. */
  async listReferrers(name: string, subject: Digest): Promise<Descriptor[]> {
    const prefix = this.keys.referrers(name, subject);
    const entries = (await this.records.children(prefix)).sort();
    const out: Descriptor[] = [];
    for (const e of entries) {
      const data = await this.records.read(`${prefix}/${e}`).catch(() => undefined);
      if (!data) continue;
      try {
        out.push(JSON.parse(data.toString('utf8')) as Descriptor);
      } catch {
        // A torn or foreign record is skipped, as a missing one.
      }
    }
    return out;
  }

  // ---- repositories ----

  /**
   * True when `name` has any metadata of its own. A prefix that only holds nested
   * repositories (`a` of `a/b`) is not a repository: its records start with `_`.
   */
  async exists(name: string): Promise<boolean> {
    return (await this.records.children(this.keys.repository(name))).some((e) => e.startsWith('_'));
  }

  /** Every repository name, sorted. */
  async list(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      const entries = await this.records.children(rel ? this.keys.repository(rel) : this.keys.repositories);
      if (rel && entries.some((e) => e.startsWith('_'))) out.push(rel);
      for (const e of entries) if (!e.startsWith('_')) await walk(rel ? `${rel}/${e}` : e);
    };
    await walk('');
    return out.sort();
  }

  /** Removes a whole repository's metadata (blobs stay until garbage collection). */
  async remove(name: string): Promise<void> {
    await this.records.removeTree(this.keys.repository(name));
    this.tagCache.clear();
    this.revisionCache.clear();
    this.linksSeen.clear();
  }

  /** Digests named by the records `<prefix>/<algorithm>/<hex>`. */
  private async digestsUnder(prefix: string): Promise<Digest[]> {
    const out: Digest[] = [];
    for (const algorithm of await this.records.children(prefix)) {
      for (const hex of await this.records.children(`${prefix}/${algorithm}`)) {
        const d = tryParseDigest(`${algorithm}:${hex}`);
        if (d) out.push(d);
      }
    }
    return out;
  }

  /** A remembered value while fresh; else `read`, remembered; a failed read falls back to an expired value. */
  private async cachedRead<V>(cache: Map<string, Remembered<V | null>>, key: string, read: () => Promise<V | null>): Promise<V | undefined> {
    const cached = cache.get(key);
    if (cached && cached.freshUntil > Date.now()) return cached.value ?? undefined;
    let value: V | null;
    try {
      value = await read();
    } catch (err) {
      if (cached && !this.records.exclusive) return cached.value ?? undefined;
      throw err;
    }
    // On a shared bucket a manifest revision missing now may be put by another server the next
    // moment (a multi-arch push whose children and index reach different servers): only what
    // exists is remembered. A missing tag is remembered as a tag is, for the TTL.
    if (value !== null || this.records.exclusive || cache !== this.revisionCache) this.remember(cache, key, value);
    return value ?? undefined;
  }

  private sawLink(key: string): void {
    if (this.records.exclusive) return;
    if (this.linksSeen.size >= CACHE_ENTRIES && !this.linksSeen.has(key)) this.linksSeen.delete(this.linksSeen.values().next().value as string);
    this.linksSeen.add(key);
  }

  private remember<V>(cache: Map<string, Remembered<V>>, key: string, value: V): void {
    if (cache.size >= CACHE_ENTRIES && !cache.has(key)) cache.delete(cache.keys().next().value as string);
    cache.set(key, { value, freshUntil: Date.now() + this.ttlMs });
  }
}
