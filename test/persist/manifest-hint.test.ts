// A client's manifest request names the image it pulls next (issue 5, restore cost): with the
// prefetch off, the server starts restoring the packs of the layers the index holds for that
// image when the manifest is asked for, not when the first layer is: the layers' requests then
// find them restored or on their way. Asserted from the service's records: the pack is
// downloaded after the manifest request alone, once, and the pull asks upstream for no blob.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { waitFor } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';
import { ACCEPT_ALL_MANIFESTS, fetchBytes, seedImage } from '../helpers/upstream-images.js';
import { blobGets, createdPacks, downloadsOf, pullThroughCache, runJob, startJob, persistWorld } from './support.js';

const skip = skipUnless(['docker-registry', 'zstd']);

test('a manifest request starts the restore of its image\'s pack before any layer is asked for', { skip, timeout: 120_000 }, async (t) => {
  const { dir, svc, upstream } = await persistWorld(t);
  const one = { name: 'library/one', reference: 'v1', image: await seedImage(upstream.url, 'library/one', 'v1', { layers: 3 }) };
  const two = { name: 'library/two', reference: 'v1', image: await seedImage(upstream.url, 'library/two', 'v1', { layers: 3 }) };
  const first = await runJob(t, { svc, upstream, dir: join(dir.path, 'run1'), runner: { runId: 1 }, inputs: { save: 'true' } }, (url) => pullThroughCache(url, [one, two]));
  const packs = createdPacks(first);
  assert.equal(packs.length, 2);

  const before = svc.records().requests.length;
  const job = await startJob(t, { svc, upstream, dir: join(dir.path, 'run2'), runner: { runId: 2 }, inputs: { save: 'false', prefetch: 'false' } });
  const manifest = await fetchBytes(`${job.cacheUrl}/v2/library/one/manifests/v1`, { headers: { accept: ACCEPT_ALL_MANIFESTS } });
  assert.equal(manifest.status, 200);
  const downloaded = await waitFor(() => {
    const d = downloadsOf(svc.records().requests.slice(before), packs);
    return d.length >= 1 ? d : undefined;
  }, { what: 'a pack downloaded after the manifest request alone', timeoutMs: 30_000 });
  assert.equal(downloaded.length, 1, 'only the pack of the image asked for');

  await pullThroughCache(job.cacheUrl, [one]);
  const run = await job.finish();
  assert.deepEqual(blobGets(run.upstream), [], 'its layers came from the pack');
  const all = downloadsOf(run.requests, packs);
  assert.equal(all.length, 1, 'downloaded once, and library/two\'s pack not at all');
  assert.equal(all[0]!.key, downloaded[0]!.key);
});
