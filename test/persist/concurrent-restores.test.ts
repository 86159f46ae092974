// Pack restores run at once in the server process (issue 5: a job restoring many packs waited
// for them one after another): the real @actions/cache client in this process, against the
// service stand-in, restores several packs together (4 at a time, of which the prefetch takes
// at most 3), each into its own staging directory, every blob verified and counted once; a blob
// that two packs hold enters the store once and both packs count as restored. Once restores go
// without a lookup of their own, a service failing from then on still costs one lookup budget.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { type ActionsCacheService, startActionsCacheService } from '../helpers/actions-cache-service.js';
import { tempDir } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';
import { ActionsCache, emptyIndex, packKey, PackRestorer, type PersistIndex } from '../../src/persist/index.js';
import { PACK_PATH } from '../../src/persist/keys.js';
import { parseDigest } from '../../src/oci/index.js';
import { openStorage, type Storage } from '../../src/storage/index.js';
import { downloadsOf, twirpCalls } from './support.js';

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

test('six packs prefetched: restored 3 at a time, every blob verified into the store and counted once', { skip, timeout: 90_000 }, async (t) => {
  const f = await fixture(t);
  const packs = Array.from({ length: 6 }, () => [blob(64 * 1024), blob(32 * 1024)]);
  for (const p of packs) await f.savePack(p);
  // Slow lookups make the restores overlap visibly at the service, whatever the machine's load.
  f.svc.setLatency(300, ['GetCacheEntryDownloadURL']);
  const restorer = new PackRestorer(f.storage, f.index, f.cache, join(f.dir, 'staging'));

  await restorer.prefetchAll();

  const lookups = twirpCalls(f.svc.records().requests, 'GetCacheEntryDownloadURL');
  const most = mostAtOnce(lookups);
  assert.ok(most >= 2 && most <= 3, `${most} lookups at once`);
  const all = packs.flat();
  for (const b of all) assert.deepEqual(await stored(f.storage, b), b.data, `${b.digest} in the store, intact`);
  const r = restorer.report;
  assert.equal(r.packsRestored, 6);
  assert.equal(r.blobsRestored, all.length);
  assert.equal(r.bytesRestored, all.reduce((n, b) => n + b.data.length, 0));
  assert.equal(r.blobsRejected + r.packsBroken + r.packsMissing + r.packsUnavailable, 0);
  assert.ok(r.seconds > 0 && r.seconds < lookups.reduce((n, c) => n + c.ms, 0) / 1000, `wall seconds (${r.seconds}), not the sum of the restores`);
  const { entries, requests } = f.svc.records();
  assert.equal(downloadsOf(requests, entries.filter((e) => e.key in f.index.packs)).length, 6, 'each pack downloaded once');
});

test('a blob held by two packs restored at once: it enters the store once, both packs count as restored', { skip, timeout: 90_000 }, async (t) => {
  const f = await fixture(t);
  const [shared, onlyA, onlyB] = [blob(128 * 1024), blob(16 * 1024), blob(16 * 1024)] as [Blob, Blob, Blob];
  await f.savePack([shared, onlyA]);
  await f.savePack([shared, onlyB]);
  const restorer = new PackRestorer(f.storage, f.index, f.cache, join(f.dir, 'staging'));

  // Two clients ask at once for a blob of each pack; a third for the shared one.
  const got = await Promise.all([onlyA, onlyB, shared].map((b) => restorer.fetch(parseDigest(b.digest))));

  assert.deepEqual(got, [true, true, true]);
  for (const b of [shared, onlyA, onlyB]) assert.deepEqual(await stored(f.storage, b), b.data);
  const r = restorer.report;
  assert.equal(r.packsRestored, 2);
  assert.equal(r.blobsRestored, 3, 'the shared blob counted once');
  assert.equal(r.bytesRestored, shared.data.length + onlyA.data.length + onlyB.data.length);
  assert.equal(r.blobsRejected + r.packsBroken, 0);
});

test('the service failing once restores went without their own lookup: one budget, then upstream', { skip, timeout: 120_000 }, async (t) => {
  const budgetMs = 2_000;
  const f = await fixture(t, { lookupBudgetMs: budgetMs });
  const packs = Array.from({ length: 3 }, () => [blob(16 * 1024)]);
  for (const p of packs) await f.savePack(p);
  const staging = join(f.dir, 'staging');
  const restorer = new PackRestorer(f.storage, f.index, f.cache, staging);
  assert.equal(await restorer.fetch(parseDigest(packs[0]![0]!.digest)), true);
  assert.equal(ActionsCache.announcesHits, true, 'the library named the entry it found: later restores skip our lookup');

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
  // The abandoned calls end (the service is gone) and leave no staging directory behind.
  await f.svc.stop();
  for (const until = Date.now() + 60_000; ActionsCache.abandoned && Date.now() < until; ) await new Promise((r) => setTimeout(r, 200));
  assert.equal(ActionsCache.abandoned, false);
  assert.deepEqual(await readdir(staging), []);
});
