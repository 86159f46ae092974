// What a job saves when some of its content is already in the Actions cache (issue 5, "Tests"):
//   - a new tag upstream sharing base layers with a cached one: only its new layers are
//     uploaded, in a new pack, and the next index names both packs;
//   - two matrix legs of one run pulling the same new image: the second finds the first's pack
//     with a lookup and uploads nothing but its own index entry (legs are told apart by the
//     `matrix` input, `${{ toJSON(matrix) }}` by default).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { skipUnless } from '../helpers/tools.js';
import { pushImage, randomImage, seedImage } from '../helpers/upstream-images.js';
import { formatBytes } from '../../src/action/summary/index.js';
import {
  assertSummaryMatchesRecords,
  blobGets,
  createdIndexes,
  createdPacks,
  keyOf,
  lookupsOf,
  pullThroughCache,
  runJob,
  serverStats,
  startJob,
  twirpCalls,
  persistWorld,
} from './support.js';

const skip = skipUnless(['docker-registry', 'zstd']);

test('a new tag sharing base layers: only its new layers are uploaded, in a new pack', { skip, timeout: 60_000 }, async (t) => {
  const { dir, svc, upstream } = await persistWorld(t);
  // Sizes that tell the packs apart: base layers 96 KiB, v1's own layer 64 KiB, v2's 40 KiB.
  const base = randomImage({ layers: 2, layerSize: 96 * 1024 }).layers;
  const v1 = await pushImage(upstream.url, 'library/app', 'v1', randomImage({ baseLayers: base, layers: 1, layerSize: 64 * 1024 }));
  const first = await runJob(t, { svc, upstream, dir: join(dir.path, 'run1'), runner: { runId: 1 }, inputs: { save: 'true' } }, (url) =>
    pullThroughCache(url, [{ name: 'library/app', reference: 'v1', image: v1 }]),
  );
  const [pack1] = createdPacks(first);
  assert.equal(createdPacks(first).length, 1);

  // The upstream gets a new tag: the same base, a new top layer.
  const v2 = await pushImage(upstream.url, 'library/app', 'v2', randomImage({ baseLayers: base, layers: 1, layerSize: 40 * 1024 }));
  const newLayer = v2.layers[2]!;
  const second = await runJob(t, { svc, upstream, dir: join(dir.path, 'run2'), runner: { runId: 2 }, inputs: { save: 'true' } }, (url) =>
    pullThroughCache(url, [{ name: 'library/app', reference: 'v2', image: v2 }]),
  );
  assert.deepEqual(new Set(blobGets(second.upstream)), new Set([newLayer.digest, v2.config.digest]), 'run 2 fetched only the new layer and config upstream: the base came from the pack');
  assert.equal((await serverStats(second)).extras.persist?.blobsRestored, 3, 'the pack of run 1 was restored (its 3 layers)');
  const packs2 = createdPacks(second);
  assert.equal(packs2.length, 1, 'one new pack');
  assert.notEqual(packs2[0]!.key, pack1!.key);
  // The new pack is the new layer alone (random bytes do not compress: a few KiB of tar around it).
  assert.ok(packs2[0]!.sizeBytes! >= newLayer.size && packs2[0]!.sizeBytes! < newLayer.size + 8 * 1024, `pack size ${packs2[0]!.sizeBytes} for a ${newLayer.size}-byte layer`);
  assert.match(second.persistence.Saved!, new RegExp(`^1 new pack \\(${formatBytes(newLayer.size).replace('.', '\\.')}\\)`));
  assert.equal(createdIndexes(second).length, 1, 'a new index (a new tag and a new pack)');
  assertSummaryMatchesRecords(second, svc);

  // The index converged: a third run gets both tags without an upstream blob GET.
  const third = await runJob(t, { svc, upstream, dir: join(dir.path, 'run3'), runner: { runId: 3 }, inputs: { save: 'true' } }, (url) =>
    pullThroughCache(url, [
      { name: 'library/app', reference: 'v1', image: v1 },
      { name: 'library/app', reference: 'v2', image: v2 },
    ]),
  );
  assert.deepEqual(blobGets(third.upstream), [], 'run 3 fetched nothing upstream');
  assert.deepEqual(twirpCalls(third.requests, 'CreateCacheEntry'), [], 'and created no entry');
});

test('two matrix legs of one run pull the same new image: the second finds the pack with a lookup and uploads only its index', { skip, timeout: 60_000 }, async (t) => {
  const { dir, svc, upstream } = await persistWorld(t);
  const image = await seedImage(upstream.url, 'library/shared', 'v1', { layers: 3 });
  const pull = (url: string) => pullThroughCache(url, [{ name: 'library/shared', reference: 'v1', image }]);

  // Both legs start together (neither finds anything), pull, then end one after the other.
  const leg = (os: string) =>
    startJob(t, { svc, upstream, dir: join(dir.path, `leg-${os}`), runner: { runId: 42, job: 'build' }, matrix: { os }, inputs: { save: 'true' } });
  const a = await leg('ubuntu-22.04');
  const b = await leg('ubuntu-24.04');
  await pull(a.cacheUrl);
  await pull(b.cacheUrl);
  const ra = await a.finish();
  const rb = await b.finish();

  const [pack] = createdPacks(ra);
  assert.ok(pack, 'leg A saved the pack');
  assert.equal(createdPacks(rb).length, 0, 'leg B saved no pack');
  const creates = twirpCalls(rb.postRequests, 'CreateCacheEntry').map(keyOf);
  assert.equal(creates.length, 1, `leg B reserved one entry, its index: ${creates.join(', ')}`);
  assert.ok(creates[0]!.includes('-index-'));
  assert.deepEqual(lookupsOf(rb.postRequests, pack.key), [{ hit: true }], 'leg B looked the pack up (not rate-limited) and found it');
  assert.match(rb.persistence.Saved!, /^0 new packs \(0 B\), 1 already saved by another job/);
  const [ia] = createdIndexes(ra);
  const [ib] = createdIndexes(rb);
  assert.ok(ia && ib, 'both legs saved an index');
  assert.notEqual(ia.key, ib.key, 'the legs\' index keys differ by the matrix values');
  assert.equal(ia.key.replace(/-[0-9a-f]{12}$/, ''), ib.key.replace(/-[0-9a-f]{12}$/, ''), 'and only by them (same prefix, run, attempt, job)');
  assertSummaryMatchesRecords(ra, svc);
  assertSummaryMatchesRecords(rb, svc);

  // The next run restores the newest index (leg B's), which names leg A's pack.
  const next = await runJob(t, { svc, upstream, dir: join(dir.path, 'next'), runner: { runId: 43 }, inputs: { save: 'true' } }, pull);
  assert.deepEqual(blobGets(next.upstream), [], 'the next run fetched nothing upstream');
});
