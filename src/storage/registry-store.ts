// The registry's view of storage: repository-scoped blobs, manifests, tags and referrers
// over the shared content-addressed blob store. Route handlers (and the pull-through
// cache, which decorates it) speak only to this.
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { BlobStore } from './blob-store.js';
import { Repositories, type ManifestRecord } from './repositories.js';
import type { UploadSession, UploadSessions } from './upload-sessions.js';
import type { BlobLink } from './blob-lifetime.js';
import {
  RegistryError,
  digestOf,
  manifestReferences,
  parseManifest,
  tryParseDigest,
  type Descriptor,
  type Digest,
  type ParsedManifest,
  type Reference,
} from '../oci/index.js';

/** Largest manifest accepted (the spec asks registries to take at least 4 MiB). */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

/** Descriptors of one manifest checked at the same time. */
const REFERENCE_CHECKS = 8;

/** Runs `fn` over `items`, at most `limit` at a time. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Total bytes of manifests kept in memory to answer repeated GETs. */
const MANIFEST_CACHE_BYTES = 64 * 1024 * 1024;

/**
 * Where the pull-through cache got an answer from, for the request log: this runner's disk, the
 * GitHub Actions cache, the upstream, another request's upstream download (`joined`), or a cached
 * tag served because the upstream failed (`stale`).
 */
export type ServedFrom = 'disk' | 'actions-cache' | 'upstream' | 'joined' | 'stale';

/** A manifest as it is served. */
export interface StoredManifest {
  digest: Digest;
  mediaType: string;
  size: number;
  /** The exact bytes pushed (absent when only metadata was asked for). */
  body?: Buffer;
  subject?: string;
  /** Where the cache got it (the pull-through cache sets it). */
  servedFrom?: ServedFrom;
}

/** Result of a manifest push. */
export interface PutManifestResult {
  digest: Digest;
  subject?: string;
}

/** A committed blob's file, open for serving. */
export interface BlobFile {
  readonly handle: FileHandle;
  /** Closes the file once the answer is over; `served` when every byte asked for went out. */
  close(served: boolean): Promise<void>;
}

/** A blob ready to be served: its size (when known) and a way to read it. */
export interface BlobHandle {
  size: number | undefined;
  /** A stream of bytes `[start, end]` (inclusive), or of the whole blob. */
  read(range?: { start: number; end: number }): Readable;
  /**
   * Where the blob is a complete file in the store: opens it, for `[start, end]` or all of it
   * (undefined when it is gone since). The GET route serves such a file from reused buffers.
   */
  openFile?(range?: { start: number; end: number }): Promise<BlobFile | undefined>;
  /** Where the cache got it (the pull-through cache sets it). */
  servedFrom?: ServedFrom;
  /** On a bucket with redirects on: a presigned URL the client may GET the bytes from instead. */
  redirect?(): Promise<string>;
}

/** How long a presigned blob URL answers: long enough for a slow client to start, as distribution's 20 minutes. */
const REDIRECT_SECONDS = 20 * 60;

/**
 * What the read routes need of a store. The local store implements it; the pull-through
 * cache implements it over the same blob store with upstreams behind.
 */
export interface RegistryReader {
  statBlob(name: string, d: Digest): Promise<number | undefined>;
  openBlob(name: string, d: Digest): Promise<BlobHandle | undefined>;
  getManifest(name: string, reference: Reference, withBody: boolean): Promise<StoredManifest | undefined>;
  listTags(name: string): Promise<string[] | undefined>;
  listReferrers(name: string, subject: Digest, artifactType?: string): Promise<Descriptor[]>;
  listRepositories(): Promise<string[]>;
}

/** What the write routes need besides: pushes, mounts, deletes and upload sessions. */
export interface RegistryBackend extends RegistryReader {
  putBlob(name: string, expected: Digest, source: AsyncIterable<Uint8Array>, expectedSize?: number): Promise<number>;
  completeUpload(name: string, session: UploadSession, expected: Digest, last?: AsyncIterable<Uint8Array>): Promise<number>;
  mountBlob(name: string, d: Digest, from?: string): Promise<boolean>;
  deleteBlob(name: string, d: Digest): Promise<boolean>;
  putManifest(name: string, reference: Reference, body: Buffer, contentType?: string): Promise<PutManifestResult>;
  deleteManifest(name: string, reference: Reference): Promise<boolean>;
  readonly uploads: UploadSessions;
}

/** Repository-scoped operations over one storage root. */
export class RegistryStore implements RegistryBackend {
  private readonly bodies = new Map<string, Buffer>();
  private bodyBytes = 0;

  constructor(
    readonly blobs: BlobStore,
    readonly uploads: UploadSessions,
    readonly repositories: Repositories,
    /** Answer blob GETs with a redirect to a presigned URL of the bucket (a storage on S3 only). */
    private readonly redirects = false,
  ) {}

  // ---- blobs ----

  /** Size of blob `d` if repository `name` may serve it. */
  async statBlob(name: string, d: Digest): Promise<number | undefined> {
    if (!(await this.repositories.hasBlobLink(name, d))) return undefined;
    return this.blobs.stat(d);
  }

  /** Blob `d` of `name`, ready to be read, or undefined when `name` may not serve it. */
  async openBlob(name: string, d: Digest): Promise<BlobHandle | undefined> {
    const size = await this.statBlob(name, d);
    if (size === undefined) return undefined;
    const bucket = this.redirects ? this.blobs.bucket : undefined;
    return {
      size,
      ...(bucket ? { redirect: () => bucket.presign(d, REDIRECT_SECONDS) } : {}),
      read: (range) => this.blobs.openRead(d, range),
      ...(this.blobs.servesFiles
        ? {
            openFile: async () => {
              const handle = await this.blobs.openFile(d);
              return handle && { handle, close: () => handle.close() };
            },
          }
        : {}),
    };
  }

  /** Stores a whole blob sent in one request and links it into `name`. */
  async putBlob(name: string, expected: Digest, source: AsyncIterable<Uint8Array>, expectedSize?: number): Promise<number> {
    const writer = await this.blobs.createWriter(expected.algorithm, expectedSize);
    try {
      await writer.write(source);
    } catch (err) {
      await writer.cancel();
      throw err;
    }
    // Published and linked in one step of the lifetime owner, once the body is all in.
    const { size } = await writer.commit(expected, expectedSize, this.linkOf(name));
    return size;
  }

  /** Finishes an upload session as blob `expected` and links it into `name`. */
  async completeUpload(name: string, session: UploadSession, expected: Digest, last?: AsyncIterable<Uint8Array>): Promise<number> {
    const { size } = await this.uploads.complete(session, expected, last, undefined, this.linkOf(name));
    return size;
  }

  /**
   * Mounts blob `d` into `name`: from repository `from` when it has it, or from any
   * repository when `from` is absent (the store is shared). False when not possible.
   */
  async mountBlob(name: string, d: Digest, from?: string): Promise<boolean> {
    if (from !== undefined && !(await this.repositories.hasBlobLink(from, d))) return false;
    // A mount is a push of bytes the store has: the gc grace period counts from now.
    return this.blobs.lifetime.link(this.linkOf(name), d, { freshen: true });
  }

  /** Removes blob `d` from `name` (its bytes stay until garbage collection). */
  async deleteBlob(name: string, d: Digest): Promise<boolean> {
    return this.blobs.lifetime.unlink(this.linkOf(name), d);
  }

  private linkOf(name: string): BlobLink {
    return { repositories: this.repositories, name };
  }

  // ---- manifests ----

  /**
   * Stores a manifest byte-exact under `reference`. Every blob and child manifest it names
   * must be known (MANIFEST_BLOB_UNKNOWN otherwise); its subject need not exist yet.
   */
  async putManifest(name: string, reference: Reference, body: Buffer, contentType?: string): Promise<PutManifestResult> {
    const algorithm = reference.kind === 'digest' ? reference.digest.algorithm : 'sha256';
    const digest = digestOf(body, algorithm);
    if (reference.kind === 'digest' && reference.digest.value !== digest.value) {
      throw new RegistryError('DIGEST_INVALID', 'manifest digest does not match its content', {
        detail: { expected: reference.digest.value, actual: digest.value },
      });
    }
    const manifest = parseManifest(body, contentType);
    const { blobs, children } = manifestReferences(manifest);
    // From the check of its blobs to its record, the manifest holds what it references: no
    // eviction or gc deletes them in between (after, the record references them).
    await this.blobs.lifetime.holding([digest.value, ...blobs, ...children], async () => {
      await this.assertReferencesKnown(name, manifest);
      await this.blobs.putBytes(digest, body);
      const record: ManifestRecord = { mediaType: manifest.mediaType, size: body.byteLength };
      if (manifest.artifactType) record.artifactType = manifest.artifactType;
      if (manifest.annotations) record.annotations = manifest.annotations;
      if (manifest.subject) record.subject = manifest.subject.digest;
      await this.repositories.putManifest(name, digest, record);
      // On a shared bucket another server's gc may have listed before this record existed.
      const missing = await this.blobs.lifetime.confirm([digest, ...[...blobs, ...children].map((d) => tryParseDigest(d)!)]);
      if (missing.length > 0) {
        await this.repositories.deleteManifest(name, digest);
        throw new RegistryError('MANIFEST_BLOB_UNKNOWN', 'a blob it names was collected by another server meanwhile; push it again', { detail: { digests: missing.map((d) => d.value).sort() } });
      }
    });
    if (reference.kind === 'tag') await this.repositories.putTag(name, reference.tag, digest);
    this.cacheBody(digest.value, body);
    return manifest.subject ? { digest, subject: manifest.subject.digest } : { digest };
  }

  /**
   * Checks (and links into `name`) every blob and child manifest `m` names. Each digest is
   * checked once however often it is listed, a few at a time: a manifest may list thousands of
   * descriptors, and one open file each at once ran the process out of file descriptors.
   */
  private async assertReferencesKnown(name: string, m: ParsedManifest): Promise<void> {
    const missing: string[] = [];
    const { blobs, children } = manifestReferences(m);
    await forEachLimited(blobs, REFERENCE_CHECKS, async (digest) => {
      if (!(await this.blobs.lifetime.link(this.linkOf(name), tryParseDigest(digest)!))) missing.push(digest);
    });
    await forEachLimited(children, REFERENCE_CHECKS, async (digest) => {
      if (!(await this.repositories.getManifest(name, tryParseDigest(digest)!))) missing.push(digest);
    });
    if (missing.length > 0) {
      throw new RegistryError('MANIFEST_BLOB_UNKNOWN', undefined, { detail: { digests: missing.sort() } });
    }
  }

  /** The digest a reference names in `name`, or undefined. */
  async resolve(name: string, reference: Reference): Promise<Digest | undefined> {
    if (reference.kind === 'digest') return reference.digest;
    const value = await this.repositories.resolveTag(name, reference.tag);
    return value ? tryParseDigest(value) : undefined;
  }

  /** A manifest of `name` by tag or digest, with its bytes when `withBody`. */
  async getManifest(name: string, reference: Reference, withBody: boolean): Promise<StoredManifest | undefined> {
    const digest = await this.resolve(name, reference);
    if (!digest) return undefined;
    const record = await this.repositories.getManifest(name, digest);
    if (!record) return undefined;
    const out: StoredManifest = { digest, mediaType: record.mediaType, size: record.size };
    if (record.subject) out.subject = record.subject;
    if (withBody) out.body = await this.manifestBody(digest);
    return out;
  }

  private async manifestBody(digest: Digest): Promise<Buffer> {
    const cached = this.bodies.get(digest.value);
    if (cached) return cached;
    const body = await this.blobs.readSmall(digest, MAX_MANIFEST_SIZE);
    this.cacheBody(digest.value, body);
    return body;
  }

  private cacheBody(key: string, body: Buffer): void {
    if (this.bodies.has(key) || body.byteLength > MANIFEST_CACHE_BYTES / 16) return;
    this.bodies.set(key, body);
    this.bodyBytes += body.byteLength;
    for (const [k, v] of this.bodies) {
      if (this.bodyBytes <= MANIFEST_CACHE_BYTES) break;
      this.bodies.delete(k);
      this.bodyBytes -= v.byteLength;
    }
  }

  /** Deletes a manifest by digest (with its tags), or just a tag; false when absent. */
  async deleteManifest(name: string, reference: Reference): Promise<boolean> {
    if (reference.kind === 'tag') return this.repositories.deleteTag(name, reference.tag);
    return this.repositories.deleteManifest(name, reference.digest);
  }

  // ---- discovery ----

  /** Tags of `name`, sorted; undefined when the repository is unknown. */
  listTags(name: string): Promise<string[] | undefined> {
    return this.repositories.listTags(name);
  }

  /** Referrers of `subject` in `name`, optionally only those of one artifact type. */
  async listReferrers(name: string, subject: Digest, artifactType?: string): Promise<Descriptor[]> {
    const all = await this.repositories.listReferrers(name, subject);
    return artifactType === undefined ? all : all.filter((d) => d.artifactType === artifactType);
  }

  /** Every repository, sorted. */
  listRepositories(): Promise<string[]> {
    return this.repositories.list();
  }
}
