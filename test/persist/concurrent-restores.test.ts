// Pack restores run at once in the server process (issue 5: a job restoring many packs waited
// for them one after another): our streaming reader (the real @actions/cache saves), against the
// service stand-in, restores several packs together (4 at a time, of which the prefetch takes
// at most 2), each into its own staging directory, every blob verified and counted once; a blob
// that two packs hold enters the store once and both packs count as restored. A service failing
// after a first restore costs one lookup budget. A client's blob is answered as it lands, and
// the prefetch starts nothing while a client waits for a pack. The library's path (GHES,
// service v1) restores through a staging directory.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { type ActionsCacheService, startActionsCacheService } from '../helpers/actions-cache-service.js';
import { run, tempDir } from '../helpers/proc.js';
import { skipUnless, toolPath } from '../helpers/tools.js';
import { ActionsCache, emptyIndex, packKey, PackRestorer, type PersistIndex } from '../../src/persist/index.js';
import { PACK_PATH } from '../../src/persist/keys.js';
import { compressionMethod, entryVersion } from '../../src/persist/entry-download.js';
import { parseDigest } from '../../src/oci/index.js';
import { openStorage, type Storage } from '../../src/storage/index.js';
import { downloadsOf, putEntry, twirpCalls } from './support.js';

const skip = skipUnless(['zstd']);

interface Blob {
  digest: string;
  data: Buffer;
}

const blob = (size: number): Blob => {
  const data = randomBytes(size);
  return { digest: `sha256:${createHash('sha256').update(data).digest('hex')}`, data };
};

interface Fixture {
  dir: string;
  svc: ActionsCacheService;
  storage: Storage;
  cache: ActionsCache;
  index: PersistIndex;
  /** Saves a pack of these blobs as a job's post would; returns its key. */
  savePack: (blobs: Blob[]) => Promise<string>;
}

async function fixture(t: TestContext, cacheOptions: ConstructorParameters<typeof ActionsCache>[0] = {}): Promise<Fixture> {
  const dir = (await tempDir('rc-persist-', t)).path;
  const svc = await startActionsCacheService();
  t.after(() => svc.stop());
  // The client reads the service from the environment, as in the server process.
  const saved = { ...process.env };
  Object.assign(process.env, svc.env({ runnerTemp: join(dir, 'runner-temp') }));
  t.after(() => {
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  });
  const storage = await openStorage(join(dir, 'store'));
  t.after(() => storage.close());
  const cache = new ActionsCache(cacheOptions);
  const index = emptyIndex();
  const savePack = async (blobs: Blob[]) => {
    const key = packKey('regcache', blobs.map((b) => b.digest));
    const ws = join(dir, 'save', key);
    await mkdir(join(ws, PACK_PATH), { recursive: true });
    for (const b of blobs) await writeFile(join(ws, PACK_PATH, b.digest.replace(':', '-')), b.data);
    assert.equal((await cache.save(ws, PACK_PATH, key)).outcome, 'saved');
    index.packs[key] = { digests: blobs.map((b) => b.digest), size: blobs.reduce((n, b) => n + b.data.length, 0) };
    return key;
  };
  return { dir, svc, storage, cache, index, savePack };
}

/** The bytes the store holds for `b` (undefined when it holds none). */
async function stored(storage: Storage, b: Blob): Promise<Buffer | undefined> {
  const fh = await storage.blobs.openFile(parseDigest(b.digest));
  if (!fh) return undefined;
  try {
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/** The most Twirp lookups the service was answering at one moment. */
function mostAtOnce(calls: ReturnType<typeof twirpCalls>): number {
  const edges = calls.flatMap((c) => [
    { at: c.at, d: 1 },
    { at: c.at + c.ms, d: -1 },
  ]);
  edges.sort((a, b) => a.at - b.at || a.d - b.d);
  let now = 0;
  let most = 0;
  for (const e of edges) most = Math.max(most, (now += e.d));
  return most;
}

/** Milliseconds during which at least one of `calls` was being answered (the union of their intervals). */
function coveredMs(calls: ReturnType<typeof twirpCalls>): number {
  const spans = calls.map((c) => [c.at, c.at + c.ms] as const).sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = -Infinity;
  for (const [from, to] of spans) {
    if (to <= end) continue;
    total += to - Math.max(from, end);
    end = to;
  }
  return total;
}

test('six packs prefetched: restored 2 at a time, every blob verified into the store and counted once', { skip, timeout: 300_000 }, async (t) => {
  const f = await fixture(t);
  const packs = Array.from({ length: 6 }, () => [blob(64 * 1024), blob(32 * 1024)]);
  for (const p of packs) await f.savePack(p);
  // Slow lookups make the restores overlap visibly at the service, whatever the machine's load.
  f.svc.setLatency(300, ['GetCacheEntryDownloadURL']);
  const restorer = new PackRestorer(f.storage, f.index, f.cache, join(f.dir, 'staging'));

  const t0 = Date.now();
  await restorer.prefetchAll();
  const wallMs = Date.now() - t0;

  const lookups = twirpCalls(f.svc.records().requests, 'GetCacheEntryDownloadURL');
  const most = mostAtOnce(lookups);
  assert.equal(most, 2, `${most} lookups at once`);
  const all = packs.flat();
  for (const b of all) assert.deepEqual(await stored(f.storage, b), b.data, `${b.digest} in the store, intact`);
  const r = restorer.report;
  assert.equal(r.packsRestored, 6);
  assert.equal(r.blobsRestored, all.length);
  assert.equal(r.bytesRestored, all.reduce((n, b) => n + b.data.length, 0));
  assert.equal(r.blobsRejected + r.packsBroken + r.packsMissing + r.packsUnavailable, 0);
  // The report's seconds are the wall time during which some restore ran: at most the wall time
  // of the whole prefetch measured here (a sum of the overlapping restores would exceed it), at
  // least the time during which the service was answering some lookup (every lookup is part of
  // a restore). Both measured in this run: no constant.
  const busyMs = coveredMs(lookups);
  assert.ok(r.seconds * 1000 <= wallMs, `the report's ${r.seconds} s exceed the prefetch's wall time (${wallMs} ms): a sum, not wall time`);
  assert.ok(r.seconds * 1000 >= busyMs - 5, `the report's ${r.seconds} s are less than the ${busyMs} ms during which lookups were answered`);
  const { entries, requests } = f.svc.records();
  assert.equal(downloadsOf(requests, entries.filter((e) => e.key in f.index.packs)).length, 6, 'each pack downloaded once');
});

test('a blob held by two packs restored at once: it enters the store once, both packs count as restored', { skip, timeout: 300_000 }, async (t) => {
  const f = await fixture(t);
  const [shared, onlyA, onlyB] = [blob(128 * 1024), blob(16 * 1024), blob(16 * 1024)] as [Blob, Blob, Blob];
  await f.savePack([shared, onlyA]);
  await f.savePack([shared, onlyB]);
  const restorer = new PackRestorer(f.storage, f.index, f.cache, join(f.dir, 'staging'));

  // Two clients ask at once for a blob of each pack; a third for the shared one.
  const got = await Promise.all([onlyA, onlyB, shared].map((b) => restorer.fetch(parseDigest(b.digest))));
  // A client is answered as its blob lands, before its pack's restore ends: join the restores
  // before reading the report (on a loaded machine a pack was still finishing here).
  await restorer.prefetchAll();

  assert.deepEqual(got, [true, true, true]);
  for (const b of [shared, onlyA, onlyB]) assert.deepEqual(await stored(f.storage, b), b.data);
  const r = restorer.report;
  assert.equal(r.packsRestored, 2);
  assert.equal(r.blobsRestored, 3, 'the shared blob counted once');
  assert.equal(r.bytesRestored, shared.data.length + onlyA.data.length + onlyB.data.length);
  assert.equal(r.blobsRejected + r.packsBroken, 0);
});

test('the service failing after a first restore: one lookup budget, then upstream', { skip, timeout: 300_000 }, async (t) => {
  const budgetMs = 2_000;
  const f = await fixture(t, { lookupBudgetMs: budgetMs });
  const packs = Array.from({ length: 3 }, () => [blob(16 * 1024)]);
  for (const p of packs) await f.savePack(p);
  const staging = join(f.dir, 'staging');
  const restorer = new PackRestorer(f.storage, f.index, f.cache, staging);
  assert.equal(await restorer.fetch(parseDigest(packs[0]![0]!.digest)), true);

  f.svc.setDown('unavailable');
  const t0 = Date.now();
  const got = await Promise.all(packs.slice(1).map((p) => restorer.fetch(parseDigest(p[0]!.digest))));
  const ms = Date.now() - t0;

  assert.deepEqual(got, [false, false], 'both blobs go upstream');
  assert.ok(ms < 2 * budgetMs + 3_000, `${ms} ms: the budget, not the client's retries (~25-35 s)`);
  const r = restorer.report;
  assert.equal(r.packsUnavailable, 2);
  assert.equal(r.packsBroken + r.packsMissing, 0);
  assert.deepEqual(r.unusable, [], 'kept in the index for the next run');
  assert.equal(f.cache.breaker.allow(), false, 'the breaker is open: no further calls');
});

test('a client waiting for a blob is answered when that blob lands, before the rest of its pack', { skip, timeout: 300_000 }, async (t) => {
  const f = await fixture(t);
  // A pack whose archive holds a small blob, then 48 MiB (the library's tar takes a directory
  // in readdir order: this one is made with tar and zstd in a set order).
  const [small, big] = [blob(16 * 1024), blob(48 * 1024 * 1024)];
  const key = packKey('regcache', [small.digest, big.digest]);
  const ws = join(f.dir, 'crafted');
  await mkdir(join(ws, PACK_PATH), { recursive: true });
  const names = [small, big].map((b) => `${PACK_PATH}/${b.digest.replace(':', '-')}`);
  for (const [i, b] of [small, big].entries()) await writeFile(join(ws, names[i]!), b.data);
  await run('/bin/sh', ['-c', `tar -C '${ws}' -cf - ${names.join(' ')} | '${toolPath('zstd')}' -q -o '${ws}/cache.tzst'`]);
  await putEntry(f.svc, key, entryVersion(PACK_PATH, await compressionMethod()), await readFile(join(ws, 'cache.tzst')));
  f.index.packs[key] = { digests: [small.digest, big.digest], size: small.data.length + big.data.length };
  const restorer = new PackRestorer(f.storage, f.index, f.cache, join(f.dir, 'staging'));

  const whole = restorer.fetch(parseDigest(big.digest));
  assert.equal(await restorer.fetch(parseDigest(small.digest)), true);
  const atAnswer = { ...restorer.report, seconds: 0 };
  assert.deepEqual(await stored(f.storage, small), small.data);

  assert.equal(await whole, true);
  await restorer.prefetchAll(); // joins the pack's restore: returns once it is done
  assert.equal(atAnswer.packsRestored, 0, 'the pack was still restoring when the small blob was answered');
  assert.equal(atAnswer.blobsRestored, 1);
  assert.equal(restorer.report.packsRestored, 1);
  assert.deepEqual(await stored(f.storage, big), big.data);
});

test('while a client waits for a pack, the prefetch holds still: no other download begins before that pack is in', { skip, timeout: 300_000 }, async (t) => {
  const f = await fixture(t);
  // Five small packs, and a large one a client asks for while the prefetch begins.
  const packs = [...Array.from({ length: 5 }, () => [blob(256 * 1024)]), [blob(64 * 1024 * 1024)]];
  const keys: string[] = [];
  for (const p of packs) keys.push(await f.savePack(p));
  f.svc.setLatency(100);
  const restorer = new PackRestorer(f.storage, f.index, f.cache, join(f.dir, 'staging'));

  const prefetch = restorer.prefetchAll();
  assert.equal(await restorer.fetch(parseDigest(packs[5]![0]!.digest)), true);
  await prefetch;

  const { entries, requests } = f.svc.records();
  const keyOfBlob = new Map(entries.map((e) => [`actions-cache/${e.blobName}`, e.key]));
  const gets = requests.flatMap((r) => (r.kind === 'blob' && r.op === 'GetBlob' ? [{ key: keyOfBlob.get(r.blob)!, at: r.at, end: r.at + r.ms }] : []));
  assert.deepEqual(gets.map((g) => g.key).sort(), [...keys].sort(), 'each pack downloaded once');
  const wanted = gets.find((g) => g.key === keys[5])!;
  // The prefetch's first two were under way before the client asked; no other began before
  // the client's pack was in.
  const early = gets.filter((g) => !keys.slice(0, 2).includes(g.key) && g.key !== keys[5] && g.at < wanted.end);
  assert.deepEqual(early, [], `prefetch downloads begun while the client's pack downloaded (${wanted.at}-${wanted.end})`);
  assert.equal(restorer.report.packsRestored, 6);
});

test('through @actions/cache (as on GHES): a pack restored into staging, verified, staging removed', { skip, timeout: 300_000 }, async (t) => {
  const f = await fixture(t, { throughLibrary: true });
  const pack = [blob(64 * 1024), blob(32 * 1024)];
  await f.savePack(pack);
  const staging = join(f.dir, 'staging');
  const restorer = new PackRestorer(f.storage, f.index, f.cache, staging);

  assert.equal(await restorer.fetch(parseDigest(pack[1]!.digest)), true);
  await restorer.prefetchAll(); // joins the pack's restore: returns once it is done

  for (const b of pack) assert.deepEqual(await stored(f.storage, b), b.data);
  assert.equal(restorer.report.packsRestored, 1);
  assert.equal(restorer.report.blobsRestored, 2);
  assert.deepEqual(await readdir(staging), [], 'the library\'s staging directory is gone');
});
