// The single owner of a blob's life. Every path that makes a blob referenced (an upload's
// completion, a monolithic put, a mount, a manifest put, a cache fill, a restore from the
// Actions cache) and every path that takes one away (eviction, garbage collection, a blob
// delete) goes through this class, which serializes them per digest:
//
// - Publishing a blob and linking it into a repository happen in one critical section under
//   the digest's lock, so a delete cannot fall between "the file is there" and "a repository
//   links it" (the race that lost pushed blobs to eviction: the upload found the cached file,
//   linked it, and a pass that had chosen the file before deleted it after).
// - A deleter (an eviction pass or a gc) works as a {@link Sweep}: it marks what it must keep,
//   then removes each candidate under that candidate's lock, after checking again that nobody
//   holds the blob (a reader, a fill, a manifest being put) and that no path referenced it
//   since the sweep began (every publish and link is recorded in the open sweeps).
// - Operations of several steps (a manifest put checks its blobs, then writes its record)
//   hold the blobs they are about to reference for their whole length.
//
// The lock is held only around publish, link, check and delete: never while a request body
// streams in, so a push never waits behind an eviction pass or a gc, only behind the few file
// operations of one blob.
//
// On a bucket shared by several servers, the locks, holds and sweeps of one server are unknown
// to the others. There a reference and a delete meet in the bucket, by a handshake in which
// each side writes its mark before it reads the other's: a reference touches the blob (a new
// version of `touched/<digest>`) and then looks for `condemned/<digest>`; a sweep writes
// `condemned/<digest>` and then re-reads the blob's version. At least one sees the other: a
// sweep that sees a new version keeps the blob; a reference that sees the mark waits until the
// sweep is done and then finds the blob there or gone (a link is refused, a manifest put taken
// back, an upload stored again), so an accepted reference never names a deleted blob.
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlobStore } from './blob-store.js';
import type { Repositories } from './repositories.js';
import { KeyedLock } from './keyed-lock.js';
import type { Digest } from '../oci/index.js';

/** How long a reference waits for a sweep that marked its blob, at most. */
const CONDEMNED_WAIT_MS = 10_000;
/** How often it looks again. */
const CONDEMNED_POLL_MS = 50;

/** A repository (of the pushed or the cache tree) a blob is linked into. */
export interface BlobLink {
  repositories: Repositories;
  name: string;
}

/** The owner of blob lifetime over one storage root. */
export class BlobLifetime {
  private readonly locks = new KeyedLock();
  private readonly holds = new Map<string, number>();
  private readonly sweeps = new Set<Sweep>();

  constructor(private readonly blobs: BlobStore) {}

  /** Runs `fn` with digest `d` locked. */
  private exclusive<T>(d: Digest, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(d.value, async () => {
      try {
        return await fn();
      } finally {
        // Recorded while still locked: a sweep open now sees it; one opened later sees the disk.
        for (const s of this.sweeps) s.touched.add(d.value);
      }
    });
  }

  /**
   * Publishes a verified, fsynced file at blob `d`'s path (or drops it when the blob is there
   * already, freshening the blob's time so that a gc grace period counts from now) and links
   * the blob into `link`, in one critical section.
   */
  publishFile(path: string, d: Digest, link?: BlobLink): Promise<void> {
    return this.exclusive(d, async () => {
      if (this.blobs.bucket) await this.reference(d);
      if ((await this.blobs.placeFile(path, d)) && !this.blobs.bucket) await this.freshen(d);
      if (link) await link.repositories.writeBlobLink(link.name, d);
    });
  }

  /** On a bucket: publishes an object of the bucket verified to hash to `d` (an upload assembled there), and links it. */
  publishObject(key: string, d: Digest, size: number, link?: BlobLink): Promise<void> {
    return this.exclusive(d, async () => {
      await this.reference(d);
      await this.blobs.placeObject(key, d, size);
      if (link) await link.repositories.writeBlobLink(link.name, d);
    });
  }

  /** Stores bytes already verified to hash to `d` (manifests, small blobs), and links them. */
  putBytes(d: Digest, data: Uint8Array, link?: BlobLink): Promise<void> {
    return this.exclusive(d, async () => {
      if (this.blobs.bucket) await this.reference(d);
      if ((await this.blobs.placeBytes(d, data)) && !this.blobs.bucket) await this.freshen(d);
      if (link) await link.repositories.writeBlobLink(link.name, d);
    });
  }

  /** Links blob `d` into `link` if the store holds it (a mount); false when it does not. */
  link(link: BlobLink, d: Digest, opts: { freshen?: boolean } = {}): Promise<boolean> {
    return this.exclusive(d, async () => {
      // On a bucket: the handshake with other servers' sweeps first (see the header).
      if (this.blobs.bucket ? !(await this.reference(d)) : (await this.blobs.statDurable(d)) === undefined) return false;
      if (opts.freshen && !this.blobs.bucket) await this.freshen(d);
      await link.repositories.writeBlobLink(link.name, d);
      return true;
    });
  }

  /**
   * On a bucket, after a record that references `digests` was written (a manifest): freshens
   * each one, then returns those no longer there. Another server's sweep may have listed the
   * store before the record existed; its re-check then sees the new time, or the blob was gone
   * before this check and the caller takes its record back. Nothing to do on a directory, where
   * every sweep is this process's and saw the references as they were made.
   */
  async confirm(digests: Iterable<Digest>): Promise<Digest[]> {
    if (!this.blobs.bucket) return [];
    const all = [...new Map([...digests].map((d) => [d.value, d])).values()];
    const missing: Digest[] = [];
    await Promise.all(
      all.map(async (d) => {
        if (!(await this.reference(d))) missing.push(d);
      }),
    );
    return missing;
  }

  /**
   * On a bucket, the reference's half of the handshake with other servers' sweeps: touches
   * blob `d`, waits while a sweep has it marked for deletion, and says whether it is there.
   */
  private async reference(d: Digest): Promise<boolean> {
    const bucket = this.blobs.bucket!;
    await bucket.touch(d);
    const deadline = Date.now() + CONDEMNED_WAIT_MS;
    while (await bucket.isCondemned(d)) {
      // A sweep deletes or keeps within a few requests; a mark older than this is a sweep that died.
      if (Date.now() > deadline) break;
      await sleep(CONDEMNED_POLL_MS);
    }
    if ((await this.blobs.statDurable(d)) !== undefined) return true;
    // Deleted by another server: a local copy must not make it look present here.
    await this.blobs.copies?.drop(d);
    return false;
  }

  /** Removes the link of blob `d` from `link` (a blob delete: the bytes stay); true when it existed. */
  unlink(link: BlobLink, d: Digest): Promise<boolean> {
    return this.locks.run(d.value, () => link.repositories.removeBlobLink(link.name, d));
  }

  /** Keeps blob `d` from every delete until the returned function is called (idempotent). */
  hold(d: string): () => void {
    this.holds.set(d, (this.holds.get(d) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.holds.get(d) ?? 1) - 1;
      if (n <= 0) this.holds.delete(d);
      else this.holds.set(d, n);
    };
  }

  /** Runs `fn` holding every digest of `digests` (an operation that references them in several steps). */
  async holding<T>(digests: Iterable<string>, fn: () => Promise<T>): Promise<T> {
    const releases = [...new Set(digests)].map((d) => this.hold(d));
    try {
      return await fn();
    } finally {
      for (const r of releases) r();
    }
  }

  /** True while somebody holds `d` (served, filled, about to be referenced). */
  isHeld(d: string): boolean {
    return this.holds.has(d);
  }

  /** Opens a sweep: call it before marking what to keep, and end() it when done. */
  beginSweep(): Sweep {
    const sweep = new Sweep(this, (d, fn) => this.locks.run(d.value, fn), () => this.sweeps.delete(sweep));
    this.sweeps.add(sweep);
    return sweep;
  }

  /** On a bucket: marks blob `d` for deletion by a sweep (other servers' references wait). */
  async condemn(d: Digest): Promise<void> {
    await this.blobs.bucket?.condemn(d);
  }

  /** Takes a sweep's mark away. */
  async acquit(d: Digest): Promise<void> {
    await this.blobs.bucket?.acquit(d);
  }

  /** Deletes blob file `d` (a sweep's last step, under the lock). */
  removeFile(d: Digest): Promise<boolean> {
    return this.blobs.removeBlob(d);
  }

  private freshen(d: Digest): Promise<void> {
    return this.blobs.freshen(d);
  }
}

/** Why a sweep kept a candidate. */
export type KeptBecause = 'held' | 'referenced-since' | 'still-referenced';

/**
 * One pass of a deleter (eviction or gc). Opened before the deleter marks what it keeps, so
 * that every blob published or linked after that moment is known to it ({@link touched}).
 */
export class Sweep {
  /** Digests published or linked since this sweep began. */
  readonly touched = new Set<string>();

  constructor(
    private readonly owner: BlobLifetime,
    private readonly lock: <T>(d: Digest, fn: () => Promise<T>) => Promise<T>,
    private readonly close: () => void,
  ) {}

  /**
   * Deletes blob `d` and the links `unlink` if, under `d`'s lock, nobody holds it, nothing
   * referenced it since the sweep began and `stillUnreferenced` (the deleter's own re-check)
   * agrees. Returns true when deleted, else why it was kept.
   */
  remove(d: Digest, o: { unlink?: BlobLink[]; stillUnreferenced?: () => Promise<boolean> } = {}): Promise<true | KeptBecause> {
    return this.lock(d, async () => {
      if (this.owner.isHeld(d.value)) return 'held';
      if (this.touched.has(d.value)) return 'referenced-since';
      // On a bucket: the sweep's half of the handshake (the mark, then the re-check).
      await this.owner.condemn(d);
      try {
        if (o.stillUnreferenced && !(await o.stillUnreferenced())) return 'still-referenced';
        for (const l of o.unlink ?? []) await l.repositories.removeBlobLink(l.name, d);
        await this.owner.removeFile(d);
        return true as const;
      } finally {
        await this.owner.acquit(d);
      }
    });
  }

  /** Ends the sweep. */
  end(): void {
    this.close();
  }
}
