// The :5000 registry's content restored from the Actions cache (the `persist-registry`
// input). At startup the index's registry part is imported: manifests (inline in the index,
// verified against their digests), links of the blobs already on disk, and the tags of the
// manifests whose every blob is on disk or held by a pack the index names. Blobs follow on
// demand, like the cache's: a blob HEAD or GET that misses restores its pack. A manifest whose
// blobs are not all on disk is checked on its first GET or HEAD: its packs are restored before
// it is answered, and when one was evicted or is broken the manifest leaves the repository
// with its tags and the client gets MANIFEST_UNKNOWN, never a tag it cannot pull. Children of
// an index are checked when they are asked for.
import { MAX_MANIFEST_SIZE, type BlobHandle, type PutManifestResult, type RegistryBackend, type RegistryStore, type Storage, type StoredManifest, type UploadSession } from '../storage/index.js';
import { digestOf, isValidName, isValidTag, parseManifest, tryParseDigest, type Descriptor, type Digest, type Reference } from '../oci/index.js';
import { SingleFlight } from '../shared/index.js';
import type { PersistIndex } from './persist-index.js';
import { completeManifests, manifestNeeds } from './registry-index.js';

/** The read tier's part the registry uses. */
export interface BlobRestorer {
  /** True when a pack of the index holds `d`. */
  knows(d: Digest): boolean;
  /** Restores the pack holding `d`; true when `d` is in the store afterwards. */
  fetch(d: Digest): Promise<boolean>;
}

/** What the import did, for the statistics. */
export interface RegistryImportReport {
  manifests: number;
  tags: number;
  /** Manifests left out: unreadable, not matching their digest, or naming content nothing holds. */
  dropped: number;
  /** Tags left as they were: the storage already had them (a runner that kept its storage). */
  tagsKept: number;
}

/** What is still to restore, per repository. */
interface Pending {
  /** Blobs listed for the repository that are not on disk but a pack holds. */
  blobs: Map<string, Set<string>>;
  /** Manifests whose blobs are not all on disk yet. */
  manifests: Map<string, Set<string>>;
}

function add(map: Map<string, Set<string>>, repo: string, value: string): void {
  let set = map.get(repo);
  if (!set) map.set(repo, (set = new Set()));
  set.add(value);
}

/**
 * Imports the index's registry part into the registry's records. Returns the backend to serve
 * :5000 with (the registry store, restoring on demand) and what the import did.
 */
export async function importRegistry(
  storage: Storage,
  index: PersistIndex,
  restorer: BlobRestorer | undefined,
): Promise<{ backend: RestoringRegistry; report: RegistryImportReport }> {
  const report: RegistryImportReport = { manifests: 0, tags: 0, dropped: 0, tagsKept: 0 };
  const pending: Pending = { blobs: new Map(), manifests: new Map() };
  const section = index.registry ?? { tags: {}, manifests: {}, blobs: {} };
  const repos = storage.repositories;
  const onDisk = new Set<string>();
  const knownDigests = new Set<string>();
  for (const manifests of Object.values(section.manifests)) {
    for (const m of Object.values(manifests)) for (const d of manifestNeeds(Buffer.from(m.body, 'base64'), m.mediaType)?.blobs ?? []) knownDigests.add(d);
  }
  for (const digests of Object.values(section.blobs)) for (const d of digests) knownDigests.add(d);
  for (const v of knownDigests) {
    const d = tryParseDigest(v);
    if (d && (await storage.blobs.stat(d)) !== undefined) onDisk.add(v);
  }
  const available = (v: string) => {
    const d = tryParseDigest(v);
    return !!d && (onDisk.has(v) || (restorer?.knows(d) ?? false));
  };
  for (const repo of new Set([...Object.keys(section.manifests), ...Object.keys(section.blobs)])) {
    if (!isValidName(repo)) continue;
    const all = section.manifests[repo] ?? {};
    // Only manifests whose bytes hash to their digest are considered at all.
    const genuine = Object.fromEntries(
      Object.entries(all).filter(([digest, m]) => {
        const d = tryParseDigest(digest);
        return !!d && digestOf(Buffer.from(m.body, 'base64'), d.algorithm).value === d.value;
      }),
    );
    const kept = completeManifests(genuine, available);
    report.dropped += Object.keys(all).length - kept.size;
    for (const digest of kept) {
      const m = genuine[digest]!;
      const d = tryParseDigest(digest)!;
      const body = Buffer.from(m.body, 'base64');
      const parsed = parseManifest(body, m.mediaType);
      // Held from its bytes to its record: no eviction or gc falls between (BlobLifetime).
      await storage.blobs.lifetime.holding([d.value], async () => {
        await storage.blobs.putBytes(d, body);
        await repos.putManifest(repo, d, {
          mediaType: parsed.mediaType,
          size: body.byteLength,
          ...(parsed.artifactType ? { artifactType: parsed.artifactType } : {}),
          ...(parsed.annotations ? { annotations: parsed.annotations } : {}),
          ...(parsed.subject ? { subject: parsed.subject.digest } : {}),
        });
      });
      report.manifests++;
      const needs = manifestNeeds(body, m.mediaType)!;
      if (needs.blobs.some((b) => !onDisk.has(b))) add(pending.manifests, repo, digest);
    }
    const listed = new Set([...(section.blobs[repo] ?? []), ...[...kept].flatMap((k) => manifestNeeds(Buffer.from(genuine[k]!.body, 'base64'), genuine[k]!.mediaType)!.blobs)]);
    for (const v of listed) {
      const d = tryParseDigest(v);
      if (!d) continue;
      if (onDisk.has(v)) await storage.blobs.lifetime.link({ repositories: repos, name: repo }, d);
      else if (restorer?.knows(d)) add(pending.blobs, repo, v);
    }
    for (const [tag, digest] of Object.entries(section.tags[repo] ?? {})) {
      if (!isValidTag(tag) || !kept.has(digest)) continue;
      if ((await repos.resolveTag(repo, tag)) !== undefined) {
        report.tagsKept++;
        continue;
      }
      await repos.putTag(repo, tag, tryParseDigest(digest)!);
      report.tags++;
    }
  }
  return { backend: new RestoringRegistry(storage, restorer, pending), report };
}

/**
 * The registry store, restoring what the index holds on demand: blobs from their packs, and
 * manifests checked whole before they are first answered.
 */
export class RestoringRegistry implements RegistryBackend {
  private readonly base: RegistryStore;
  private readonly checks = new SingleFlight<boolean>();

  constructor(private readonly storage: Storage, private readonly restorer: BlobRestorer | undefined, private readonly pending: Pending) {
    this.base = storage.registry;
  }

  get uploads() {
    return this.base.uploads;
  }

  /** Restores blob `d` of `name` from its pack when the index lists it there; true when `name` can serve it now. */
  private async restoreBlob(name: string, d: Digest): Promise<boolean> {
    const listed = this.pending.blobs.get(name);
    if (!listed?.has(d.value)) return false;
    // Held from its restore to its link (no gc falls between); linked only if it is there.
    const linked = await this.storage.blobs.lifetime.holding([d.value], async () => {
      const there = (await this.storage.blobs.stat(d)) !== undefined || (await this.restorer?.fetch(d)) === true;
      return there && this.storage.blobs.lifetime.link({ repositories: this.storage.repositories, name }, d);
    });
    if (!linked) return false;
    listed.delete(d.value);
    return true;
  }

  async statBlob(name: string, d: Digest): Promise<number | undefined> {
    const size = await this.base.statBlob(name, d);
    if (size !== undefined || !(await this.restoreBlob(name, d))) return size;
    return this.base.statBlob(name, d);
  }

  async openBlob(name: string, d: Digest): Promise<BlobHandle | undefined> {
    const handle = await this.base.openBlob(name, d);
    if (handle !== undefined || !(await this.restoreBlob(name, d))) return handle;
    return this.base.openBlob(name, d);
  }

  async getManifest(name: string, reference: Reference, withBody: boolean): Promise<StoredManifest | undefined> {
    const found = await this.base.getManifest(name, reference, withBody);
    if (!found) return undefined;
    const waiting = this.pending.manifests.get(name);
    if (waiting?.has(found.digest.value)) {
      const whole = await this.checks.run(`${name}@${found.digest.value}`, () => this.restoreManifest(name, found.digest, waiting)).promise;
      if (!whole) return undefined;
    }
    return found;
  }

  /**
   * Restores every blob manifest `digest` of `name` names. When one cannot be had (its pack
   * evicted or broken), the manifest leaves the repository with its tags: false.
   */
  private async restoreManifest(name: string, digest: Digest, waiting: Set<string>): Promise<boolean> {
    const record = await this.storage.repositories.getManifest(name, digest);
    const body = record ? await this.storage.blobs.readSmall(digest, MAX_MANIFEST_SIZE).catch(() => undefined) : undefined;
    const needs = body && record ? manifestNeeds(body, record.mediaType) : undefined;
    let whole = needs !== undefined;
    for (const v of needs?.blobs ?? []) {
      const d = tryParseDigest(v)!;
      if ((await this.base.statBlob(name, d)) !== undefined || (await this.restoreBlob(name, d))) continue;
      whole = false;
      break;
    }
    waiting.delete(digest.value);
    if (!whole) await this.storage.repositories.deleteManifest(name, digest);
    return whole;
  }

  // Everything else is the registry store's.
  putBlob(name: string, expected: Digest, source: AsyncIterable<Uint8Array>, expectedSize?: number): Promise<number> {
    return this.base.putBlob(name, expected, source, expectedSize);
  }
  completeUpload(name: string, session: UploadSession, expected: Digest, last?: AsyncIterable<Uint8Array>): Promise<number> {
    return this.base.completeUpload(name, session, expected, last);
  }
  mountBlob(name: string, d: Digest, from?: string): Promise<boolean> {
    return this.base.mountBlob(name, d, from);
  }
  deleteBlob(name: string, d: Digest): Promise<boolean> {
    this.pending.blobs.get(name)?.delete(d.value);
    return this.base.deleteBlob(name, d);
  }
  putManifest(name: string, reference: Reference, body: Buffer, contentType?: string): Promise<PutManifestResult> {
    return this.base.putManifest(name, reference, body, contentType);
  }
  deleteManifest(name: string, reference: Reference): Promise<boolean> {
    if (reference.kind === 'digest') this.pending.manifests.get(name)?.delete(reference.digest.value);
    return this.base.deleteManifest(name, reference);
  }
  listTags(name: string): Promise<string[] | undefined> {
    return this.base.listTags(name);
  }
  listReferrers(name: string, subject: Digest, artifactType?: string): Promise<Descriptor[]> {
    return this.base.listReferrers(name, subject, artifactType);
  }
  listRepositories(): Promise<string[]> {
    return this.base.listRepositories();
  }
}
