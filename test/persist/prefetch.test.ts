// The Action's default restore (issue 5): with `prefetch` left unset, the server restores every
// pack the index names in the background from its start, before any client asks, so that the
// job's pulls find their layers on disk. Run 1 saves two images; run 2 waits without pulling
// until both packs were downloaded, then pulls: no upstream blob GET, each pack downloaded once.
// The index's tags are confirmed upstream meanwhile, so that a pull asks upstream nothing.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { waitFor } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';
import { seedImage } from '../helpers/upstream-images.js';
import { blobGets, createdPacks, downloadsOf, imageRow, pullThroughCache, runJob, serverStats, startJob, persistWorld } from './support.js';

const skip = skipUnless(['docker-registry', 'zstd']);

test('by default every pack is restored in the background at start; the pulls then ask the upstream for no blob', { skip, timeout: 120_000 }, async (t) => {
  const { dir, svc, upstream } = await persistWorld(t);
  const images = [
    { name: 'library/one', reference: 'v1', image: await seedImage(upstream.url, 'library/one', 'v1', { layers: 3 }) },
    { name: 'library/two', reference: 'v1', image: await seedImage(upstream.url, 'library/two', 'v1', { layers: 3 }) },
  ];
  const first = await runJob(t, { svc, upstream, dir: join(dir.path, 'run1'), runner: { runId: 1 }, inputs: { save: 'true' } }, (url) => pullThroughCache(url, images));
  const packs = createdPacks(first);
  assert.equal(packs.length, 2, 'run 1 saved one pack per image');

  // `prefetch: ''` is the input left unset (the runner passes the action.yml default).
  const before = svc.records().requests.length;
  const job = await startJob(t, { svc, upstream, dir: join(dir.path, 'run2'), runner: { runId: 2 }, inputs: { save: 'false', prefetch: '' } });
  const downloaded = await waitFor(() => {
    const d = downloadsOf(svc.records().requests.slice(before), packs);
    return d.length >= packs.length ? d : undefined;
  }, { what: 'both packs downloaded with no client asking', timeoutMs: 30_000 });
  assert.deepEqual(new Set(downloaded.map((e) => e.key)), new Set(packs.map((e) => e.key)));

  await pullThroughCache(job.cacheUrl, images);
  const run = await job.finish();
  assert.deepEqual(blobGets(run.upstream), [], 'every layer came from the prefetched packs');
  assert.equal(downloadsOf(run.requests, packs).length, packs.length, 'each pack downloaded once');
  assert.equal((await serverStats(run)).extras.persist?.packsRestored, packs.length);
  for (const { name } of images) {
    const row = imageRow(run.post.summary, name);
    assert.equal(row[3], 'Actions cache', `prefetched layers (and the index's manifest and config) are counted as the Actions cache's: ${row.join(' | ')}`);
    assert.equal(row[5], '0 B', 'nothing from upstream');
  }
});

test('with the prefetch, the index\'s tags are confirmed upstream meanwhile (HEAD): a pull then asks upstream nothing; a moved tag is left to the client', { skip, timeout: 120_000 }, async (t) => {
  const { dir, svc, upstream } = await persistWorld(t);
  const one = { name: 'library/one', reference: 'v1', image: await seedImage(upstream.url, 'library/one', 'v1', { layers: 2 }) };
  const two = { name: 'library/two', reference: 'v1', image: await seedImage(upstream.url, 'library/two', 'v1', { layers: 2 }) };
  const first = await runJob(t, { svc, upstream, dir: join(dir.path, 'run1'), runner: { runId: 1 }, inputs: { save: 'true' } }, (url) => pullThroughCache(url, [one, two]));
  const packs = createdPacks(first);
  assert.equal(packs.length, 2);
  // library/two:v1 moves upstream after run 1.
  const moved = { ...two, image: await seedImage(upstream.url, 'library/two', 'v1', { layers: 2 }) };

  const logStart = (await upstream.accessLog()).length;
  const before = svc.records().requests.length;
  const job = await startJob(t, { svc, upstream, dir: join(dir.path, 'run2'), runner: { runId: 2 }, inputs: { save: 'false', prefetch: '' } });
  const manifestRequests = async () => (await upstream.accessLog()).slice(logStart).filter((e) => e.path.includes('/manifests/'));
  const confirmations = await waitFor(async () => {
    const m = await manifestRequests();
    return m.length >= 2 ? m : undefined;
  }, { what: 'both tags confirmed upstream with no client asking', timeoutMs: 30_000 });
  await waitFor(() => downloadsOf(svc.records().requests.slice(before), packs).length >= packs.length || undefined, { what: 'both packs prefetched', timeoutMs: 30_000 });
  assert.deepEqual(
    confirmations.map((e) => `${e.method} ${e.path}`).sort(),
    ['HEAD /v2/library/one/manifests/v1', 'HEAD /v2/library/two/manifests/v1'],
    'one HEAD per tag of the index, no counted GET',
  );

  // library/one:v1 was confirmed: its pull asks upstream nothing at all.
  const beforeOne = (await upstream.accessLog()).length;
  await pullThroughCache(job.cacheUrl, [one]);
  assert.deepEqual((await upstream.accessLog()).slice(beforeOne), [], 'a confirmed tag, layers from its pack');
  // library/two:v1 moved: the client's request finds out (HEAD, then the one GET it needs).
  const beforeTwo = (await upstream.accessLog()).length;
  await pullThroughCache(job.cacheUrl, [moved]);
  const asked = (await upstream.accessLog()).slice(beforeTwo).filter((e) => e.path.includes('/manifests/'));
  assert.deepEqual(asked.map((e) => e.method), ['HEAD', 'GET'], JSON.stringify(asked));
  await job.finish();
});
