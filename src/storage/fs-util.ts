// Small filesystem primitives the stores share: atomic publication of a file (write to
// tmp/, fsync, rename, fsync the directory) and tolerant reads of small records.
import { open, rename, mkdir, readFile, unlink, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';

/** A fresh, unique path inside `tmpDir` for content that is not yet published. */
export function tempPath(tmpDir: string): string {
  return join(tmpDir, `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}`);
}

/** fsyncs a directory so that a rename into it survives a power loss. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Creates `dir` and its missing parents, and fsyncs the parent of each directory it created,
 * so that the new entries survive a power loss as well as what is renamed into them. Returns
 * false when `dir` existed already.
 */
export async function makeDirDurable(dir: string): Promise<boolean> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return false;
  // Created: `first` and every directory between it and `dir`; each one's parent gains an entry.
  const created: string[] = [];
  for (let d = dir; d.length >= first.length; d = dirname(d)) created.push(d);
  for (const d of created.reverse()) await syncDir(dirname(d));
  return true;
}

/**
 * Renames `from` to `to`, creating `to`'s directory first (durably), then fsyncs that
 * directory. `from` must already be fsynced.
 */
export async function publish(from: string, to: string): Promise<void> {
  const dir = dirname(to);
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    // A concurrent writer that created the directory a moment ago may not have synced its parent yet.
    if (!(await makeDirDurable(dir))) await syncDir(dirname(dir));
    await rename(from, to);
  }
  await syncDir(dir);
}

/**
 * Writes `data` to `path` atomically: temp file, fsync, rename, directory fsync. On any
 * failure (a full disk included) the temp file is removed.
 */
export async function writeFileAtomic(tmpDir: string, path: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempPath(tmpDir);
  const fh = await open(tmp, 'wx');
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await publish(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Reads a small JSON record; undefined when it does not exist. */
export async function readJson<T>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  return JSON.parse(text) as T;
}

/** Removes a file; true when it existed. */
export async function removeFile(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/** True for the errors that mean "no such file or directory". */
export function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
