// 300 new small layers in one job against a service that accepts few creations a minute
// (issue 5, "Tests"; GitHub's limit is 200 a minute per repository, shared by every job):
// the job creates a bounded number of pack entries (small images merged into at most 8
// packs), stops creating packs at the first refusal for the rate limit, and the index, without
// which the packs are of no use, waits for the window the service names; the job does not
// fail and the summary says what was refused.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { skipUnless } from '../helpers/tools.js';
import { seedImage } from '../helpers/upstream-images.js';
import { assertSummaryMatchesRecords, createdIndexes, createdPacks, isPackKey, keyOf, pullThroughCache, runJob, twirpCalls, persistWorld } from './support.js';

const skip = skipUnless(['docker-registry', 'zstd']);
const IMAGES = 30;
const LAYERS = 10;
const CREATES_PER_MINUTE = 5;
const MAX_PACKS = 8; // post's bound

test('300 new layers under a low creation rate limit: bounded entries, the index saved after the window, no failure', { skip, timeout: 150_000 }, async (t) => {
  const { dir, svc, upstream } = await persistWorld(t, { createsPerMinute: CREATES_PER_MINUTE });
  const images = await Promise.all(
    Array.from({ length: IMAGES }, async (_, i) => ({ name: `library/small-${i}`, reference: 'v1', image: await seedImage(upstream.url, `library/small-${i}`, 'v1', { layers: LAYERS, layerSize: 1024 }) })),
  );

  const run = await runJob(t, { svc, upstream, dir: join(dir.path, 'run'), runner: { runId: 1 }, inputs: { save: 'true' } }, (url) => pullThroughCache(url, images));
  t.diagnostic(`main ${run.mainMs} ms, post ${run.postMs} ms`);

  const creates = twirpCalls(run.postRequests, 'CreateCacheEntry');
  const packCreates = creates.filter((r) => isPackKey(keyOf(r)));
  const saved = createdPacks(run);
  assert.equal(saved.length, CREATES_PER_MINUTE, 'as many packs as the window took');
  assert.equal(new Set(packCreates.map(keyOf)).size, CREATES_PER_MINUTE + 1, 'pack reservations: the accepted ones and the one refused, no more');
  assert.equal(packCreates.filter((r) => r.status === 429).length, 1, 'one pack refused for the rate limit; no pack retried into the limit');
  assert.ok(CREATES_PER_MINUTE + 1 <= MAX_PACKS);
  // The index was refused while the window was full, then saved once it had room.
  const indexCreates = creates.filter((r) => !isPackKey(keyOf(r)));
  assert.ok(indexCreates.length >= 2 && indexCreates.slice(0, -1).every((r) => r.status === 429), `index refused, then: ${indexCreates.map((r) => r.status).join(', ')}`);
  assert.equal(indexCreates.at(-1)!.status, 200);
  const [index] = createdIndexes(run);
  assert.ok(index, 'the index entry was saved');
  assert.ok(run.postMs < 120_000, `post stayed within its budget: ${run.postMs} ms`);
  // The summary says what was refused.
  const refused = MAX_PACKS - CREATES_PER_MINUTE;
  assert.match(run.persistence.Saved!, new RegExp(`^${CREATES_PER_MINUTE} new packs \\([^)]*\\), ${refused} refused \\(${refused} for the rate limit\\)`));
  assert.equal(run.persistence['Index entry'], `\`${index.key}\``);
  assert.ok(run.post.warnings.some((w) => /rate limit/.test(w)), 'the client warned about the rate limit');
  assertSummaryMatchesRecords(run, svc);

  // What was saved is usable: the index names exactly the saved packs, holding 300 layers at most.
  const next = await runJob(t, { svc, upstream, dir: join(dir.path, 'next'), runner: { runId: 2 }, inputs: { save: 'false' } }, (url) => pullThroughCache(url, images));
  const restoredPacks = Number(/^(\d+)/.exec(next.persistence['Packs restored']!)![1]);
  assert.equal(restoredPacks, CREATES_PER_MINUTE, 'the next run restored the saved packs');
});
