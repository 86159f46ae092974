// The read tier: when a client asks for a blob that is not on disk and the index names the
// pack holding it, the pack is restored from the Actions cache (one restore per pack however
// many ask), every blob in it verified against its digest as it is written into the store. A
// bad blob is discarded (the caller then goes upstream); a missing or failing pack likewise.
// Blobs land as the pack streams in (entry-download.ts), and a client waiting for one is
// answered as soon as it is in the store, not when the whole pack is.
// Up to PARALLEL_RESTORES packs restore at once (a pack's time is partly the service's round
// trips); the prefetch takes at most PARALLEL_PREFETCH of those turns, and a client's request
// waiting for a turn goes before the prefetch's. The prefetch is speculation and yields to
// demand: while a client waits for a pack, no prefetch starts and those under way stop reading
// (for at most PACE_MAX_MS at a time). A client's manifest request names the image it pulls
// next: the packs of the layers the index knows for it are restored as if asked for.
// A blob already in the store (an earlier pack held it too) counts as restored, and once.
import type { Storage } from '../storage/index.js';
import { DigestMismatchError, SizeMismatchError } from '../storage/index.js';
import { SingleFlight } from '../shared/index.js';
import { manifestReferences, parseManifest, tryParseDigest, type Digest } from '../oci/index.js';
import { PACK_PATH } from './keys.js';
import { packOfBlob, type PersistIndex } from './persist-index.js';
import type { ActionsCache } from './actions-cache.js';
import type { EntryFile } from './entry-download.js';

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
  /** Wall time during which some pack restore ran (restores overlap: not their sum). */
  seconds: number;
  /**
   * Keys of the packs that turned out missing or broken: the save drops them from the index
   * and packs their blobs again (under another key: a broken entry keeps its key).
   */
  unusable: string[];
}

/** Packs restored at once. */
const PARALLEL_RESTORES = 4;
/** Of those, at most this many for the prefetch: the rest stay free for clients' requests. */
const PARALLEL_PREFETCH = 2;

/** Longest a prefetch download holds still for a client's pack (well under the download's idle timeout). */
const PACE_MAX_MS = 5_000;

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
  /** Requests waiting for a blob to land, by digest. */
  private readonly waiters = new Map<string, { promise: Promise<boolean>; resolve: (ok: boolean) => void }>();
  /** Packs a client waits for, while they restore. */
  private readonly demanded = new Set<string>();
  /** Prefetch work waiting for the demand to end. */
  private quietWaiters: Array<() => void> = [];
  /** Manifests whose packs expect() has started. */
  private readonly expected = new Set<string>();
  /** Restored blobs no client has been served yet (claim() hands each out once). */
  private readonly unclaimed = new Set<string>();
  /** Blobs being written from a pack now, with how many packs write each. */
  private readonly adopting = new Map<string, number>();
  /** Blobs counted in the report (a blob held by two packs is counted once). */
  private readonly counted = new Set<string>();
  /** Pack restores running, and those waiting for a turn (requests first, then the prefetch). */
  private running = 0;
  private readonly waiting: { resume: () => void; urgent: boolean }[] = [];
  /** Since when some pack restore has been running (the report's seconds are wall time, not a sum). */
  private busySince = 0;
  /** Milliseconds during which some pack restore ran, before busySince. */
  private busyMs = 0;
  readonly report: RestoreReport;

  constructor(private readonly storage: Storage, private readonly index: PersistIndex, private readonly cache: ActionsCache, private readonly stagingDir: string) {
    this.packOf = packOfBlob(index);
    this.packs = index.packs;
    const busyMs = () => this.busyMs + (this.running > 0 ? Date.now() - this.busySince : 0);
    this.report = {
      packsRestored: 0,
      packsMissing: 0,
      packsBroken: 0,
      packsUnavailable: 0,
      blobsRestored: 0,
      blobsRejected: 0,
      bytesRestored: 0,
      get seconds() {
        return busyMs() / 1000;
      },
      unusable: [],
    };
  }

  /** True when some pack holds `d`. */
  knows(d: Digest): boolean {
    return this.packOf.has(d.value);
  }

  /** Restores the pack holding `d`; true when `d` is in the store afterwards (answered as soon as it is). */
  async fetch(d: Digest): Promise<boolean> {
    const key = this.packOf.get(d.value);
    if (!key) return false;
    try {
      const settled = this.settled.get(key);
      if (settled) return settled.has(d.value) && (await this.storage.blobs.stat(d)) !== undefined;
      // It may have landed already, from a pack still restoring (if it lands before the wait
      // begins, the pack's end answers).
      if ((await this.storage.blobs.stat(d)) !== undefined) return true;
      const landed = this.landing(d.value);
      this.demanded.add(key);
      const restored = this.restoreOnce(key, true).then((r) => r.has(d.value));
      return await Promise.race([landed, restored]);
    } catch {
      // The store failed (the pack's restore did): the caller goes upstream.
      return false;
    }
  }

  /**
   * True once for a blob this tier restored (whether a client's request or the prefetch
   * brought it): its first serve is counted as served from the Actions cache.
   */
  claim(d: Digest): boolean {
    return this.unclaimed.delete(d.value);
  }

  /**
   * A client asked for manifest `reference` (a tag or a digest) of repository `name`: when the
   * index holds that manifest, the packs of the blobs it names are restored as if asked for
   * (once per manifest: docker asks by tag, then by digest).
   */
  expect(name: string, reference: string): void {
    const digest = tryParseDigest(reference)?.value ?? this.index.tags[name]?.[reference];
    const m = digest === undefined ? undefined : this.index.manifests[name]?.[digest];
    if (!m || this.expected.has(digest!)) return;
    this.expected.add(digest!);
    let blobs: string[];
    try {
      blobs = manifestReferences(parseManifest(Buffer.from(m.body, 'base64'), m.mediaType)).blobs;
    } catch {
      return;
    }
    for (const v of blobs) {
      const d = tryParseDigest(v);
      if (d && this.knows(d)) void this.fetch(d);
    }
  }

  /**
   * Resolves when no client waits for a pack other than `key` (at once when none does), or
   * after `maxMs`: what the prefetch waits for before each step.
   */
  private quiet(key?: string, maxMs = PACE_MAX_MS): Promise<void> {
    if (this.demanded.size === 0 || (key !== undefined && this.demanded.has(key))) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.quietWaiters = this.quietWaiters.filter((w) => w !== wake);
        resolve();
      }, maxMs);
      this.quietWaiters.push(wake);
    });
  }

  /** Resolves (true) once blob `v` lands in the store during some pack's restore. */
  private landing(v: string): Promise<boolean> {
    let w = this.waiters.get(v);
    if (!w) {
      let resolve!: (ok: boolean) => void;
      const promise = new Promise<boolean>((r) => (resolve = r));
      w = { promise, resolve };
      this.waiters.set(v, w);
    }
    return w.promise;
  }

  /** Tells whoever waits for `v` that it landed. */
  private landed(v: string): void {
    this.waiters.get(v)?.resolve(true);
    this.waiters.delete(v);
  }

  /**
   * Restores every pack in the background (the Action's prefetch input), PARALLEL_PREFETCH at
   * a time, in the index's order: the order the saving jobs first used them.
   */
  async prefetchAll(): Promise<void> {
    const keys = Object.keys(this.packs);
    const worker = async (): Promise<void> => {
      for (let key = keys.shift(); key !== undefined; key = keys.shift()) {
        // No new speculation while a client waits (however long it takes).
        while (this.demanded.size > 0) await this.quiet();
        if (!this.settled.has(key)) await this.restoreOnce(key, false).catch(() => {});
      }
    };
    await Promise.all(Array.from({ length: PARALLEL_PREFETCH }, worker));
  }

  /** Restores pack `key` once however many ask, when its turn comes. */
  private restoreOnce(key: string, urgent: boolean): Promise<Set<string>> {
    return this.flights.run(key, async () => {
      // Restored (or found unusable) while this caller was on its way here: not again.
      const settled = this.settled.get(key);
      if (settled) {
        this.ended(key);
        return settled;
      }
      await this.turn(urgent);
      try {
        return await this.restorePack(key);
      } catch (err) {
        // The local store failed: not asked again this job (its blobs go upstream), but kept
        // in the index for the next.
        this.settled.set(key, new Set());
        throw err;
      } finally {
        this.done();
        this.ended(key);
      }
    }).promise;
  }

  /** A pack's restore ended: its waiters hear from its result, and the prefetch may go on. */
  private ended(key: string): void {
    for (const v of this.packs[key]?.digests ?? []) this.waiters.delete(v);
    if (this.demanded.delete(key) && this.demanded.size === 0) {
      const quiet = this.quietWaiters;
      this.quietWaiters = [];
      for (const wake of quiet) wake();
    }
  }

  /** Waits for one of the PARALLEL_RESTORES turns (an urgent wait goes before the others). */
  private async turn(urgent: boolean): Promise<void> {
    if (this.running < PARALLEL_RESTORES) {
      if (this.running++ === 0) this.busySince = Date.now();
      return;
    }
    await new Promise<void>((resume) => {
      const firstPrefetch = this.waiting.findIndex((w) => !w.urgent);
      const at = urgent && firstPrefetch !== -1 ? firstPrefetch : this.waiting.length;
      this.waiting.splice(at, 0, { resume, urgent });
    });
  }

  /** Hands a finished restore's turn to the next waiting one. */
  private done(): void {
    const next = this.waiting.shift();
    if (next) return next.resume();
    if (--this.running === 0) this.busyMs += Date.now() - this.busySince;
  }

  private async restorePack(key: string): Promise<Set<string>> {
    const restored = new Set<string>();
    // A download holds still while a client waits for another pack (a pack a client waits for never does).
    const r = await this.cache.restoreEntry(PACK_PATH, key, [], (f) => this.adopt(f, restored), { staging: this.stagingDir, pace: () => this.quiet(key) });
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
  }

  /** Writes one file of a pack into the store if it is the blob its name says; adds it to `restored`. */
  private async adopt(f: EntryFile, restored: Set<string>): Promise<void> {
    const name = f.path.startsWith(`${PACK_PATH}/`) ? f.path.slice(PACK_PATH.length + 1) : '';
    const d = tryParseDigest(name.replace('-', ':'));
    // Not a blob of the pack: left unread (skipped).
    if (!d || packFileName(d) !== name) return;
    if ((await this.storage.blobs.stat(d)) !== undefined) {
      restored.add(d.value);
      this.landed(d.value);
      return;
    }
    const writer = await this.storage.blobs.createWriter(d.algorithm, f.size);
    // Claimable before it becomes visible: a client served the moment the blob lands (between the
    // commit's rename and the lines after it) gets it as the Actions cache's, not as found on disk.
    // A failed write takes the claim back unless another pack is writing the same blob.
    const v = d.value;
    if (!this.counted.has(v)) this.unclaimed.add(v);
    this.adopting.set(v, (this.adopting.get(v) ?? 0) + 1);
    let size: number;
    try {
      await writer.write(f.body);
      size = (await writer.commit(d, f.size)).size;
    } catch (err) {
      await writer.cancel();
      if (!this.counted.has(v) && this.adopting.get(v) === 1) this.unclaimed.delete(v);
      if (!(err instanceof DigestMismatchError || err instanceof SizeMismatchError)) throw err;
      this.report.blobsRejected++;
      return;
    } finally {
      const n = this.adopting.get(v)! - 1;
      if (n === 0) this.adopting.delete(v);
      else this.adopting.set(v, n);
    }
    restored.add(v);
    this.landed(v);
    if (this.counted.has(v)) return;
    this.counted.add(v);
    this.report.blobsRestored++;
    this.report.bytesRestored += size;
  }

  /** Remembers a pack as missing or broken (asked for once; the save packs its blobs again). */
  private unusable(key: string, restored: Set<string>): void {
    this.settled.set(key, restored);
    if (!this.report.unusable.includes(key)) this.report.unusable.push(key);
  }
}
