// Upload sessions kept in a bucket, so that whichever replica a request reaches continues the
// session (the object layout is drawn in upload-objects.ts):
//
// - Whole parts (partSize bytes, 8 MiB unless configured; S3 wants at least 5 MiB for every
//   part but the last) go to an S3 multipart upload as soon as they are gathered; the bytes after
//   the last whole part are written as the session's tail object when a request ends, and the
//   next request (on any replica) reads the tail back and goes on. A request holds at most one
//   part in memory (PartBuffer), never a whole blob.
// - session.json records the parts, the tail and the size; a request claims the session in it by
//   compare-and-swap before it writes (SessionClaim), so two replicas never advance one session.
//   A part number is reserved in session.json before its bytes are sent, so a replica that lost
//   its claim while stalled cannot overwrite a part another replica recorded.
// - The running hash lives in this process's memory, keyed by session and size; a replica that
//   did not see every byte (another replica's chunk, a restart) reads the assembled object back
//   at completion and hashes it there.
// - Completion sends the tail as the last part, completes the multipart upload (or, with no
//   whole part, takes the tail itself), verifies the digest and hands the assembled object to
//   `publish` (the blob store's bucket tier copies it to the blob's key under the digest's lock),
//   then removes the session's objects.
//
// Limits: 10,000 parts per multipart upload (with 8 MiB parts, about 78 GiB per blob; a part
// number reserved by a request that failed is skipped, not reused).
import { randomBytes, randomUUID, type Hash } from 'node:crypto';
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, GetObjectCommand, HeadObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { DigestMismatchError, TooLargeError, UploadBusyError, UploadNotFoundError, UploadRangeError } from '../errors.js';
import { newHash, type Algorithm, type Digest } from '../../oci/index.js';
import type { BlobLink } from '../blob-lifetime.js';
import type { UploadDescription, UploadSession, UploadSessions } from '../upload-sessions.js';
import type { S3Location } from './location.js';
import { PartBuffer } from './part-buffer.js';
import { SessionClaim } from './session-claim.js';
import { UploadObjects, type SessionState } from './upload-objects.js';

const UPLOAD_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MiB = 1024 * 1024;
/** S3's smallest part but the last, and its largest. */
const MIN_PART_SIZE = 5 * MiB;
const MAX_PART_SIZE = 5 * 1024 * MiB;
const MAX_PARTS = 10_000;

/**
 * Makes the verified, assembled object at `source.bucketKey` (a key in the location's bucket,
 * prefix included) blob `d`, linked into `link`. The session's objects are removed afterwards.
 */
export type PublishUpload = (d: Digest, source: { bucketKey: string; size: number }, link?: BlobLink) => Promise<void>;

export interface S3UploadsOptions {
  /** Bytes per multipart part (default 8 MiB; 5 MiB to 5 GiB). */
  partSize?: number;
  /** How long a request's claim on a session lasts unless renewed (default 60 s). */
  leaseMs?: number;
  publish: PublishUpload;
}

/** The upload sessions of one bucket prefix. */
export class S3Uploads implements UploadSessions {
  private readonly objects: UploadObjects;
  private readonly partSize: number;
  private readonly leaseMs: number;
  private readonly publish: PublishUpload;
  /** Running sha256 of sessions whose every byte passed through this process, and the size it covers. */
  private readonly hashes = new Map<string, { hash: Hash; size: number }>();
  /** Sessions a request (or a removal) of this process works on now. */
  private readonly busy = new Set<string>();
  private readonly running = new Set<Promise<unknown>>();

  constructor(location: S3Location, opts: S3UploadsOptions) {
    this.objects = new UploadObjects(location);
    this.partSize = opts.partSize ?? 8 * MiB;
    if (!Number.isInteger(this.partSize) || this.partSize < MIN_PART_SIZE || this.partSize > MAX_PART_SIZE) {
      throw new RangeError(`the upload part size must be 5 MiB to 5 GiB (S3's part limits), not ${opts.partSize}`);
    }
    this.leaseMs = opts.leaseMs ?? 60_000;
    this.publish = opts.publish;
  }

  /** Opens a new session for `repository`. */
  async create(repository: string): Promise<UploadSession> {
    const id = randomUUID();
    const now = Date.now();
    const state: SessionState = { repository, startedAt: now, updatedAt: now, size: 0, parts: [], nextPart: 1, tailSize: 0 };
    await this.objects.create(id, state);
    this.hashes.set(id, { hash: newHash('sha256'), size: 0 });
    return { id, repository, startedAt: now, size: 0 };
  }

  /** The session `id` of `repository`; throws UploadNotFoundError for any other. */
  async get(repository: string, id: string): Promise<UploadSession> {
    if (!UPLOAD_ID_RE.test(id)) throw new UploadNotFoundError(id);
    const found = await this.objects.read(id);
    if (!found || found.state.removing || found.state.repository !== repository) throw new UploadNotFoundError(id);
    return { id, repository, startedAt: found.state.startedAt, size: found.state.size };
  }

  /** Appends a chunk where the session stands in the bucket (`start`, if given, must be there). Returns the new size. */
  append(session: UploadSession, source: AsyncIterable<Uint8Array>, start?: number, limit?: number): Promise<number> {
    return this.exclusive(session, (claim) => this.appendClaimed(claim, source, start, limit, true));
  }

  /** Appends `last`, assembles and verifies the upload, and publishes it as blob `expected`. */
  complete(session: UploadSession, expected: Digest, last?: AsyncIterable<Uint8Array>, limit?: number, link?: BlobLink): Promise<{ size: number }> {
    return this.exclusive(session, async (claim) => {
      if (last) await this.appendClaimed(claim, last, undefined, limit, false);
      const { key, size } = await this.assemble(claim);
      const hex = await this.digestOf(claim.id, key, size, expected.algorithm);
      if (hex !== expected.hex) {
        await claim.end(true);
        await this.remove(claim.id);
        throw new DigestMismatchError(expected.value, `${expected.algorithm}:${hex}`);
      }
      await this.publish(expected, { bucketKey: this.objects.key(key), size }, link);
      await claim.end(true);
      await this.remove(claim.id);
      return { size };
    });
  }

  /** Cancels a session and removes its objects (its multipart upload aborted). */
  async cancel(session: UploadSession): Promise<void> {
    await this.remove(session.id);
  }

  /** Removes sessions idle longer than `idleMs` (with `broken`, half-made or half-removed ones whatever their age); returns how many. */
  async purgeStale(idleMs: number, opts: { broken?: boolean } = {}): Promise<number> {
    let purged = 0;
    const cutoff = Date.now() - idleMs;
    const sessions = await this.describe();
    for (const s of sessions) {
      if (await this.removeIfIdle(s.id, s.broken && opts.broken ? Number.POSITIVE_INFINITY : cutoff)) purged++;
    }
    // Hashes of sessions that another replica completed or removed.
    const present = new Set(sessions.map((s) => s.id));
    for (const id of this.hashes.keys()) if (!present.has(id) && !this.busy.has(id)) this.hashes.delete(id);
    return purged;
  }

  /** Ids of every session in the bucket (with objects or a multipart upload under uploads/<id>/). */
  async list(): Promise<string[]> {
    const [dirs, multipart] = await Promise.all([this.objects.sessionDirs(), this.objects.multipartUploads('uploads/')]);
    return [...new Set([...dirs, ...multipart.map((u) => u.id)])];
  }

  /** Every session: repository, bytes received, last activity, and whether it is whole. */
  async describe(): Promise<UploadDescription[]> {
    const multipart = await this.objects.multipartUploads('uploads/');
    const ids = new Set([...(await this.objects.sessionDirs()), ...multipart.map((u) => u.id)]);
    const out: UploadDescription[] = [];
    for (const id of ids) {
      const d = await this.inspect(id, multipart.filter((u) => u.id === id));
      if (d) out.push(d);
    }
    return out;
  }

  /**
   * Removes session `id` if it was last active before `cutoff` and no request (of any replica)
   * holds it: a whole session is first marked as being removed by compare-and-swap, so that no
   * replica claims it meanwhile. True when removed.
   */
  async removeIfIdle(id: string, cutoff: number): Promise<boolean> {
    if (this.busy.has(id)) return false;
    this.busy.add(id);
    try {
      const found = await this.objects.read(id);
      if (found && !found.state.removing) {
        const { state } = found;
        if (state.claim && state.claim.until > Date.now()) return false;
        if (state.updatedAt >= cutoff) return false;
        if ((await this.objects.replace(id, { ...state, removing: true }, found.etag)) === undefined) return false;
        await this.remove(id);
        return true;
      }
      const d = await this.inspect(id, await this.objects.multipartUploads(this.objects.dir(id)));
      if (!d || d.lastActiveMs >= cutoff) return false;
      await this.remove(id);
      return true;
    } finally {
      this.busy.delete(id);
    }
  }

  /** Resolves once no request of this process writes to a session. */
  async settled(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  /** What the bucket says of session `id`, given its multipart uploads; undefined when nothing of it is left. */
  private async inspect(id: string, multipart: Array<{ initiatedMs: number }>): Promise<UploadDescription | undefined> {
    const found = await this.objects.read(id);
    if (found && !found.state.removing) {
      return { id, repository: found.state.repository, size: found.state.size, lastActiveMs: found.state.updatedAt, broken: false };
    }
    const objects = await this.objects.objects(id);
    if (!found && objects.length === 0 && multipart.length === 0) return undefined;
    const lastActiveMs = Math.max(found?.state.updatedAt ?? 0, ...objects.map((o) => o.modifiedMs), ...multipart.map((u) => u.initiatedMs));
    return { id, repository: found?.state.repository, size: found?.state.size ?? 0, lastActiveMs, broken: true };
  }

  /** Runs `fn` holding the session: one request of this process, and one claim among the replicas. */
  private exclusive<T>(session: UploadSession, fn: (claim: SessionClaim) => Promise<T>): Promise<T> {
    const run = (async () => {
      if (this.busy.has(session.id)) throw new UploadBusyError(session.id);
      this.busy.add(session.id);
      try {
        const claim = await SessionClaim.take(this.objects, session.id, session.repository, this.leaseMs);
        try {
          return await fn(claim);
        } finally {
          await claim.end();
        }
      } finally {
        this.busy.delete(session.id);
      }
    })();
    this.running.add(run);
    const done = () => void this.running.delete(run);
    run.then(done, done);
    return run;
  }

  /**
   * Appends `source` to the claimed session: the tail read back and whole parts sent as they
   * fill, the rest written as the new tail. On a failure of the source (a client gone, the
   * limit passed) the bytes received are kept, as on a disk; on a failure of the bucket the
   * session stays as last recorded. With `release`, the last change drops the claim.
   */
  private async appendClaimed(claim: SessionClaim, source: AsyncIterable<Uint8Array>, start: number | undefined, limit = Number.POSITIVE_INFINITY, release: boolean): Promise<number> {
    const before = claim.state;
    // Assembled by a completion whose publish failed: it takes no more bytes, only a retried completion.
    if (before.assembledKey) throw new UploadBusyError(claim.id);
    if (start !== undefined && start !== before.size) throw new UploadRangeError(before.size, start);
    const hash = this.takeHash(claim.id, before.size);
    const buf = new PartBuffer(this.partSize);
    if (before.tailSize > 0) buf.fill(await this.objects.readSmall(before.tailKey!, before.tailSize));
    /** The buffer holds bytes the bucket does not have yet. */
    let unsaved = false;
    let bucketFailed = false;
    let total = before.size;
    try {
      for await (const chunk of source) {
        if (chunk.byteLength === 0) continue;
        if (total + chunk.byteLength > limit) throw new TooLargeError(limit);
        hash?.update(chunk);
        total += chunk.byteLength;
        let rest = chunk;
        while (rest.byteLength > 0) {
          rest = buf.fill(rest);
          unsaved = true;
          if (buf.full) {
            try {
              await this.sendPart(claim, buf);
            } catch (err) {
              bucketFailed = true;
              throw err;
            }
            unsaved = false;
          }
        }
      }
    } catch (err) {
      if (!bucketFailed) {
        // Keep what arrived before the failure: the running hash covers exactly that.
        const saved = await this.saveTail(claim, buf, unsaved, release).then(() => true, () => false);
        if (saved) this.keepHash(claim.id, hash, claim.state.size);
      }
      throw err;
    }
    await this.saveTail(claim, buf, unsaved, release);
    this.keepHash(claim.id, hash, claim.state.size);
    return claim.state.size;
  }

  /** Sends the full buffer as the session's next part and records it (the tail it began with is then part of it). */
  private async sendPart(claim: SessionClaim, buf: PartBuffer): Promise<void> {
    const partNumber = await this.reservePart(claim);
    const body = buf.bytes();
    const r = await this.objects.client.send(
      new UploadPartCommand({ Bucket: this.objects.bucket, Key: this.objects.key(this.objects.dataKey(claim.id)), UploadId: claim.state.multipartUploadId, PartNumber: partNumber, Body: body, ContentLength: body.byteLength }),
    );
    const oldTail = claim.state.tailKey;
    await claim.commit({ parts: [...claim.state.parts, { partNumber, etag: r.ETag!, size: body.byteLength }], tailKey: undefined, tailSize: 0 });
    buf.clear();
    if (oldTail) await this.objects.delete(oldTail).catch(() => {});
  }

  /** Reserves the next part number in session.json (starting the multipart upload first if there is none). */
  private async reservePart(claim: SessionClaim): Promise<number> {
    const partNumber = claim.state.nextPart;
    if (partNumber > MAX_PARTS) throw new TooLargeError(this.partSize * MAX_PARTS);
    if (claim.state.multipartUploadId) {
      await claim.commit({ nextPart: partNumber + 1 });
      return partNumber;
    }
    const dataKey = this.objects.dataKey(claim.id);
    const r = await this.objects.client.send(new CreateMultipartUploadCommand({ Bucket: this.objects.bucket, Key: this.objects.key(dataKey) }));
    try {
      await claim.commit({ multipartUploadId: r.UploadId!, nextPart: partNumber + 1 });
    } catch (err) {
      await this.objects.abort(dataKey, r.UploadId!).catch(() => {});
      throw err;
    }
    return partNumber;
  }

  /** Writes the buffer as the session's new tail (a fresh key) and records it; the old tail goes. */
  private async saveTail(claim: SessionClaim, buf: PartBuffer, unsaved: boolean, release: boolean): Promise<void> {
    if (!unsaved) {
      if (release) await claim.commit({}, { release });
      return;
    }
    const oldTail = claim.state.tailKey;
    const tailKey = this.objects.tailKey(claim.id, randomBytes(8).toString('hex'));
    await this.objects.writeSmall(tailKey, buf.bytes());
    try {
      await claim.commit({ tailKey, tailSize: buf.length }, { release });
    } catch (err) {
      await this.objects.delete(tailKey).catch(() => {});
      throw err;
    }
    if (oldTail) await this.objects.delete(oldTail).catch(() => {});
  }

  /**
   * Puts the session's bytes in one object: the multipart upload completed with the tail as its
   * last part, or with no whole part the tail itself (an empty object for an empty upload).
   * Recorded in session.json, so that a completion retried after a failed publish starts here.
   */
  private async assemble(claim: SessionClaim): Promise<{ key: string; size: number }> {
    const s = claim.state;
    if (s.assembledKey) return { key: s.assembledKey, size: s.size };
    const { client, bucket } = this.objects;
    const dataKey = this.objects.dataKey(claim.id);
    let key = dataKey;
    if (s.multipartUploadId && (s.parts.length > 0 || s.tailSize > 0)) {
      const parts = [...s.parts];
      if (s.tailSize > 0) {
        const partNumber = await this.reservePart(claim);
        const body = await this.objects.readSmall(s.tailKey!, s.tailSize);
        const r = await client.send(new UploadPartCommand({ Bucket: bucket, Key: this.objects.key(dataKey), UploadId: s.multipartUploadId, PartNumber: partNumber, Body: body, ContentLength: body.byteLength }));
        parts.push({ partNumber, etag: r.ETag!, size: body.byteLength });
      }
      // Ceph 16 answers an empty ETag here; nothing below needs it.
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: this.objects.key(dataKey),
          UploadId: s.multipartUploadId,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
        }),
      );
    } else {
      if (s.multipartUploadId) await this.objects.abort(dataKey, s.multipartUploadId);
      if (s.tailSize > 0) key = s.tailKey!;
      else await this.objects.writeSmall(dataKey, new Uint8Array(0));
    }
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: this.objects.key(key) }));
    if (head.ContentLength !== s.size) {
      throw new Error(`upload ${claim.id} assembled ${head.ContentLength} bytes at ${this.objects.location.url}${key}, its session recorded ${s.size}`);
    }
    await claim.commit({ assembledKey: key, multipartUploadId: undefined, parts: [], tailKey: undefined, tailSize: 0 });
    return { key, size: s.size };
  }

  /** The hex digest of the assembled upload: the running hash when it covers every byte, else the object read back. */
  private async digestOf(id: string, key: string, size: number, algorithm: Algorithm): Promise<string> {
    const live = this.hashes.get(id);
    this.hashes.delete(id);
    if (live && live.size === size && algorithm === 'sha256') return live.hash.digest('hex');
    const r = await this.objects.client.send(new GetObjectCommand({ Bucket: this.objects.bucket, Key: this.objects.key(key) }));
    const hash = newHash(algorithm);
    for await (const chunk of r.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
    return hash.digest('hex');
  }

  /** The running hash of session `id` if it covers the session's `size` bytes (a fresh one for an empty session). */
  private takeHash(id: string, size: number): Hash | undefined {
    const live = this.hashes.get(id);
    this.hashes.delete(id);
    if (live && live.size === size) return live.hash;
    return size === 0 ? newHash('sha256') : undefined;
  }

  private keepHash(id: string, hash: Hash | undefined, size: number): void {
    if (hash) this.hashes.set(id, { hash, size });
  }

  private async remove(id: string): Promise<void> {
    this.hashes.delete(id);
    await this.objects.removeAll(id);
  }
}
