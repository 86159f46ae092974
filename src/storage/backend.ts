// Where a storage keeps what outlives a request, beyond the local directory every server has.
//
// A storage is a local root (temp files, the lock, the gc socket, and on a bucket the
// read-through copies of blobs) plus two tiers that are either that same directory or a
// shared bucket:
//
// - Records: small objects by key (tags, manifest revisions, blob links, referrers). On the
//   filesystem a key is a file under the root; on S3 an object under the prefix. A record is
//   written whole, so a reader sees the old or the new bytes, never a mix. (What needs a
//   conditional write on a bucket uses its own: leases and claims S3Records' create/replaceIf,
//   upload sessions s3/upload-objects.ts.)
// - BucketBlobs: blob bytes in a shared bucket, named by digest, written once. Absent on the
//   filesystem backend, where the blob files under the root are the blobs.
//
// Several servers may share one bucket; what must run once among them (gc, eviction) takes a
// WorkLease, and a pull-through fill is claimed with FillClaims so that one replica fetches a
// blob from the upstream while the others wait for it to land.
import type { Readable } from 'node:stream';
import type { Digest } from '../oci/index.js';

/** Small records by key. Keys are `/`-separated relative paths built by {@link RecordKeys}. */
export interface Records {
  /** Where the records are, for messages: a directory, or `s3://bucket/prefix`. */
  readonly location: string;
  /**
   * True when this process is the only writer (the filesystem behind the storage lock), so
   * that what it read may be remembered without expiry; false on a shared bucket.
   */
  readonly exclusive: boolean;
  /** The record's bytes, or undefined when there is none. */
  read(key: string): Promise<Buffer | undefined>;
  /** Creates or replaces the record whole. */
  write(key: string, data: string | Uint8Array): Promise<void>;
  /** True when the record exists. */
  has(key: string): Promise<boolean>;
  /** Removes the record; true when it existed (on S3, where a delete does not tell: when a HEAD found it). */
  remove(key: string): Promise<boolean>;
  /** Names directly under `prefix` (records and deeper prefixes, without a trailing `/`), unsorted; [] when none. */
  children(prefix: string): Promise<string[]>;
  /** Removes every record under `prefix`. */
  removeTree(prefix: string): Promise<void>;
}

/** A blob as a tier lists it. */
export interface StoredBlobInfo {
  digest: Digest;
  size: number;
  /** The later of the blob's upload and its last {@link BucketBlobs.touch}. */
  mtimeMs: number;
  /** On a bucket: changes with every upload and touch of the blob (clock-free), for a sweep's re-check. */
  version?: string;
}

/** Blob bytes in a shared bucket, named by digest. Bytes arrive here verified. */
export interface BucketBlobs {
  /** `s3://bucket/prefix`, for messages. */
  readonly location: string;
  /** Size, time (the later of its upload and its last touch) and version of blob `d`, or undefined. */
  head(d: Digest): Promise<{ size: number; mtimeMs: number; version: string } | undefined>;
  /** Uploads a verified local file as blob `d` unless the bucket has it; true when it was there already. */
  putFile(path: string, d: Digest, size: number): Promise<boolean>;
  /** Uploads verified bytes as blob `d` unless the bucket has it; true when it was there already. */
  putBytes(d: Digest, data: Uint8Array): Promise<boolean>;
  /**
   * Makes object `sourceKey` of the same bucket (an assembled upload, verified to hash to `d`;
   * a key relative to the storage's prefix) blob `d` by a server-side copy, unless the bucket
   * has it; true when it was there already.
   */
  copyIn(sourceKey: string, d: Digest, size: number): Promise<boolean>;
  /** The blob's bytes `[start, end]` (inclusive) or all of them; throws BlobNotFoundError when absent. */
  read(d: Digest, range?: { start: number; end: number }): Promise<Readable>;
  /** Removes blob `d` (and its touch record); true when it existed. */
  remove(d: Digest): Promise<boolean>;
  /** Every blob in the bucket. */
  list(): AsyncGenerator<StoredBlobInfo>;
  /** Records that `d` was referenced now: a gc grace period counts from the later of this and the upload. */
  touch(d: Digest): Promise<void>;
  /**
   * Marks blob `d` as about to be deleted by a sweep (`condemned/<digest>`), or takes the mark
   * away. A reference touches the blob, then looks for the mark: of a sweep and a reference
   * running at once, at least one sees the other's write (blob-lifetime.ts).
   */
  condemn(d: Digest): Promise<void>;
  acquit(d: Digest): Promise<void>;
  /** True while a sweep has marked blob `d` for deletion. */
  isCondemned(d: Digest): Promise<boolean>;
  /** A URL that answers GET with the blob's bytes for `seconds`, signed with this server's credentials. */
  presign(d: Digest, seconds: number): Promise<string>;
}

/** Work that must run once among the servers sharing a storage (gc, an eviction pass). */
export interface WorkLease {
  /**
   * Runs `fn` if this server takes the lease `name` (kept fresh while `fn` runs); undefined,
   * without running it, when another server holds a lease that is still fresh.
   */
  runOnce<T>(name: string, fn: () => Promise<T>): Promise<T | undefined>;
}

/** A claim on fetching one blob from an upstream. */
export interface FillClaim {
  /** Gives the claim up (the blob landed, or the fetch failed). Safe to call twice. */
  release(): Promise<void>;
}

/** One fetch per blob among the servers sharing a storage. */
export interface FillClaims {
  /**
   * Claims the fill of blob `d` for `ttlMs` (renewed while held). Undefined when another server
   * holds a live claim: wait for the blob to land (or the claim to expire) instead of fetching.
   */
  claim(d: Digest, ttlMs: number): Promise<FillClaim | undefined>;
}
