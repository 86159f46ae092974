// A cache service that is down (issue 5, "Tests"): the job does not fail, every blob comes
// from upstream intact, and the service costs the job a bounded delay, not the client's half
// minute of retries per call nor a retry storm per layer.
//   - connections reset (the client fails fast): main + post within seconds;
//   - 503s (the client retries each call ~25-35 s): main + post bounded by the lookup budget
//     (10 s a step) instead of one retry cycle per call;
//   - 503s from after main restored the index: the first pack costs the budget once, the
//     breaker opens, every other layer goes upstream at once.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { ActionsCacheService, DownMode } from '../helpers/actions-cache-service.js';
import type { Distribution } from '../helpers/distribution.js';
import { skipUnless } from '../helpers/tools.js';
import { seedImage, type TestImage } from '../helpers/upstream-images.js';
import { assertSummaryMatchesRecords, blobGets, createdPacks, pullThroughCache, runJob, serverStats, startJob, twirpCalls, persistWorld } from './support.js';

const skip = skipUnless(['docker-registry', 'zstd']);

interface Fixture {
  dir: string;
  svc: ActionsCacheService;
  upstream: Distribution;
  images: TestImage[];
  pull: (url: string) => Promise<unknown>;
}

/** A cache holding two images (a run that saved them), and a third image only upstream. */
async function populated(t: TestContext): Promise<Fixture> {
  const { dir, svc, upstream } = await persistWorld(t);
  const images = [
    await seedImage(upstream.url, 'library/one', 'v1', { layers: 3 }),
    await seedImage(upstream.url, 'library/two', 'v1', { layers: 3 }),
  ];
  const cached = (url: string) =>
    pullThroughCache(url, images.map((image, i) => ({ name: `library/${['one', 'two'][i]}`, reference: 'v1', image })));
  const first = await runJob(t, { svc, upstream, dir: join(dir.path, 'run1'), runner: { runId: 1 }, inputs: { save: 'true' } }, cached);
  // The setup needs a populated cache; the property under test is the down service. Under heavy
  // machine load one of the two packs has been seen missing once (not reproduced): report it.
  const packs = createdPacks(first).length;
  if (packs !== 2) t.diagnostic(`setup: run 1 created ${packs} packs, expected 2; persistence summary: ${JSON.stringify(first.persistence)}`);
  assert.ok(packs >= 1, 'run 1 saved the cache the test needs');
  const fresh = await seedImage(upstream.url, 'library/three', 'v1', { layers: 2 });
  const pull = async (url: string) => {
    await cached(url);
    await pullThroughCache(url, [{ name: 'library/three', reference: 'v1', image: fresh }]);
  };
  return { dir: dir.path, svc, upstream, images: [...images, fresh], pull };
}

/** Run 2 with the service down from the start. */
async function downFromStart(t: TestContext, mode: DownMode) {
  const f = await populated(t);
  f.svc.setDown(mode);
  const run = await runJob(t, { svc: f.svc, upstream: f.upstream, dir: join(f.dir, 'run2'), runner: { runId: 2 }, inputs: { save: 'true' } }, f.pull);
  // Every blob came from upstream (and pullThroughCache checked each against its digest).
  assert.deepEqual(new Set(blobGets(run.upstream)), new Set(f.images.flatMap((i) => i.blobs.map((b) => b.digest))));
  assert.equal(run.persistence['Index restored']?.startsWith('none: the cache service failed or did not answer'), true, run.persistence['Index restored']);
  // Post does not try to save after a failed start: no call to the service at all.
  assert.equal(run.persistence.Saved, 'nothing: the Actions cache service failed or did not answer at the start');
  assert.equal(run.persistence['Index entry'], undefined);
  assert.deepEqual(run.postRequests.filter((r) => r.kind === 'twirp').map((r) => (r as { method: string }).method), [], 'post asked the service nothing');
  assert.ok(run.post.lines.some((l) => /^regcache: the GitHub Actions cache service failed at the start of the job/.test(l)), run.post.stdout);
  assert.equal(run.main.warnings.filter((w) => /cache service failed or did not answer/.test(w)).length, 1, `main warns once: ${run.main.warnings.join(' | ')}`);
  assert.equal(run.main.outputs['cache-hit'], 'false');
  assert.equal(run.created.length, 0);
  const twirp = run.requests.filter((r) => r.kind === 'twirp');
  return { f, run, twirp };
}

test('cache service down (connections reset): the job succeeds from upstream, main + post within seconds', { skip, timeout: 90_000 }, async (t) => {
  const { run, twirp } = await downFromStart(t, 'reset');
  const ms = run.mainMs + run.postMs;
  t.diagnostic(`main ${run.mainMs} ms + post ${run.postMs} ms; ${twirp.length} Twirp requests`);
  assert.ok(ms < 10_000, `main + post took ${ms} ms`);
  assert.ok(twirp.length <= 8, `a few calls, no storm: ${twirp.map((r) => r.method).join(', ')}`);
});

test('cache service down (503s, retried by the client): main + post bounded, the job succeeds from upstream', { skip, timeout: 120_000 }, async (t) => {
  const { run, twirp } = await downFromStart(t, 'unavailable');
  const ms = run.mainMs + run.postMs;
  t.diagnostic(`main ${run.mainMs} ms + post ${run.postMs} ms; ${twirp.length} Twirp requests`);
  assert.ok(ms < 60_000, `main + post took ${ms} ms`);
  // main retries the index lookup for 2 s (1 s backoff: two attempts), not the lookup budget
  // (10 s) nor the client's retry cycle (~25-35 s); post asks nothing.
  assert.ok(twirp.length <= 3, `two attempts of main's lookup: ${twirp.map((r) => r.method).join(', ')}`);
});

test('cache service failing after main restored the index: one lookup budget in all, then every layer from upstream', { skip, timeout: 120_000 }, async (t) => {
  const f = await populated(t);
  const job = await startJob(t, { svc: f.svc, upstream: f.upstream, dir: join(f.dir, 'run2'), runner: { runId: 2 }, inputs: { save: 'true' } });
  assert.match(job.main.stdout, /regcache: restored the index/);
  f.svc.setDown('unavailable');
  const t0 = Date.now();
  await f.pull(job.cacheUrl);
  const pullMs = Date.now() - t0;
  const run = await job.finish();
  t.diagnostic(`pulls ${pullMs} ms, post ${run.postMs} ms`);
  assert.deepEqual(new Set(blobGets(run.upstream)), new Set(f.images.flatMap((i) => i.layers.map((b) => b.digest)).concat(f.images[2]!.config.digest)), 'every layer from upstream (configs of cached images from the index)');
  assert.ok(pullMs < 25_000, `the pulls waited ${pullMs} ms: one lookup budget, not one per pack or layer`);
  assert.ok(run.postMs < 20_000, `post took ${run.postMs} ms`);
  const persist = (await serverStats(run)).extras.persist as Record<string, number>;
  assert.equal(persist.packsRestored, 0);
  assert.equal(persist.packsUnavailable, 2, 'both packs were given up on, none counted as evicted or broken');
  assert.deepEqual((persist as unknown as { unusable: string[] }).unusable, [], 'so the next run keeps them in its index');
  assert.ok(twirpCalls(run.requests, 'GetCacheEntryDownloadURL').length <= 10);
  assertSummaryMatchesRecords(run, f.svc);
});
