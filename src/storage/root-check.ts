// Checks a storage root before it is opened, for the two surprises of a reused directory or
// container volume: one this process cannot write (a volume an image running as root created,
// as `registry:2` does) is refused with its path, its owner and the fix, instead of an EACCES on
// some subdirectory; and one holding distribution's filesystem layout (`docker/registry/v2/`)
// is named, since regcache does not serve the images stored that way.
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

/** Where distribution's filesystem driver keeps its data under its root directory. */
export const DISTRIBUTION_LAYOUT = join('docker', 'registry', 'v2');

/** The path the container image declares as its volume (the one `registry:2` users mount). */
const IMAGE_VOLUME = '/var/lib/registry';

/** A storage root (or a directory in it) this process may not write; `reason` is the errno code (EACCES, EPERM). */
export class StorageAccessError extends Error {
  constructor(readonly path: string, readonly ownerUid: number, readonly uid: number, readonly reason: string) {
    super(accessMessage(path, ownerUid, uid));
    this.name = 'StorageAccessError';
  }
}

function accessMessage(path: string, ownerUid: number, uid: number): string {
  const chown = `chown -R ${uid}:${uid} ${path}`;
  const volume = path.startsWith(IMAGE_VOLUME)
    ? `; for a docker volume: docker run --rm -u 0 -v <volume>:${IMAGE_VOLUME} --entrypoint chown <image> -R ${uid}:${uid} ${IMAGE_VOLUME}`
    : '';
  return `storage ${path} is owned by uid ${ownerUid} and not writable by uid ${uid} (this process): give it to uid ${uid} (${chown}${volume}), or choose another directory with --storage`;
}

/** The storage's own top-level directories, checked when they exist already. */
const TOP_LEVEL = ['blobs', 'uploads', 'repositories', 'cache', 'tmp'];

/** The path itself when it exists, else its nearest existing ancestor. */
async function nearestExisting(path: string): Promise<string> {
  for (let p = resolve(path); ; p = dirname(p)) {
    if (await stat(p).then(() => true, () => false)) return p;
    if (dirname(p) === p) return p;
  }
}

/**
 * Throws StorageAccessError when this process may not create entries in the directory `path`.
 * A path that is not a directory, or a read-only file system, is left to the mkdir that follows
 * (the server names those: src/server/server.ts).
 */
async function assertWritable(path: string): Promise<void> {
  if (!(await stat(path).then((s) => s.isDirectory(), () => false))) return;
  try {
    await access(path, constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EACCES';
    if (code === 'EROFS') return;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
    const owner = await stat(path).then((s) => s.uid, () => -1);
    throw new StorageAccessError(path, owner, process.getuid?.() ?? -1, code);
  }
}

/**
 * Throws {@link StorageAccessError} when the storage root (or the ancestor it would be created
 * in), or one of its existing top-level directories, is not writable by this process.
 */
export async function checkStorageRoot(root: string): Promise<void> {
  const existing = await nearestExisting(root);
  await assertWritable(existing);
  if (existing !== resolve(root)) return;
  for (const name of TOP_LEVEL) {
    const dir = join(existing, name);
    if (await stat(dir).then((s) => s.isDirectory(), () => false)) await assertWritable(dir);
  }
}

/** The path of distribution's layout under `root` (`<root>/docker/registry/v2`), or undefined. */
export async function distributionLayoutIn(root: string): Promise<string | undefined> {
  const path = join(root, DISTRIBUTION_LAYOUT);
  return (await stat(path).then((s) => s.isDirectory(), () => false)) ? path : undefined;
}
