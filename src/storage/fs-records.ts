// Records as small files under the storage root: the filesystem backend of `Records`. A key is
// a path relative to the root; a write is atomic (temp file, fsync, rename, directory fsync),
// a create links its temp file into place (which fails when the name exists), and a
// conditional replace compares versions under a per-key lock: one process owns a storage
// root (lock.ts), so an in-process lock is all the exclusion a replace needs.
import { link, open, readFile, readdir, rm, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Records } from './backend.js';
import { KeyedLock } from './keyed-lock.js';
import { isNotFound, makeDirDurable, removeFile, syncDir, tempPath, writeFileAtomic } from './fs-util.js';

/** The version of a record's bytes, for replaceIf. */
function versionOf(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Small records under one directory. */
export class FsRecords implements Records {
  readonly exclusive = true;
  private readonly replacing = new KeyedLock();

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

  async readVersioned(key: string): Promise<{ data: Buffer; version: string } | undefined> {
    const data = await this.read(key);
    return data && { data, version: versionOf(data) };
  }

  write(key: string, data: string | Uint8Array): Promise<void> {
    return writeFileAtomic(this.tmpDir, this.path(key), data);
  }

  async create(key: string, data: string | Uint8Array): Promise<boolean> {
    const to = this.path(key);
    if (await this.has(key)) return false;
    const tmp = tempPath(this.tmpDir);
    const fh = await open(tmp, 'wx');
    try {
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      try {
        await link(tmp, to);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return false;
        if (code !== 'ENOENT') throw err;
        await makeDirDurable(join(to, '..'));
        try {
          await link(tmp, to);
        } catch (again) {
          if ((again as NodeJS.ErrnoException).code === 'EEXIST') return false;
          throw again;
        }
      }
      await syncDir(join(to, '..'));
      return true;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  replaceIf(key: string, data: string | Uint8Array, version: string): Promise<boolean> {
    return this.replacing.run(key, async () => {
      const current = await this.read(key);
      if (!current || versionOf(current) !== version) return false;
      await this.write(key, data);
      return true;
    });
  }

  async has(key: string): Promise<boolean> {
    return (await this.modifiedMs(key)) !== undefined;
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

  async modifiedMs(key: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(key))).mtimeMs;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async removeTree(prefix: string): Promise<void> {
    await rm(this.path(prefix), { recursive: true, force: true });
  }
}
