// The cache when its upstream cannot serve: stopped (connection refused), or rate-limiting
// (429 with Retry-After, from a small gate in front of distribution 2.8). Cached tags are
// served stale and counted so; what is not cached fails fast with a clean error envelope;
// the upstream is not hammered.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startDistribution } from '../helpers/distribution.js';
import { getBlob, pullImage, seedImage } from '../helpers/upstream-images.js';
import { skipUnless } from '../helpers/tools.js';
import type { StatsSnapshot } from '../../src/stats/index.js';
import { cleanup, expectError, getJson, logWindow, show, startCache, startGate } from './support.js';

const skip = skipUnless(['docker-registry']);

function failedUpstreamRequests(s: StatsSnapshot, ns: string): number {
  return Object.entries(s.upstreams[ns]?.requests ?? {}).reduce((n, [k, v]) => (k.endsWith(' 0') ? n + v : n), 0);
}

test('upstream stopped: a cached tag is served stale; an uncached tag or digest gets a quick 503 UNAVAILABLE', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution());
  const image = await seedImage(upstream.url, 'library/app', 'v1');
  const other = await seedImage(upstream.url, 'library/app', 'v2');
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], tagTtlMs: 0, upstreamRetries: 1, upstreamBackoffMs: 10 });
  const statsUrl = `${cache.cacheUrl}/_regcache/stats`;
  await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1');
  await upstream.stop();

  const stale = await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1');
  assert.equal(stale.digest, image.digest);
  for (const b of image.blobs) assert.deepEqual(stale.blobs.get(b.digest), b.data);
  const repo = (await getJson<StatsSnapshot>(statsUrl)).repositories['docker.io/library/app']!;
  assert.equal(repo.manifestStale, 1, 'the pull is counted as stale');

  const missing = await expectError('GET', `${cache.cacheUrl}/v2/app/manifests/v2`);
  assert.deepEqual([missing.status, missing.code], [503, 'UNAVAILABLE']);
  // By digest too (it was a 500 UNKNOWN: the fetch by digest did not map the upstream's failure).
  const missingByDigest = await expectError('GET', `${cache.cacheUrl}/v2/app/manifests/${other.digest}`);
  assert.deepEqual([missingByDigest.status, missingByDigest.code], [503, 'UNAVAILABLE'], missingByDigest.text);
  // Make sure the breaker has seen enough failures to open, whatever its threshold's slack.
  await expectError('GET', `${cache.cacheUrl}/v2/app/manifests/v2`);
  await expectError('GET', `${cache.cacheUrl}/v2/app/blobs/${other.config.digest}`);

  const failedBefore = failedUpstreamRequests(await getJson<StatsSnapshot>(statsUrl), 'docker.io');
  const started = performance.now();
  for (let i = 0; i < 5; i++) {
    const e = i % 2 === 0
      ? await expectError('GET', `${cache.cacheUrl}/v2/app/manifests/v2`)
      : await expectError('GET', `${cache.cacheUrl}/v2/app/blobs/${other.layers[0]!.digest}`);
    assert.deepEqual([e.status, e.code], [503, 'UNAVAILABLE'], e.text);
  }
  const elapsed = performance.now() - started;
  assert.ok(elapsed < 2000, `5 requests against a dead upstream took ${Math.round(elapsed)} ms`);
  // The breaker is open: those requests did not even try to connect.
  assert.equal(failedUpstreamRequests(await getJson<StatsSnapshot>(statsUrl), 'docker.io'), failedBefore, 'no connection attempts while the breaker is open');
  // And the cached tag is still served meanwhile.
  assert.equal((await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1')).digest, image.digest);
  assert.equal((await getJson<StatsSnapshot>(statsUrl)).repositories['docker.io/library/app']!.manifestStale, 2);
});

test('upstream answering 429: one upstream request per Retry-After window; cached tags served stale meanwhile', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution());
  const gate = cleanup(t, await startGate(upstream.url));
  const image = await seedImage(upstream.url, 'library/app', 'v1');
  await seedImage(upstream.url, 'library/app', 'v2');
  const cache = await startCache(t, { upstreams: [`docker.io=${gate.url}`], tagTtlMs: 0 });
  await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1');

  gate.mode = '429';
  gate.retryAfterSeconds = 30;
  const seenBefore = gate.log.length;
  const window = await logWindow(upstream);
  const N = 8;
  for (let i = 0; i < N; i++) {
    const pulled = await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1');
    assert.equal(pulled.digest, image.digest);
  }
  const uncached = await expectError('GET', `${cache.cacheUrl}/v2/app/manifests/v2`);
  assert.deepEqual([uncached.status, uncached.code], [429, 'TOOMANYREQUESTS']);
  const retryAfter = Number(uncached.headers['retry-after']);
  assert.ok(retryAfter > 0 && retryAfter <= 30, `Retry-After passed on: ${String(uncached.headers['retry-after'])}`);

  const seen = gate.log.slice(seenBefore);
  assert.deepEqual(seen.map((e) => [e.method, e.path, e.status]), [['HEAD', '/v2/library/app/manifests/v1', 429]], `one request, answered 429, then silence:\n${JSON.stringify(seen)}`);
  const entries = await window.entries();
  assert.deepEqual(entries, [], `nothing reached distribution:\n${show(entries)}`);
  const repo = (await getJson<StatsSnapshot>(`${cache.cacheUrl}/_regcache/stats`)).repositories['docker.io/library/app']!;
  assert.equal(repo.manifestStale, N);
  // Blobs of the cached image are local anyway.
  await getBlob({ base: cache.cacheUrl, name: 'app' }, image.layers[0]!.digest);
});

test('restarted on the same storage while the upstream is down: cached tags are served stale, digests as hits', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution());
  const image = await seedImage(upstream.url, 'library/app', 'v1');
  const dir = await mkdtemp(join(tmpdir(), 'regcache-proxy-restart-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const storage = join(dir, 'storage');
  const opts = { upstreams: [`docker.io=${upstream.url}`], storage, upstreamRetries: 0, upstreamBackoffMs: 10 };
  const first = await startCache(t, opts);
  await pullImage({ base: first.cacheUrl, name: 'app' }, 'v1');
  await first.close();
  await upstream.stop();

  // A new process (as in the next CI run) knows nothing fresh: every tag needs revalidation.
  const second = await startCache(t, opts);
  const pulled = await pullImage({ base: second.cacheUrl, name: 'app' }, 'v1');
  assert.equal(pulled.digest, image.digest);
  for (const b of image.blobs) assert.deepEqual(pulled.blobs.get(b.digest), b.data);
  assert.equal((await pullImage({ base: second.cacheUrl, name: 'app' }, image.digest)).digest, image.digest);
  const repo = (await getJson<StatsSnapshot>(`${second.cacheUrl}/_regcache/stats`)).repositories['docker.io/library/app']!;
  assert.deepEqual([repo.manifestStale, repo.manifestHits, repo.manifestMisses], [1, 1, 0]);
  assert.equal(repo.blobHits, 2 * image.blobs.length);
});
