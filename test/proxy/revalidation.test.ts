// What a repeated pull costs upstream, read from the upstream's (distribution 2.8) own access
// log: tags revalidated with HEAD once the TTL is over and not asked at all within it, digests
// never asked again, a moved tag fetched with exactly one GET, Docker Hub's `library/` namespace
// one cache entry under both spellings, index children fetched on demand.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startDistribution, type Distribution } from '../helpers/distribution.js';
import { ACCEPT_ALL_MANIFESTS, fetchBytes, getManifest, pullImage, pushImage, pushIndex, randomImage, randomIndex, seedImage } from '../helpers/upstream-images.js';
import { skipUnless } from '../helpers/tools.js';
import type { StatsSnapshot } from '../../src/stats/index.js';
import { cleanup, getJson, logWindow, matching, show, startCache, type AfterHook } from './support.js';

const skip = skipUnless(['docker-registry']);

async function upstreamWith(t: AfterHook): Promise<Distribution> {
  return cleanup(t, await startDistribution());
}

test('second pull of a tag with tagTtlMs 0: one HEAD upstream, zero GETs', { skip }, async (t) => {
  const upstream = await upstreamWith(t);
  const image = await seedImage(upstream.url, 'library/busybox', 'v1', { layers: 3 });
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], tagTtlMs: 0 });
  const first = await logWindow(upstream);
  await pullImage({ base: cache.cacheUrl, name: 'busybox' }, 'v1');
  const firstEntries = await first.entries();
  assert.equal(firstEntries.filter((e) => e.method === 'GET').length, 1 + image.blobs.length, show(firstEntries));

  const second = await logWindow(upstream);
  const pulled = await pullImage({ base: cache.cacheUrl, name: 'busybox' }, 'v1');
  assert.equal(pulled.digest, image.digest);
  const entries = await second.entries();
  assert.deepEqual(entries, [{ method: 'HEAD', path: '/v2/library/busybox/manifests/v1', query: '', status: 200 }], show(entries));

  const stats = await getJson<StatsSnapshot>(`${cache.cacheUrl}/_regcache/stats`);
  assert.equal(stats.upstreams['docker.io']!.countedManifestGets, 1);
  assert.equal(stats.repositories['docker.io/library/busybox']!.manifestRevalidated, 1);
});

test('second pull within the tag TTL: zero upstream requests', { skip }, async (t) => {
  const upstream = await upstreamWith(t);
  await seedImage(upstream.url, 'library/busybox', 'v1');
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], tagTtlMs: 60_000 });
  await pullImage({ base: cache.cacheUrl, name: 'busybox' }, 'v1');
  const window = await logWindow(upstream);
  await pullImage({ base: cache.cacheUrl, name: 'busybox' }, 'v1');
  await fetchBytes(`${cache.cacheUrl}/v2/busybox/manifests/v1`, { method: 'HEAD', headers: { accept: ACCEPT_ALL_MANIFESTS } });
  const entries = await window.entries();
  assert.deepEqual(entries, [], show(entries));
});

test('a digest pull after caching: zero upstream requests, even with tagTtlMs 0', { skip }, async (t) => {
  const upstream = await upstreamWith(t);
  const image = await seedImage(upstream.url, 'library/busybox', 'v1');
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], tagTtlMs: 0 });
  await pullImage({ base: cache.cacheUrl, name: 'busybox' }, 'v1');
  const window = await logWindow(upstream);
  const pulled = await pullImage({ base: cache.cacheUrl, name: 'busybox' }, image.digest);
  assert.deepEqual(pulled.manifest, image.manifest);
  const head = await fetchBytes(`${cache.cacheUrl}/v2/busybox/manifests/${image.digest}`, { method: 'HEAD', headers: { accept: ACCEPT_ALL_MANIFESTS } });
  assert.equal(head.status, 200);
  const blobHead = await fetchBytes(`${cache.cacheUrl}/v2/busybox/blobs/${image.layers[0]!.digest}`, { method: 'HEAD' });
  assert.equal(blobHead.status, 200);
  assert.equal(blobHead.headers['content-length'], String(image.layers[0]!.size));
  const entries = await window.entries();
  assert.deepEqual(entries, [], show(entries));
});

test('a docker-style pull (HEAD by tag, then GET by digest) costs one manifest GET upstream', { skip }, async (t) => {
  const upstream = await upstreamWith(t);
  const image = await seedImage(upstream.url, 'library/busybox', 'v1');
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });
  const window = await logWindow(upstream);
  const head = await fetchBytes(`${cache.cacheUrl}/v2/busybox/manifests/v1`, { method: 'HEAD', headers: { accept: ACCEPT_ALL_MANIFESTS } });
  assert.equal(head.status, 200);
  assert.equal(head.headers['docker-content-digest'], image.digest);
  await pullImage({ base: cache.cacheUrl, name: 'busybox' }, image.digest);
  const entries = await window.entries();
  assert.equal(entries.filter((e) => e.path.includes('/manifests/')).length, 1, show(entries));
  assert.equal(matching(entries, 'GET', '/manifests/v1').length, 1, show(entries));
});

test('a tag moved upstream: the new manifest is fetched with one GET, shared layers are not fetched again', { skip }, async (t) => {
  const upstream = await upstreamWith(t);
  const before = await seedImage(upstream.url, 'library/app', 'v1');
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], tagTtlMs: 0 });
  assert.equal((await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1')).digest, before.digest);

  const after = await pushImage(upstream.url, 'library/app', 'v1', randomImage({ baseLayers: [before.layers[0]!], layers: 1 }));
  const window = await logWindow(upstream);
  const pulled = await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1');
  assert.equal(pulled.digest, after.digest);
  for (const b of after.blobs) assert.deepEqual(pulled.blobs.get(b.digest), b.data);
  const entries = await window.entries();
  assert.equal(matching(entries, 'HEAD', '/manifests/v1').length, 1, show(entries));
  assert.equal(matching(entries, 'GET', '/manifests/v1').length, 1, show(entries));
  const blobGets = entries.filter((e) => e.method === 'GET' && e.path.includes('/blobs/')).map((e) => e.path.split('/').pop()).sort();
  assert.deepEqual(blobGets, [after.config.digest, after.layers[1]!.digest].sort(), `the shared layer ${before.layers[0]!.digest} is not fetched again:\n${show(entries)}`);
  assert.equal(entries.length, 4, show(entries));

  const again = await logWindow(upstream);
  await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1');
  assert.deepEqual((await again.entries()).map((e) => e.method), ['HEAD']);
});

test('library/ normalisation both ways: alpine and library/alpine share one cache entry', { skip }, async (t) => {
  const upstream = await upstreamWith(t);
  const alpine = await seedImage(upstream.url, 'library/alpine', '3');
  const busybox = await seedImage(upstream.url, 'library/busybox', '1');
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });

  const w1 = await logWindow(upstream);
  assert.equal((await pullImage({ base: cache.cacheUrl, name: 'alpine' }, '3')).digest, alpine.digest);
  const e1 = await w1.entries();
  assert.deepEqual(matching(e1, 'GET', '/manifests/3').map((e) => e.path), ['/v2/library/alpine/manifests/3'], show(e1));
  const w2 = await logWindow(upstream);
  assert.equal((await pullImage({ base: cache.cacheUrl, name: 'library/alpine' }, '3')).digest, alpine.digest);
  assert.deepEqual(await w2.entries(), [], 'library/alpine after alpine: no upstream request');

  const w3 = await logWindow(upstream);
  assert.equal((await pullImage({ base: cache.cacheUrl, name: 'library/busybox' }, '1')).digest, busybox.digest);
  const e3 = await w3.entries();
  assert.deepEqual(matching(e3, 'GET', '/manifests/1').map((e) => e.path), ['/v2/library/busybox/manifests/1'], show(e3));
  const w4 = await logWindow(upstream);
  assert.equal((await pullImage({ base: cache.cacheUrl, name: 'busybox' }, '1')).digest, busybox.digest);
  assert.deepEqual(await w4.entries(), [], 'busybox after library/busybox: no upstream request');

  // Other spellings of the same repository: the docker.io path prefix and the ns parameter.
  const w5 = await logWindow(upstream);
  for (const target of [{ name: 'docker.io/alpine' }, { name: 'docker.io/library/alpine' }, { name: 'alpine', query: 'ns=docker.io' }, { name: 'library/alpine', query: 'ns=docker.io' }]) {
    assert.equal((await pullImage({ base: cache.cacheUrl, ...target }, '3')).digest, alpine.digest, JSON.stringify(target));
  }
  assert.deepEqual(await w5.entries(), [], 'no upstream request for any spelling');

  const stats = await getJson<StatsSnapshot>(`${cache.cacheUrl}/_regcache/stats`);
  assert.deepEqual(Object.keys(stats.repositories).sort(), ['docker.io/library/alpine', 'docker.io/library/busybox']);
});

test('a multi-platform index is cached as-is; a child manifest is fetched on demand, once', { skip }, async (t) => {
  const upstream = await upstreamWith(t);
  const index = await pushIndex(upstream.url, 'library/multi', 'v1', randomIndex([{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }]));
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });
  const w1 = await logWindow(upstream);
  const got = await getManifest({ base: cache.cacheUrl, name: 'multi' }, 'v1');
  assert.deepEqual(got.body, index.manifest);
  assert.equal(got.mediaType, index.mediaType);
  const e1 = await w1.entries();
  assert.deepEqual(e1.map((e) => `${e.method} ${e.path}`), ['GET /v2/library/multi/manifests/v1'], 'no child fetched with the index');

  const [arm] = index.children.filter((c) => c.config.data.includes('arm64'));
  const w2 = await logWindow(upstream);
  await pullImage({ base: cache.cacheUrl, name: 'multi' }, arm!.digest);
  await pullImage({ base: cache.cacheUrl, name: 'multi' }, arm!.digest);
  const e2 = await w2.entries();
  assert.equal(matching(e2, 'GET', `/manifests/${arm!.digest}`).length, 1, show(e2));
  assert.equal(e2.length, 1 + arm!.blobs.length, show(e2));
});
