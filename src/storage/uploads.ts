// Upload sessions: a blob pushed in one or more requests. Bytes go to
// uploads/<id>/data as they arrive, hashed on the way; the running hash lives in memory
// and is recomputed from the file when it was lost (a restart), so a session survives
// a restart and is resumable. Completing a session verifies and publishes its data
// file as a blob without copying it.
import { open, mkdir, rm, stat, type FileHandle } from 'node:fs/promises';
import { randomUUID, type Hash } from 'node:crypto';
import { join } from 'node:path';
import { Layout } from './layout.js';
import { BlobStore, appendStream, hashFile, readdirOrEmpty } from './blob-store.js';
import { writeFileAtomic, readJson, isNotFound } from './fs-util.js';
import { DigestMismatchError, UploadBusyError, UploadNotFoundError, UploadRangeError } from './errors.js';
import { newHash, type Digest } from '../oci/index.js';
import type { BlobLink } from './blob-lifetime.js';
import type { UploadDescription, UploadRecord, UploadSession, UploadSessions } from './upload-sessions.js';

export type { UploadRecord, UploadSession } from './upload-sessions.js';

const UPLOAD_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;


/** True for the errors of a full disk or an exhausted quota. */
function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}


interface LiveState {
  hash: Hash | undefined;
  size: number;
  busy: boolean;
  /** Set while a purge checks the session (a few file operations): a request waits for it. */
  purging?: Promise<void>;
}

/** The upload sessions of one storage root, in its local directory. */
export class Uploads implements UploadSessions {
  private readonly live = new Map<string, LiveState>();
  /** Requests writing to a session now. */
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly layout: Layout, private readonly blobs: BlobStore) {}

  /** Opens a new session for `repository`. */
  async create(repository: string): Promise<UploadSession> {
    const id = randomUUID();
    const dir = this.layout.upload(id);
    // Busy while it is made: a purge running meanwhile leaves it alone.
    const state: LiveState = { hash: newHash('sha256'), size: 0, busy: true };
    this.live.set(id, state);
    const record: UploadRecord = { repository, startedAt: Date.now() };
    try {
      await mkdir(dir, { recursive: true });
      await (await open(join(dir, 'data'), 'wx')).close();
      await writeFileAtomic(this.layout.tmpDir, join(dir, 'session.json'), JSON.stringify(record));
    } catch (err) {
      // A full disk, typically: leave no half-made session behind.
      this.live.delete(id);
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    state.busy = false;
    return { id, size: 0, ...record };
  }

  /** The session `id` of `repository`; throws UploadNotFoundError for any other. */
  async get(repository: string, id: string): Promise<UploadSession> {
    if (!UPLOAD_ID_RE.test(id)) throw new UploadNotFoundError(id);
    const record = await readJson<UploadRecord>(join(this.layout.upload(id), 'session.json')).catch(() => undefined);
    if (!record || record.repository !== repository) throw new UploadNotFoundError(id);
    const size = await this.size(id);
    return { id, size, ...record };
  }

  /**
   * Appends a chunk. `start`, when the client sent a Content-Range, must be where the
   * upload stands. Returns the new size.
   */
  async append(session: UploadSession, source: AsyncIterable<Uint8Array>, start?: number, limit?: number): Promise<number> {
    return this.exclusive(session, async (state, fh) => {
      if (start !== undefined && start !== state.size) throw new UploadRangeError(state.size, start);
      const before = state.size;
      try {
        state.size += await appendStream(fh, source, state.hash, state.size, limit);
      } catch (err) {
        // The file may hold part of the chunk now: the running hash no longer matches it.
        state.hash = undefined;
        // On a full disk, give the space back: the session stands where it did before this chunk.
        if (isDiskFull(err)) await fh.truncate(before).catch(() => {});
        state.size = await this.size(session.id);
        throw err;
      }
      return state.size;
    });
  }

  /**
   * Appends an optional last chunk, verifies the whole upload against `expected`, and
   * publishes it as a blob linked into `link` (one step of the lifetime owner, taken once the
   * bytes are all in). The session ends either way on a digest mismatch.
   */
  async complete(session: UploadSession, expected: Digest, last?: AsyncIterable<Uint8Array>, limit?: number, link?: BlobLink): Promise<{ size: number }> {
    if (last) await this.append(session, last, undefined, limit);
    const size = await this.exclusive(session, async (state, fh) => {
      const dataPath = join(this.layout.upload(session.id), 'data');
      let hex: string;
      if (state.hash && expected.algorithm === 'sha256') {
        hex = state.hash.digest('hex');
        state.hash = undefined;
      } else {
        hex = (await hashFile(dataPath, expected.algorithm)).hex;
      }
      if (hex !== expected.hex) {
        await this.remove(session.id);
        throw new DigestMismatchError(expected.value, `${expected.algorithm}:${hex}`);
      }
      await fh.sync();
      await this.blobs.lifetime.publishFile(dataPath, expected, link);
      return state.size;
    });
    await this.remove(session.id);
    return { size };
  }

  /** Cancels a session and removes its data. */
  async cancel(session: UploadSession): Promise<void> {
    await this.remove(session.id);
  }

  /**
   * Removes sessions idle (no session created or bytes received) for longer than `idleMs`;
   * returns how many. With `broken`, also removes sessions that miss their record or their
   * data (a crash while one was created or completed): only safe while no request runs, at startup.
   */
  async purgeStale(idleMs: number, opts: { broken?: boolean } = {}): Promise<number> {
    let purged = 0;
    const cutoff = Date.now() - idleMs;
    for (const s of await this.describe()) {
      if (await this.removeIfIdle(s.id, s.broken && opts.broken ? Number.POSITIVE_INFINITY : cutoff)) purged++;
    }
    return purged;
  }

  /** Every session on disk: its repository, bytes received, last activity, and whether it is whole. */
  async describe(): Promise<UploadDescription[]> {
    const out: UploadDescription[] = [];
    for (const id of await readdirOrEmpty(this.layout.uploadsDir)) {
      const s = await this.inspect(id);
      if (s) out.push({ id, ...s });
    }
    return out;
  }

  /**
   * Removes session `id` if it was last active before `cutoff` and no request is using it; the
   * session is claimed (busy) while it is checked and removed, so that no request starts on it
   * meanwhile. True when removed.
   */
  async removeIfIdle(id: string, cutoff: number): Promise<boolean> {
    const existing = this.live.get(id);
    if (existing?.busy) return false;
    // A placeholder claim is dropped again unless the session is removed (a request then resumes
    // from the file, as after a restart).
    const claim: LiveState = existing ?? { hash: undefined, size: 0, busy: false };
    let checked!: () => void;
    claim.busy = true;
    claim.purging = new Promise<void>((resolve) => (checked = resolve));
    this.live.set(id, claim);
    try {
      const s = await this.inspect(id);
      if (!s || s.lastActiveMs >= cutoff) return false;
      await this.remove(id);
      return true;
    } finally {
      claim.busy = false;
      delete claim.purging;
      if (!existing && this.live.get(id) === claim) this.live.delete(id);
      checked();
    }
  }

  /** What the disk says of session `id`, or undefined when it is gone. */
  private async inspect(id: string): Promise<{ repository: string | undefined; size: number; lastActiveMs: number; broken: boolean } | undefined> {
    const dir = this.layout.upload(id);
    const record = await readJson<UploadRecord>(join(dir, 'session.json')).catch(() => undefined);
    const data = await stat(join(dir, 'data')).catch(() => undefined);
    const broken = !record || !data;
    const dirStat = broken ? await stat(dir).catch(() => undefined) : undefined;
    if (broken && !dirStat) return undefined;
    const lastActiveMs = Math.max(record?.startedAt ?? 0, data?.mtimeMs ?? 0, dirStat?.mtimeMs ?? 0);
    return { repository: record?.repository, size: data?.size ?? 0, lastActiveMs, broken };
  }

  /** Ids of every session on disk (garbage collection keeps their blobs' neighbours alone). */
  list(): Promise<string[]> {
    return readdirOrEmpty(this.layout.uploadsDir);
  }

  private async size(id: string): Promise<number> {
    try {
      return (await stat(join(this.layout.upload(id), 'data'))).size;
    } catch (err) {
      if (isNotFound(err)) throw new UploadNotFoundError(id);
      throw err;
    }
  }

  private async remove(id: string): Promise<void> {
    this.live.delete(id);
    await rm(this.layout.upload(id), { recursive: true, force: true });
  }

  /** Resolves once no request writes to a session (a shutdown waits for this before it releases the storage). */
  async settled(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  /** Runs `fn` with the session's state and data file, one request at a time. */
  private exclusive<T>(session: UploadSession, fn: (state: LiveState, fh: FileHandle) => Promise<T>): Promise<T> {
    const run = this.runExclusive(session, fn);
    this.running.add(run);
    const done = () => void this.running.delete(run);
    run.then(done, done);
    return run;
  }

  private async runExclusive<T>(session: UploadSession, fn: (state: LiveState, fh: FileHandle) => Promise<T>): Promise<T> {
    // A purge checking this session holds it for a moment: wait for it rather than answer busy
    // (a session it removed is then not found).
    for (let purging = this.live.get(session.id)?.purging; purging; purging = this.live.get(session.id)?.purging) await purging;
    let state = this.live.get(session.id);
    if (!state) {
      // Lost with a restart: resume from the file; the hash is recomputed at completion.
      state = { hash: session.size === 0 ? newHash('sha256') : undefined, size: session.size, busy: false };
      this.live.set(session.id, state);
    }
    if (state.busy) throw new UploadBusyError(session.id);
    state.busy = true;
    let fh: FileHandle;
    try {
      fh = await open(join(this.layout.upload(session.id), 'data'), 'r+');
    } catch (err) {
      state.busy = false;
      if (isNotFound(err)) throw new UploadNotFoundError(session.id);
      throw err;
    }
    try {
      return await fn(state, fh);
    } finally {
      state.busy = false;
      await fh.close().catch(() => {});
    }
  }
}
