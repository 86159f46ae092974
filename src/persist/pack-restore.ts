// The read tier: when a client asks for a blob that is not on disk and the index names the
// pack holding it, the pack is restored from the Actions cache (one restore per pack however
// many ask), every blob in it verified against its digest before it enters the store. A bad
// blob is discarded (the caller then goes upstream); a missing or failing pack likewise.
import { readdir, rm, mkdir, open, lstat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Storage } from '../storage/index.js';
import { SingleFlight } from '../proxy/index.js';
import { tryParseDigest, type Digest } from '../oci/index.js';
import { PACK_PATH } from './keys.js';
import { packOfBlob, type PersistIndex } from './persist-index.js';
import type { ActionsCache } from './actions-cache.js';

/** What the tier has done, for the job summary. */
export interface RestoreReport {
  packsRestored: number;
  /** Packs the service said it does not have (evicted). */
  packsMissing: number;
  /** Packs found but not usable: the download or extraction failed, or blobs failed verification. */
  packsBroken: number;
  /** Packs not restored because the service was failing (breaker open, lookup failed), each counted once. */
  packsUnavailable: number;
  blobsRestored: number;
  blobsRejected: number;
  bytesRestored: number;
  seconds: number;
  /**
   * Keys of the packs that turned out missing or broken: the save drops them from the index
   * and packs their blobs again (under another key: a broken entry keeps its key).
   */
  unusable: string[];
}

/** The file name a blob has inside a pack. */
export function packFileName(d: Digest): string {
  return `${d.algorithm}-${d.hex}`;
}

/** Restores packs into the store on demand. */
export class PackRestorer {
  private readonly packOf: Map<string, string>;
  private readonly packs: PersistIndex['packs'];
  private readonly flights = new SingleFlight<Set<string>>();
  /** Packs already restored, or known missing or broken: each is asked for once per job. */
  private readonly settled = new Map<string, Set<string>>();
  /** Packs not restored (yet) because the service was failing. */
  private readonly unavailable = new Set<string>();
  readonly report: RestoreReport = {
    packsRestored: 0,
    packsMissing: 0,
    packsBroken: 0,
    packsUnavailable: 0,
    blobsRestored: 0,
    blobsRejected: 0,
    bytesRestored: 0,
    seconds: 0,
    unusable: [],
  };

  constructor(private readonly storage: Storage, index: PersistIndex, private readonly cache: ActionsCache, private readonly stagingDir: string) {
    this.packOf = packOfBlob(index);
    this.packs = index.packs;
  }

  /** True when some pack holds `d`. */
  knows(d: Digest): boolean {
    return this.packOf.has(d.value);
  }

  /** Restores the pack holding `d`; true when `d` is in the store afterwards. */
  async fetch(d: Digest): Promise<boolean> {
    const key = this.packOf.get(d.value);
    if (!key) return false;
    const settled = this.settled.get(key);
    if (settled) return settled.has(d.value) && (await this.storage.blobs.stat(d)) !== undefined;
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
    return keys.reduce(
      (p, key) => p.then(() => (this.settled.has(key) ? undefined : this.flights.run(key, () => this.restorePack(key)).promise.then(() => {}, () => {}))),
      Promise.resolve(),
    );
  }

  private async restorePack(key: string): Promise<Set<string>> {
    const started = Date.now();
    const workspace = join(this.stagingDir, `restore-${randomBytes(6).toString('hex')}`);
    await mkdir(workspace, { recursive: true });
    const restored = new Set<string>();
    try {
      const r = await this.cache.restore(workspace, PACK_PATH, key);
      if (r.outcome === 'unavailable') {
        // The service is failing: a later request may try again once the breaker allows.
        this.unavailable.add(key);
        this.report.packsUnavailable = this.unavailable.size;
        return restored;
      }
      this.unavailable.delete(key);
      this.report.packsUnavailable = this.unavailable.size;
      if (r.outcome === 'missing') {
        this.report.packsMissing++;
        this.unusable(key, restored);
        return restored;
      }
      if (r.outcome === 'restored') {
        const dir = join(workspace, PACK_PATH);
        for (const name of await readdir(dir).catch(() => [] as string[])) {
          const d = tryParseDigest(name.replace('-', ':'));
          if (!d || packFileName(d) !== name) continue;
          const file = join(dir, name);
          // Only regular files (never a link out of the pack) whose bytes hash to their name.
          if ((await lstat(file)).isSymbolicLink()) {
            this.report.blobsRejected++;
            continue;
          }
          const size = await this.storage.blobs.adoptFile(file, d).catch(() => undefined);
          if (size === undefined) {
            this.report.blobsRejected++;
            continue;
          }
          restored.add(d.value);
          this.report.blobsRestored++;
          this.report.bytesRestored += size;
        }
      }
      // Restored with every blob the index names in it, verified: usable. Otherwise broken.
      const expected = this.packs[key]?.digests ?? [];
      if (r.outcome === 'restored' && expected.every((v) => restored.has(v))) {
        this.report.packsRestored++;
        this.settled.set(key, restored);
      } else {
        this.report.packsBroken++;
        this.unusable(key, restored);
      }
      return restored;
    } finally {
      this.report.seconds += (Date.now() - started) / 1000;
      await rm(workspace, { recursive: true, force: true });
    }
  }

  /** Remembers a pack as missing or broken (asked for once; the save packs its blobs again). */
  private unusable(key: string, restored: Set<string>): void {
    this.settled.set(key, restored);
    if (!this.report.unusable.includes(key)) this.report.unusable.push(key);
  }
}
