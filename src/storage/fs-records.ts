// Records as small files under the storage root: the filesystem backend of `Records`. A key is
// a path relative to the root; a write is atomic (temp file, fsync, rename, directory fsync).
// One process owns a storage root (lock.ts), so nothing here needs a conditional write.
import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Records } from './backend.js';
import { isNotFound, removeFile, writeFileAtomic } from './fs-util.js';

/** Small records under one directory. */
export class FsRecords implements Records {
  readonly exclusive = true;

  /** `tmpDir` must be on the same file system as `root` (renames). */
  constructor(
    readonly root: string,
    private readonly tmpDir: string,
  ) {}

  get location(): string {
    return this.root;
  }

  /** The file of record `key`. */
  path(key: string): string {
    return join(this.root, key);
  }

  async read(key: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.path(key));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  write(key: string, data: string | Uint8Array): Promise<void> {
    return writeFileAtomic(this.tmpDir, this.path(key), data);
  }

  async has(key: string): Promise<boolean> {
    try {
      await stat(this.path(key));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  remove(key: string): Promise<boolean> {
    return removeFile(this.path(key));
  }

  async children(prefix: string): Promise<string[]> {
    try {
      return await readdir(this.path(prefix));
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }

  async removeTree(prefix: string): Promise<void> {
    await rm(this.path(prefix), { recursive: true, force: true });
  }
}
