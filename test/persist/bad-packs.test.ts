// Packs the index names that cannot be used (issue 5, "Tests"): the blobs are fetched upstream,
// no client ever gets a byte that does not hash to its digest, the other packs are still used,
// and the job saves the blobs again (under another key: an entry's key is immutable) so that
// the next run is served from the Actions cache again.
//   - a tampered entry (bytes flipped inside the compressed archive: extraction fails);
//   - a well-formed entry holding a blob whose bytes do not match its name (verification);
//   - an evicted pack.
// A :5000 image whose pack was evicted is in pushed-images.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { ActionsCacheService } from '../helpers/actions-cache-service.js';
import type { Distribution } from '../helpers/distribution.js';
import { run } from '../helpers/proc.js';
import { skipUnless, toolPath } from '../helpers/tools.js';
import { seedImage, type TestImage } from '../helpers/upstream-images.js';
import { packKey } from '../../src/persist/index.js';
import {
  assertSummaryMatchesRecords,
  blobGets,
  createdIndexes,
  createdPacks,
  downloadsOf,
  keyOf,
  lookupsOf,
  pullThroughCache,
  putEntry,
  restoredIndex,
  runJob,
  serverStats,
  twirpCalls,
  persistWorld,
} from './support.js';

const skip = skipUnless(['docker-registry', 'zstd']);

interface Fixture {
  dir: string;
  svc: ActionsCacheService;
  upstream: Distribution;
  a: TestImage;
  b: TestImage;
  /** Pulls both images through a job's cache port (every byte checked against its digest). */
  pull: (url: string) => Promise<unknown>;
}

async function fixture(t: TestContext): Promise<Fixture> {
  const { dir, svc, upstream } = await persistWorld(t);
  const a = await seedImage(upstream.url, 'library/a', 'v1', { layers: 3 });
  const b = await seedImage(upstream.url, 'library/b', 'v1', { layers: 2 });
  const pull = (url: string) =>
    pullThroughCache(url, [
      { name: 'library/a', reference: 'v1', image: a },
      { name: 'library/b', reference: 'v1', image: b },
    ]);
  return { dir: dir.path, svc, upstream, a, b, pull };
}

/** Run 1 saves a pack per image; returns their keys. */
async function seedCache(t: TestContext, f: Fixture): Promise<{ packA: string; packB: string }> {
  const first = await runJob(t, { svc: f.svc, upstream: f.upstream, dir: join(f.dir, 'run1'), runner: { runId: 1 }, inputs: { save: 'true' } }, f.pull);
  assert.equal(createdPacks(first).length, 2, 'run 1 saved one pack per image');
  // A pack's key is a hash of the digests it holds: an image's layers (its config is inline).
  const packA = packKey('regcache', f.a.layers.map((l) => l.digest));
  const packB = packKey('regcache', f.b.layers.map((l) => l.digest));
  assert.deepEqual(createdPacks(first).map((e) => e.key).sort(), [packA, packB].sort());
  return { packA, packB };
}

/** Run 2 (after the damage) and run 3 (served from what run 2 saved again). */
async function runsAfterDamage(t: TestContext, f: Fixture, damaged: string) {
  const second = await runJob(t, { svc: f.svc, upstream: f.upstream, dir: join(f.dir, 'run2'), runner: { runId: 3 }, inputs: { save: 'true' } }, f.pull);
  const third = await runJob(t, { svc: f.svc, upstream: f.upstream, dir: join(f.dir, 'run3'), runner: { runId: 4 }, inputs: { save: 'true' } }, f.pull);
  // Run 2 saved a's layers again, under another key, and its index dropped the damaged pack.
  const resaved = createdPacks(second);
  assert.equal(resaved.length, 1, `run 2 packed the layers again: ${second.created.map((e) => e.key).join(', ')}`);
  assert.notEqual(resaved[0]!.key, damaged, 'under another key');
  assert.equal(createdIndexes(second).length, 1);
  const index3 = await restoredIndex(third);
  assert.ok(!(damaged in index3.packs), 'the next index no longer names the damaged pack');
  assert.deepEqual(index3.packs[resaved[0]!.key]?.digests.sort(), f.a.layers.map((l) => l.digest).sort());
  assert.deepEqual(blobGets(third.upstream), [], 'run 3 was served from the Actions cache again');
  assertSummaryMatchesRecords(second, f.svc);
  return { second, third };
}

test('a tampered pack entry: what follows the damage comes from upstream, never a corrupt byte, and is saved again', { skip, timeout: 90_000 }, async (t) => {
  const f = await fixture(t);
  const { packA } = await seedCache(t, f);
  await f.svc.tamper(packA);

  const { second } = await runsAfterDamage(t, f, packA);
  // pullThroughCache checked every blob the client got against its digest. The blobs of a's
  // pack before the damage were verified as they streamed in and are kept; the rest came from
  // upstream.
  const fromUpstream = blobGets(second.upstream);
  const aLayers = f.a.layers.map((l) => l.digest);
  assert.ok(fromUpstream.length >= 1 && fromUpstream.every((d) => aLayers.includes(d)), `only a's layers came from upstream, b's from its pack: ${fromUpstream.join(', ')}`);
  assert.equal(new Set(fromUpstream).size, fromUpstream.length, 'each at most once');
  const persist = (await serverStats(second)).extras.persist as Record<string, number>;
  assert.equal(persist.packsBroken, 1);
  assert.equal(persist.packsRestored, 1, "b's pack was still used");
  assert.equal(downloadsOf(second.requests, f.svc.records().entries.filter((e) => e.key === packA)).length, 1, 'the broken pack was downloaded once, not once per layer');
  assert.match(second.persistence['Packs restored']!, /1 broken/);
  assert.match(second.persistence['Dropped from the index (evicted or broken)']!, /^1 pack$/);
});

test('a pack whose blob does not match its digest: that blob is rejected and fetched upstream, the rest used', { skip, timeout: 90_000 }, async (t) => {
  const f = await fixture(t);
  const { packA } = await seedCache(t, f);
  // Replace a's pack with a well-formed one (same key, same version) whose first layer is wrong.
  const version = (twirpCalls(f.svc.records().requests, 'CreateCacheEntry').find((r) => keyOf(r) === packA)!.request as { version: string }).version;
  const ws = join(f.dir, 'crafted');
  await mkdir(join(ws, 'regcache-pack'), { recursive: true });
  const [bad, ...good] = f.a.layers;
  await writeFile(join(ws, 'regcache-pack', `sha256-${bad!.digest.slice(7)}`), randomBytes(bad!.size));
  for (const l of good) await writeFile(join(ws, 'regcache-pack', `sha256-${l.digest.slice(7)}`), l.data);
  await run('/bin/sh', ['-c', `tar -C '${ws}' -cf - regcache-pack | '${toolPath('zstd')}' -q -o '${ws}/cache.tzst'`]);
  await f.svc.evict(packA);
  await putEntry(f.svc, packA, version, await readFile(join(ws, 'cache.tzst')));

  const { second } = await runsAfterDamage(t, f, packA);
  assert.deepEqual(blobGets(second.upstream), [bad!.digest], 'only the bad blob was fetched upstream');
  const persist = (await serverStats(second)).extras.persist as Record<string, number>;
  assert.equal(persist.blobsRejected, 1);
  assert.equal(persist.packsBroken, 1);
  assert.match(second.persistence['Packs restored']!, /1 blob failed verification \(fetched upstream instead\)/);
});

test('an evicted pack falls through to upstream; the other packs are still used; the layers are saved again', { skip, timeout: 90_000 }, async (t) => {
  const f = await fixture(t);
  const { packA, packB } = await seedCache(t, f);
  await f.svc.evict(packA);

  const { second } = await runsAfterDamage(t, f, packA);
  assert.deepEqual(new Set(blobGets(second.upstream)), new Set(f.a.layers.map((l) => l.digest)), "a's layers came from upstream, b's from its pack");
  assert.deepEqual(lookupsOf(second.requests, packA), [{ hit: false }], 'the evicted pack was looked up once (a miss is remembered, and is no service failure)');
  assert.deepEqual(lookupsOf(second.requests, packB).filter((l) => l.hit).length > 0, true, "b's pack was looked up and found");
  const persist = (await serverStats(second)).extras.persist as Record<string, number>;
  assert.equal(persist.packsMissing, 1);
  assert.equal(persist.packsRestored, 1);
  assert.equal(persist.packsUnavailable, 0, 'the breaker stayed closed');
  assert.match(second.persistence['Packs restored']!, /^1 pack \(2 blobs, [^)]*\); 1 evicted$/);
});
