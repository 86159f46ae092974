// What the registry needs of upload sessions, whatever keeps them: a blob pushed in one or
// more requests (POST, PATCH..., PUT), resumable after a restart, and on a shared bucket
// continued by whichever server the next request reaches. Implementations: uploads.ts (the
// local directory) and s3/uploads.ts (state and bytes in the bucket).
import type { Digest } from '../oci/index.js';
import type { BlobLink } from './blob-lifetime.js';

/** What the store keeps about an upload session. */
export interface UploadRecord {
  repository: string;
  startedAt: number;
}

/** An open upload session as the registry sees it. */
export interface UploadSession extends UploadRecord {
  id: string;
  /** Bytes received so far. */
  size: number;
}

/** A session as gc and the startup purge see it. */
export interface UploadDescription {
  id: string;
  repository: string | undefined;
  size: number;
  lastActiveMs: number;
  /** Half-made or half-completed (a crash while it was created or completed). */
  broken: boolean;
}

/** The upload sessions of one storage. */
export interface UploadSessions {
  /** Opens a new session for `repository`. */
  create(repository: string): Promise<UploadSession>;
  /** The session `id` of `repository`; throws UploadNotFoundError for any other. */
  get(repository: string, id: string): Promise<UploadSession>;
  /**
   * Appends a chunk. `start`, when the client sent a Content-Range, must be where the upload
   * stands (else UploadRangeError); past `limit` total bytes, TooLargeError. Returns the new size.
   */
  append(session: UploadSession, source: AsyncIterable<Uint8Array>, start?: number, limit?: number): Promise<number>;
  /**
   * Appends an optional last chunk, verifies the whole upload against `expected`, and publishes
   * it as a blob linked into `link` through the lifetime owner. The session ends either way on a
   * digest mismatch.
   */
  complete(session: UploadSession, expected: Digest, last?: AsyncIterable<Uint8Array>, limit?: number, link?: BlobLink): Promise<{ size: number }>;
  /** Cancels a session and removes its data. */
  cancel(session: UploadSession): Promise<void>;
  /** Removes sessions idle longer than `idleMs` (with `broken`, half-made ones too: startup only); returns how many. */
  purgeStale(idleMs: number, opts?: { broken?: boolean }): Promise<number>;
  /** Ids of every session. */
  list(): Promise<string[]>;
  /** Every session. */
  describe(): Promise<UploadDescription[]>;
  /** Removes session `id` if it was last active before `cutoff` and no request uses it; true when removed. */
  removeIfIdle(id: string, cutoff: number): Promise<boolean>;
  /** Resolves once no request of this process writes to a session. */
  settled(): Promise<void>;
}
