// The pull-through cache: a read-only registry whose misses are filled from upstream into
// the shared blob store. Blobs: one upstream download per digest however many clients ask
// (single-flight, readers follow the download). Manifests by digest: fetched once, never
// asked again. Manifests by tag: fresh for a TTL, then revalidated with HEAD (not a counted
// pull), fetched with GET only when the digest changed, and served stale when the upstream
// fails. Cache metadata lives in its own tree, apart from pushed repositories.
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  MAX_MANIFEST_SIZE,
  manifestRecordOf,
  type BlobHandle,
  type BlobLink,
  type BlobStore,
  type FillClaim,
  type FillClaims,
  StorageUnavailableError,
  type RegistryReader,
  type Repositories,
  type ServedFrom,
  type StoredManifest,
} from '../storage/index.js';
import {
  MANIFEST_MEDIA_TYPES,
  RegistryError,
  baseMediaType,
  type ErrorCode,
  digestOf,
  tryParseDigest,
  type Descriptor,
  type Digest,
  type Reference,
} from '../oci/index.js';
import type { Stats } from '../stats/index.js';
import { BlobFill } from './blob-fill.js';
import { SingleFlight } from '../shared/index.js';
import { UpstreamClient, UpstreamError, header, readLimited, type UpstreamResponse } from './upstream-client.js';
import type { Route, UpstreamRouter } from './upstreams.js';
import { PROBE_REPOSITORY, installProbe } from './probe.js';
import type { CacheEvictor } from './eviction.js';
import { UpstreamReferrers } from './referrers.js';

const ACCEPT = [...MANIFEST_MEDIA_TYPES, 'application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5'].join(', ');

/** A tier asked before the upstream for blobs (the Actions cache). */
export interface PersistTier {
  /** True when `d` is in the store afterwards. */
  fetch(d: Digest): Promise<boolean>;
  /** A client asked for manifest `reference` (tag or digest) of `name`: its blobs are likely next. */
  expect?(name: string, reference: string): void;
  /** True once for each blob the tier put in the store: its first serve counts as the tier's. */
  claim?(d: Digest): boolean;
}

/** What the cache is built from. */
/** How long a claim on fetching a blob lasts unless renewed (its holder renews it while it fetches). */
const FILL_CLAIM_TTL_MS = 30_000;
/** How often a server waiting for another's fetch looks for the blob. */
const FILL_POLL_MS = 200;
/** How long a server waits for another's fetch of one blob before it answers 503. */
const FILL_WAIT_MS = 10 * 60_000;

/** Thrown (to the requests waiting on one fill) when another server sharing the bucket fetched the blob. */
class FilledElsewhere extends Error {
  constructor() {
    super('fetched by another server sharing the storage');
    this.name = 'FilledElsewhere';
  }
}

export interface PullThroughOptions {
  blobs: BlobStore;
  /** Metadata of cached repositories (a tree of its own). */
  repositories: Repositories;
  router: UpstreamRouter;
  clients: ReadonlyMap<string, UpstreamClient>;
  stats: Stats;
  /** How long a tag's manifest is served without revalidation. */
  tagTtlMs: number;
  /** Bounds the cache's size when set. */
  evictor?: CacheEvictor;
  /** A tier asked before the upstream (the Actions cache): true when it put `d` in the store. */
  persist?: PersistTier;
  /** On a shared bucket: claims that make one server of those sharing it fetch each blob. */
  fillClaims?: FillClaims;
}

/** Maps an upstream failure to the error a client gets. */
export function upstreamToRegistryError(err: unknown): RegistryError {
  if (err instanceof RegistryError) return err;
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  if (errno === 'ENOSPC' || errno === 'EDQUOT') return new RegistryError('UNAVAILABLE', 'storage is full', { status: 507 });
  if (err instanceof UpstreamError) {
    if (err.kind === 'rate-limited') {
      return new RegistryError('TOOMANYREQUESTS', err.message, { headers: { 'retry-after': String(Math.ceil((err.opts.retryAfterMs ?? 60_000) / 1000)) } });
    }
    if (err.kind === 'unauthorized') return new RegistryError('DENIED', err.message);
    return new RegistryError('UNAVAILABLE', err.message, { cause: err });
  }
  return new RegistryError('UNAVAILABLE', 'upstream request failed', { cause: err });
}

/** Registry errors an upstream's 4xx answer may name and that a client gets as they are. */
const PASSED_ON = new Set<ErrorCode>(['NAME_INVALID', 'MANIFEST_INVALID', 'DENIED', 'UNSUPPORTED']);

/**
 * The error for an upstream answer that is neither 200 nor 404 (401 and 429 are the upstream
 * client's): a 4xx refusal is final, so the client gets it as a 4xx (the code the upstream's
 * error body names when it is one of {@link PASSED_ON}, else DENIED) and does not retry; any
 * other status is UNAVAILABLE, which also lets a cached tag be served stale.
 */
export async function upstreamAnswerError(res: UpstreamResponse, ns: string, what: string): Promise<RegistryError> {
  const message = `${ns} answered ${res.status} for ${what}`;
  if (res.status < 400 || res.status >= 500) {
    res.body.resume();
    return new RegistryError('UNAVAILABLE', message);
  }
  const body = await readLimited(res.body, 16 * 1024, () => new RegistryError('UNAVAILABLE', 'upstream error body too large')).catch(() => Buffer.alloc(0));
  let code: ErrorCode = 'DENIED';
  try {
    const named = (JSON.parse(body.toString()) as { errors?: Array<{ code?: unknown }> }).errors?.[0]?.code;
    if (typeof named === 'string' && PASSED_ON.has(named as ErrorCode)) code = named as ErrorCode;
  } catch {
    // not the error envelope: DENIED
  }
  return new RegistryError(code, message);
}

/** The read-only registry of the cache port. */
export class PullThroughCache implements RegistryReader {
  private readonly fills = new Map<string, Promise<BlobFill>>();
  /** Fills and their follow-up work still running (see {@link settle}). */
  private readonly background = new Set<Promise<void>>();
  private readonly manifestFlight = new SingleFlight<StoredManifest | undefined>();
  private readonly validatedAt = new Map<string, number>();
  /** Tags being confirmed in the background (confirmTags), by `name:tag`: a client's request waits for it. */
  private readonly confirming = new Map<string, Promise<void>>();
  /** Canonical names answered from the store only (the mirror probe). */
  private readonly localOnly = new Set<string>();

  /** The referrers API, asked of the upstream. */
  private readonly referrers: UpstreamReferrers;

  constructor(private readonly o: PullThroughOptions) {
    this.referrers = new UpstreamReferrers({ route: (name) => this.route(name), repositories: o.repositories, stats: o.stats, tagTtlMs: o.tagTtlMs });
  }

  /** Serves the mirror probe image under Docker Hub's `regcache-probe/mirror-check`. */
  async installProbe(): Promise<void> {
    const canonical = this.o.router.route(PROBE_REPOSITORY).canonical;
    await installProbe(this.o.blobs, this.o.repositories, canonical);
    this.localOnly.add(canonical);
  }

  private route(name: string): { route: Route; client: UpstreamClient } {
    const route = this.o.router.fromCanonical(name);
    const client = this.o.clients.get(route.upstream.ns);
    if (!client) throw new RegistryError('NAME_UNKNOWN', `no upstream client for ${route.upstream.ns}`);
    return { route, client };
  }

  // ---- blobs ----

  /** Size of a blob: from the store, an in-flight fill, or a HEAD upstream. */
  async statBlob(name: string, d: Digest): Promise<number | undefined> {
    const local = await this.o.blobs.stat(d);
    if (local !== undefined) return local;
    const { route, client } = this.route(name);
    let res: UpstreamResponse;
    try {
      res = await client.request('HEAD', route.remote, `blobs/${d.value}`);
    } catch (err) {
      throw upstreamToRegistryError(err);
    }
    res.body.resume();
    if (res.status !== 200) return undefined;
    const len = Number(header(res.headers, 'content-length'));
    return Number.isSafeInteger(len) ? len : undefined;
  }

  /** A blob from the store, or from the (shared) upstream download. */
  async openBlob(name: string, d: Digest): Promise<BlobHandle | undefined> {
    const size = await this.o.blobs.stat(d);
    if (size !== undefined) {
      // Restored ahead of the request (prefetched): served from the Actions cache, once.
      if (this.o.persist?.claim?.(d)) {
        this.o.stats.blobServed(name, d.value, size, 'persist');
        void this.o.blobs.lifetime.link(this.linkOf(name), d).catch(() => {});
        return this.storedHandle(name, d, size, 'actions-cache');
      }
      this.o.stats.blobServed(name, d.value, size, 'local');
      return this.storedHandle(name, d, size, 'disk');
    }
    if (!this.fills.has(d.value) && (await this.o.persist?.fetch(d))) {
      const restored = await this.o.blobs.stat(d);
      if (restored !== undefined) {
        this.o.persist?.claim?.(d);
        this.o.stats.blobServed(name, d.value, restored, 'persist');
        void this.o.blobs.lifetime.link(this.linkOf(name), d).catch(() => {});
        return this.storedHandle(name, d, restored, 'actions-cache');
      }
    }
    let pending = this.fills.get(d.value);
    const joined = pending !== undefined;
    if (!pending) {
      pending = this.startFill(name, d);
      this.fills.set(d.value, pending);
      const forget = () => {
        if (this.fills.get(d.value) === pending) this.fills.delete(d.value);
      };
      pending.then((fill) => fill.done.then(forget), forget);
    }
    let fill: BlobFill;
    try {
      fill = await pending;
    } catch (err) {
      // Another server sharing the bucket fetched it meanwhile: served from the bucket.
      if (err instanceof RegistryError && err.code === 'BLOB_UNKNOWN') return undefined;
      // The bucket failing (a claim, a HEAD) is the storage's failure, answered as such.
      if (err instanceof StorageUnavailableError) throw err;
      if (!(err instanceof FilledElsewhere)) throw upstreamToRegistryError(err);
      const size = await this.o.blobs.stat(d);
      if (size === undefined) throw new RegistryError('UNAVAILABLE', `blob ${d.value} was fetched by another server but is not in the storage`);
      this.o.stats.blobServed(name, d.value, size, 'local');
      void this.o.blobs.lifetime.link(this.linkOf(name), d).catch(() => {});
      return this.storedHandle(name, d, size, 'disk');
    }
    try {
      // A blob within the held-back tail streams nothing before it is verified, so answer once it
      // is: a failed fill is then a clean 503, and an upstream's `200` with `Content-Length: 0`
      // for a non-empty blob never reaches a client as a complete, empty blob.
      if (fill.heldBackWhole) {
        await fill.done;
        if (fill.state === 'failed') throw fill.failure();
      }
    } catch (err) {
      if (err instanceof RegistryError && err.code === 'BLOB_UNKNOWN') return undefined;
      throw upstreamToRegistryError(err);
    }
    this.o.stats.blobServed(name, d.value, fill.size ?? 0, 'upstream', joined);
    return {
      size: fill.size,
      read: (range) => this.counted(name, d, fill.reader(range), range ? range.end - range.start + 1 : fill.size),
      servedFrom: joined ? 'joined' : 'upstream',
    };
  }

  private async startFill(name: string, d: Digest): Promise<BlobFill> {
    const claim = await this.claimFill(d);
    let fill: BlobFill;
    try {
      fill = await this.fetchFill(name, d);
    } catch (err) {
      await claim.release().catch(() => {});
      throw err;
    }
    void fill.done.finally(() => claim.release().catch(() => {}));
    return fill;
  }

  /**
   * On a shared bucket: the claim on fetching `d` from the upstream. While another server holds
   * it, waits for the blob to land in the bucket (then throws FilledElsewhere) or for the claim
   * to expire (a server that died mid-fetch), then claims it.
   */
  private async claimFill(d: Digest): Promise<FillClaim> {
    const claims = this.o.fillClaims;
    if (!claims) return { release: async () => {} };
    const deadline = Date.now() + FILL_WAIT_MS;
    for (;;) {
      const claim = await claims.claim(d, FILL_CLAIM_TTL_MS);
      if (claim) {
        // It may have landed between the store's check and the claim.
        if ((await this.o.blobs.stat(d)) === undefined) return claim;
        await claim.release();
        throw new FilledElsewhere();
      }
      await sleep(FILL_POLL_MS);
      if ((await this.o.blobs.stat(d)) !== undefined) throw new FilledElsewhere();
      if (Date.now() > deadline) throw new RegistryError('UNAVAILABLE', `another server has been fetching blob ${d.value} for over ${FILL_WAIT_MS / 1000} s`);
    }
  }

  private async fetchFill(name: string, d: Digest): Promise<BlobFill> {
    const { route, client } = this.route(name);
    const res = await client.request('GET', route.remote, `blobs/${d.value}`);
    if (res.status === 404) {
      res.body.resume();
      throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: d.value } });
    }
    if (res.status !== 200) throw await upstreamAnswerError(res, route.upstream.ns, 'a blob');
    const len = Number(header(res.headers, 'content-length'));
    // Held from the start of the fill until the cache links it: a gc or eviction pass running
    // meanwhile keeps it (the link, written after the client has its bytes, is then a mark).
    const release = this.o.blobs.lifetime.hold(d.value);
    let fill: BlobFill;
    try {
      fill = await BlobFill.start(this.o.blobs, d, { size: Number.isSafeInteger(len) ? len : undefined, body: res.body }, (n) =>
        this.o.stats.bytesFetched(route.upstream.ns, name, n),
      );
    } catch (err) {
      release();
      throw err;
    }
    this.track(
      fill.done
        .then(async () => {
          if (fill.state !== 'committed') return;
          await this.o.blobs.lifetime.link(this.linkOf(name), d);
        })
        .finally(release)
        .then(async () => {
          if (fill.state !== 'committed') return;
          this.o.evictor?.touch(d.value);
          await this.o.evictor?.evict();
        })
        .catch(() => {}),
    );
    return fill;
  }

  private linkOf(name: string): BlobLink {
    return { repositories: this.o.repositories, name };
  }

  /** Keeps `work` (which never rejects) until it ends, for {@link settle}. */
  private track(work: Promise<void>): void {
    this.background.add(work);
    void work.finally(() => this.background.delete(work));
  }

  /**
   * Resolves once every blob fill started so far has ended and what follows it (the repository
   * link, eviction) is written: the server awaits it on close, before it releases the storage.
   * Fills still running after `graceMs` (a slow upstream, no client left) are aborted.
   */
  async settle(graceMs = 5_000): Promise<void> {
    const timer = setTimeout(() => {
      for (const pending of this.fills.values()) void pending.then((fill) => fill.abort(), () => {});
    }, graceMs);
    try {
      while (this.background.size > 0) await Promise.all([...this.background]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A blob the store holds: served from its file, counted and kept from eviction meanwhile. */
  private storedHandle(name: string, d: Digest, size: number, servedFrom: ServedFrom): BlobHandle {
    const bytes = (range?: { start: number; end: number }) => (range ? range.end - range.start + 1 : size);
    const handle: BlobHandle = {
      size,
      servedFrom,
      read: (range) => this.counted(name, d, this.o.blobs.openRead(d, range), bytes(range)),
    };
    // A bucket read without local copies has no file: the route streams `read` instead.
    if (!this.o.blobs.servesFiles) return handle;
    return {
      ...handle,
      openFile: async (range) => {
        const release = this.hold(d);
        const handle = await this.o.blobs.openFile(d).catch((err: unknown) => {
          release();
          throw err;
        });
        if (!handle) {
          release();
          return undefined;
        }
        return {
          handle,
          close: async (served) => {
            if (served) this.o.stats.bytesServed(name, d.value, bytes(range));
            release();
            await handle.close();
          },
        };
      },
    };
  }

  /** Counts the bytes served when `stream` ends, and holds off eviction of `d` while it reads. */
  private counted(name: string, d: Digest, stream: Readable, bytes: number | undefined): Readable {
    stream.once('end', () => this.o.stats.bytesServed(name, d.value, bytes ?? 0));
    stream.once('close', this.hold(d));
    return stream;
  }

  /** Keeps `d` from eviction and gc while it is served (the lifetime owner's hold), and marks it used. */
  private hold(d: Digest): () => void {
    this.o.evictor?.touch(d.value);
    return this.o.blobs.lifetime.hold(d.value);
  }

  // ---- manifests ----

  /** A manifest by digest (cached forever) or tag (TTL, HEAD revalidation, stale on failure). */
  async getManifest(name: string, reference: Reference, withBody: boolean): Promise<StoredManifest | undefined> {
    const refText = reference.kind === 'tag' ? reference.tag : reference.digest.value;
    // The image's layers are asked for next: the tier may start on them now.
    this.o.persist?.expect?.(name, refText);
    if (reference.kind === 'digest') {
      const local = await this.local(name, reference.digest, withBody);
      if (local) {
        this.o.stats.manifestServed(name, refText, local.digest.value, 'local', withBody ? local.size : 0);
        return local;
      }
      const fetched = await this.flight(`${name}@${refText}`, () => this.fetch(name, refText, reference.digest));
      if (fetched) this.o.stats.manifestServed(name, refText, fetched.digest.value, 'upstream', withBody ? fetched.size : 0);
      return fetched;
    }
    const key = `${name}:${refText}`;
    // A background confirmation of this tag under way: its HEAD answers this request too.
    await this.confirming.get(key);
    const cached = tryParseDigest((await this.o.repositories.resolveTag(name, reference.tag)) ?? '');
    if (this.localOnly.has(name)) {
      const local = cached && (await this.local(name, cached, withBody));
      if (local) this.o.stats.manifestServed(name, refText, local.digest.value, 'local', withBody ? local.size : 0);
      return local || undefined;
    }
    if (cached && Date.now() - (this.validatedAt.get(key) ?? 0) < this.o.tagTtlMs) {
      const local = await this.local(name, cached, withBody);
      if (local) {
        this.o.stats.manifestGetAvoided(this.route(name).route.upstream.ns);
        this.o.stats.manifestServed(name, refText, local.digest.value, 'local', withBody ? local.size : 0);
        return local;
      }
    }
    return this.flight(key, () => this.revalidate(name, reference.tag, cached, withBody));
  }

  /**
   * Confirms cached tags with upstream in the background, `parallel` at a time: a HEAD, as a
   * client's request past the TTL makes (not a counted pull), so that a client asking soon
   * after finds the tag fresh instead of waiting for the round trip. A tag upstream no longer
   * points where it did, or that it cannot confirm, is left to the client's own request.
   */
  confirmTags(tags: Array<{ name: string; tag: string }>, parallel = 4): void {
    const queue = [...tags];
    const worker = async (): Promise<void> => {
      for (let t = queue.shift(); t; t = queue.shift()) {
        const key = `${t.name}:${t.tag}`;
        if (this.confirming.has(key)) continue;
        const work = this.confirmTag(t.name, t.tag).catch(() => {});
        this.confirming.set(key, work);
        await work;
        this.confirming.delete(key);
      }
    };
    this.track(Promise.all(Array.from({ length: Math.min(parallel, queue.length) }, worker)).then(() => {}));
  }

  private async confirmTag(name: string, tag: string): Promise<void> {
    const key = `${name}:${tag}`;
    if (this.localOnly.has(name) || Date.now() - (this.validatedAt.get(key) ?? 0) < this.o.tagTtlMs) return;
    const cached = tryParseDigest((await this.o.repositories.resolveTag(name, tag)) ?? '');
    if (!cached || !(await this.o.repositories.getManifest(name, cached))) return;
    const { route, client } = this.route(name);
    const res = await client.request('HEAD', route.remote, `manifests/${tag}`, { accept: ACCEPT });
    res.body.resume();
    if (res.status === 200 && header(res.headers, 'docker-content-digest') === cached.value) this.validatedAt.set(key, Date.now());
  }

  /** One upstream exchange per key at a time; a latecomer's answer says it joined (the request log). */
  private async flight(key: string, fn: () => Promise<StoredManifest | undefined>): Promise<StoredManifest | undefined> {
    const { promise, joined } = this.manifestFlight.run(key, fn);
    const m = await promise;
    return joined && m ? { ...m, servedFrom: 'joined' } : m;
  }

  /** Asks upstream whether a cached tag still points where it did; serves stale on failure. */
  private async revalidate(name: string, tag: string, cached: Digest | undefined, withBody: boolean): Promise<StoredManifest | undefined> {
    const key = `${name}:${tag}`;
    const { route, client } = this.route(name);
    if (cached) {
      try {
        const res = await client.request('HEAD', route.remote, `manifests/${tag}`, { accept: ACCEPT });
        res.body.resume();
        if (res.status === 404) {
          await this.o.repositories.deleteTag(name, tag);
          return undefined;
        }
        if (res.status === 200 && header(res.headers, 'docker-content-digest') === cached.value) {
          const local = await this.local(name, cached, true);
          if (local) {
            this.validatedAt.set(key, Date.now());
            this.o.stats.manifestGetAvoided(route.upstream.ns);
            this.o.stats.manifestServed(name, tag, cached.value, 'local', withBody ? local.size : 0, true);
            return local;
          }
        }
        const fetched = await this.fetch(name, tag);
        if (fetched) this.o.stats.manifestServed(name, tag, fetched.digest.value, 'upstream', withBody ? fetched.size : 0);
        return fetched;
      } catch (err) {
        const stale = await this.local(name, cached, true);
        if (!stale) throw upstreamToRegistryError(err);
        this.o.stats.manifestServed(name, tag, cached.value, 'stale', withBody ? stale.size : 0);
        stale.servedFrom = 'stale';
        return stale;
      }
    }
    const fetched = await this.fetch(name, tag);
    if (fetched) this.o.stats.manifestServed(name, tag, fetched.digest.value, 'upstream', withBody ? fetched.size : 0);
    return fetched;
  }

  /** GETs a manifest (a counted pull), verifies it, and stores it (and the tag); failures as the client gets them. */
  private async fetch(name: string, ref: string, expected?: Digest): Promise<StoredManifest | undefined> {
    try {
      return await this.fetchUnmapped(name, ref, expected);
    } catch (err) {
      throw upstreamToRegistryError(err);
    }
  }

  private async fetchUnmapped(name: string, ref: string, expected?: Digest): Promise<StoredManifest | undefined> {
    const { route, client } = this.route(name);
    const res = await client.request('GET', route.remote, `manifests/${ref}`, { accept: ACCEPT }, true);
    if (res.status === 404) {
      res.body.resume();
      return undefined;
    }
    if (res.status !== 200) throw await upstreamAnswerError(res, route.upstream.ns, 'a manifest');
    const body = await readLimited(res.body, MAX_MANIFEST_SIZE, () => new RegistryError('MANIFEST_INVALID', `upstream manifest exceeds ${MAX_MANIFEST_SIZE} bytes`));
    this.o.stats.bytesFetched(route.upstream.ns, name, body.byteLength);
    const announced = tryParseDigest(header(res.headers, 'docker-content-digest') ?? '');
    const want = expected ?? announced;
    const digest = digestOf(body, want?.algorithm ?? 'sha256');
    if (want && want.value !== digest.value) {
      throw new RegistryError('UNAVAILABLE', `${route.upstream.ns} sent a manifest whose digest is not ${want.value}`);
    }
    this.o.stats.fromUpstream(digest.value);
    const mediaType = this.mediaTypeOf(body, header(res.headers, 'content-type'));
    // Held from its bytes to its record: no eviction or gc falls between (BlobLifetime).
    await this.o.blobs.lifetime.holding([digest.value], async () => {
      await this.o.blobs.putBytes(digest, body);
      // With its subject, artifactType and annotations: its referrers entry lists them.
      await this.o.repositories.putManifest(name, digest, manifestRecordOf(body, mediaType));
    });
    if (!expected) {
      await this.o.repositories.putTag(name, ref, digest);
      this.validatedAt.set(`${name}:${ref}`, Date.now());
    }
    return { digest, mediaType, size: body.byteLength, body, servedFrom: 'upstream' };
  }

  private mediaTypeOf(body: Buffer, contentType: string | undefined): string {
    const declared = baseMediaType(contentType);
    if (declared && declared !== 'application/json' && declared !== 'text/plain') return declared;
    try {
      const doc = JSON.parse(body.toString('utf8')) as { mediaType?: unknown; manifests?: unknown };
      if (typeof doc.mediaType === 'string') return doc.mediaType;
      return Array.isArray(doc.manifests) ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json';
    } catch {
      return declared ?? 'application/octet-stream';
    }
  }

  /** A manifest this cache repository holds. */
  private async local(name: string, d: Digest, withBody: boolean): Promise<StoredManifest | undefined> {
    const record = await this.o.repositories.getManifest(name, d);
    if (!record) return undefined;
    const out: StoredManifest = { digest: d, mediaType: record.mediaType, size: record.size, servedFrom: 'disk' };
    if (withBody) {
      try {
        out.body = await this.o.blobs.readSmall(d, MAX_MANIFEST_SIZE);
      } catch {
        return undefined;
      }
    }
    return out;
  }

  // ---- discovery ----

  /** Tags as upstream lists them, else the tags this cache knows. */
  async listTags(name: string): Promise<string[] | undefined> {
    const { route, client } = this.route(name);
    try {
      const res = await client.request('GET', route.remote, 'tags/list');
      if (res.status === 200) {
        const doc = JSON.parse((await readLimited(res.body, MAX_MANIFEST_SIZE, () => new RegistryError('MANIFEST_INVALID', `upstream manifest exceeds ${MAX_MANIFEST_SIZE} bytes`))).toString('utf8')) as { tags?: unknown };
        if (Array.isArray(doc.tags)) return doc.tags.filter((t): t is string => typeof t === 'string').sort();
      } else {
        res.body.resume();
      }
    } catch {
      // fall through to what is cached
    }
    return this.o.repositories.listTags(name);
  }

  /** Referrers as the upstream lists them (referrers.ts); of the cached manifests for local-only names. */
  async listReferrers(name: string, subject: Digest, artifactType?: string): Promise<Descriptor[]> {
    if (this.localOnly.has(name)) {
      const all = await this.o.repositories.listReferrers(name, subject);
      return artifactType === undefined ? all : all.filter((d) => d.artifactType === artifactType);
    }
    try {
      return await this.referrers.list(name, subject, artifactType);
    } catch (err) {
      throw upstreamToRegistryError(err);
    }
  }

  /** The cached repositories (as `<ns>/<name>`). */
  listRepositories(): Promise<string[]> {
    return this.o.repositories.list();
  }
}
