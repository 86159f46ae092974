// A pid lock on the storage root: one server process owns a storage directory at a time,
// which is what lets the metadata caches stay coherent. A lock left by a dead process
// (a crash, kill -9) is taken over. A pid cannot tell two owners inside one process apart,
// so this process also remembers which locks it holds.
//
// The lock is a symbolic link whose target is the owner's pid: creating it is atomic and
// fails when it exists, and a short target lives in the inode itself, so the lock can be
// taken on a file system without a free data block (a full disk, from which the server must
// still serve what it has). A regular file holding a pid (older versions) is read as well.
import { readFile, readlink, symlink, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { StorageLockedError } from './errors.js';

/** Lock files held by this process (a lock naming our pid that is not here is left from a previous life). */
const held = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock at `path` for this process; throws StorageLockedError if a live process holds it. */
export async function acquireLock(path: string): Promise<() => Promise<void>> {
  const key = resolve(path);
  if (held.has(key)) throw new StorageLockedError(path, process.pid);
  held.add(key);
  try {
    return await takeLock(path, key);
  } catch (err) {
    held.delete(key);
    throw err;
  }
}

/** The pid a lock names (NaN when it names none). */
async function ownerOf(path: string): Promise<number> {
  const text = await readlink(path).catch(() => readFile(path, 'utf8')).catch(() => '');
  return Number.parseInt(text, 10);
}

async function takeLock(path: string, key: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await symlink(String(process.pid), path);
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        if ((await ownerOf(path)) === process.pid) await unlink(path).catch(() => {});
        held.delete(key);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = await ownerOf(path);
      if (Number.isInteger(owner) && owner !== process.pid && alive(owner)) throw new StorageLockedError(path, owner);
      await unlink(path).catch(() => {});
    }
  }
  throw new StorageLockedError(path, -1);
}
