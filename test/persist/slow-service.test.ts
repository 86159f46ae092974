// A cache service that is slow but answers (a busy machine, a loaded service): a lookup that
// says "not found" after several seconds is an answer, not a failure. It once counted as one
// (a miss slower than 5 s opened the breaker for the rest of the job), so one slow lookup in
// post made every later pack and the index "failed": a two-image run saved one pack, or none.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { skipUnless } from '../helpers/tools.js';
import { seedImage } from '../helpers/upstream-images.js';
import { packKey } from '../../src/persist/index.js';
import { createdIndexes, createdPacks, pullThroughCache, startJob, persistWorld } from './support.js';

const skip = skipUnless(['docker-registry', 'zstd']);

/** Longer than the 5 s the breaker once took a miss for a failure, shorter than the 10 s lookup budget. */
const SLOW_LOOKUP_MS = 6_500;

async function fixture(t: TestContext) {
  const { dir, svc, upstream } = await persistWorld(t);
  return { dir: dir.path, svc, upstream };
}

test('a slow "not found" for the index (6.5 s): main starts empty without taking the service for failing', { skip, timeout: 90_000 }, async (t) => {
  const { dir, svc, upstream } = await fixture(t);
  svc.setLatency(SLOW_LOOKUP_MS, ['GetCacheEntryDownloadURL']);
  const job = await startJob(t, { svc, upstream, dir: join(dir, 'run1'), runner: { runId: 1 }, inputs: { save: 'true' } });
  assert.match(job.main.stdout, /no index in the Actions cache yet/);
  assert.deepEqual(job.main.warnings, [], 'no warning of a failing service');
  const run = await job.finish();
  assert.match(run.persistence['Index restored']!, /^none yet/);
});

test('slow "not found" lookups (6.5 s each) in post: a two-image job saves both packs and its index', { skip, timeout: 150_000 }, async (t) => {
  const { dir, svc, upstream } = await fixture(t);
  const one = await seedImage(upstream.url, 'library/one', 'v1', { layers: 3 });
  const two = await seedImage(upstream.url, 'library/two', 'v1', { layers: 3 });
  const job = await startJob(t, { svc, upstream, dir: join(dir, 'run1'), runner: { runId: 1 }, inputs: { save: 'true' } });
  await pullThroughCache(job.cacheUrl, [
    { name: 'library/one', reference: 'v1', image: one },
    { name: 'library/two', reference: 'v1', image: two },
  ]);
  svc.setLatency(SLOW_LOOKUP_MS, ['GetCacheEntryDownloadURL']);
  const run = await job.finish();
  t.diagnostic(`post ${run.postMs} ms; ${JSON.stringify(run.persistence)}`);
  const expected = [one, two].map((i) => packKey('regcache', i.layers.map((l) => l.digest))).sort();
  assert.deepEqual(createdPacks(run).map((e) => e.key).sort(), expected, 'a pack per image');
  assert.equal(createdIndexes(run).length, 1, 'and the index');
  assert.match(run.persistence.Saved!, /^2 new packs \([^)]*\) in [\d.]+ s$/, run.persistence.Saved);
});
