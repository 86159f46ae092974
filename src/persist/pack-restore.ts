// The read tier: when a client asks for a blob that is not on disk and the index names the
// pack holding it, the pack is restored from the Actions cache (one restore per pack however
// many ask), every blob in it verified against its digest before it enters the store. A bad
// blob is discarded (the caller then goes upstream); a missing or failing pack likewise.
import { readdir, rm, mkdir, open, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Storage } from '../storage/index.js';
import { SingleFlight } from '../proxy/index.js';
import { newHash, tryParseDigest, type Digest } from '../oci/index.js';
import { PACK_PATH } from './keys.js';
import { packOfBlob, type PersistIndex } from './persist-index.js';
import type { ActionsCache } from './actions-cache.js';

/** What the tier has done, for the job summary. */
export interface RestoreReport {
  packsRestored: number;
  packsMissing: number;
  blobsRestored: number;
  blobsRejected: number;
  bytesRestored: number;
  seconds: number;
}

/** Hashes a restored file and fsyncs it (it is published by rename right after). */
async function hashAndSync(path: string, algorithm: 'sha256' | 'sha512'): Promise<string> {
  const h = newHash(algorithm);
  const fh = await open(path, 'r');
  try {
    for await (const chunk of fh.createReadStream({ highWaterMark: 1024 * 1024, autoClose: false })) h.update(chunk as Buffer);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** The file name a blob has inside a pack. */
export function packFileName(d: Digest): string {
  return `${d.algorithm}-${d.hex}`;
}

/** Restores packs into the store on demand. */
export class PackRestorer {
  private readonly packOf: Map<string, string>;
  private readonly flights = new SingleFlight<Set<string>>();
  readonly report: RestoreReport = { packsRestored: 0, packsMissing: 0, blobsRestored: 0, blobsRejected: 0, bytesRestored: 0, seconds: 0 };

  constructor(private readonly storage: Storage, index: PersistIndex, private readonly cache: ActionsCache, private readonly stagingDir: string) {
    this.packOf = packOfBlob(index);
  }

  /** True when some pack holds `d`. */
  knows(d: Digest): boolean {
    return this.packOf.has(d.value);
  }

  /** Restores the pack holding `d`; true when `d` is in the store afterwards. */
  async fetch(d: Digest): Promise<boolean> {
    const key = this.packOf.get(d.value);
    if (!key) return false;
    try {
      const restored = await this.flights.run(key, () => this.restorePack(key)).promise;
      return restored.has(d.value);
    } catch {
      return false;
    }
  }

  /** Restores every pack in the background (the Action's prefetch input). */
  prefetchAll(): Promise<void> {
    const keys = [...new Set(this.packOf.values())];
    return keys.reduce((p, key) => p.then(() => this.flights.run(key, () => this.restorePack(key)).promise.then(() => {}, () => {})), Promise.resolve());
  }

  private async restorePack(key: string): Promise<Set<string>> {
    const started = Date.now();
    const workspace = join(this.stagingDir, `restore-${randomBytes(6).toString('hex')}`);
    await mkdir(workspace, { recursive: true });
    const restored = new Set<string>();
    try {
      const hit = await this.cache.restore(workspace, PACK_PATH, key, [], true);
      if (hit !== key) {
        this.report.packsMissing++;
        return restored;
      }
      this.report.packsRestored++;
      const dir = join(workspace, PACK_PATH);
      for (const name of await readdir(dir)) {
        const d = tryParseDigest(name.replace('-', ':'));
        if (!d) continue;
        const file = join(dir, name);
        if ((await hashAndSync(file, d.algorithm)) !== d.hex) {
          this.report.blobsRejected++;
          continue;
        }
        const { size } = await stat(file);
        await this.storage.blobs.publishFile(file, d);
        restored.add(d.value);
        this.report.blobsRestored++;
        this.report.bytesRestored += size;
      }
      return restored;
    } finally {
      this.report.seconds += (Date.now() - started) / 1000;
      await rm(workspace, { recursive: true, force: true });
    }
  }
}
