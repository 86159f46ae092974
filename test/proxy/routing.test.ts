// Upstream routing on the cache port with two real upstreams (distribution 2.8 as docker.io and
// as ghcr.io): the path prefix `/v2/ghcr.io/owner/img/...` and the `?ns=ghcr.io` parameter
// reach the second upstream (its access log says so, the first one's stays silent); pushes and
// deletes on the cache port answer 405 UNSUPPORTED and reach no upstream.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startDistribution } from '../helpers/distribution.js';
import { fetchBytes, pullImage, randomImage, seedImage } from '../helpers/upstream-images.js';
import { skipUnless } from '../helpers/tools.js';
import type { StatsSnapshot } from '../../src/stats/index.js';
import { cleanup, expectError, getJson, logWindow, show, startCache, type AfterHook } from './support.js';

const skip = skipUnless(['docker-registry']);

async function twoUpstreams(t: AfterHook) {
  const hub = cleanup(t, await startDistribution());
  const ghcr = cleanup(t, await startDistribution());
  const cache = await startCache(t, { upstreams: [`docker.io=${hub.url}`, `ghcr.io=${ghcr.url}`] });
  return { hub, ghcr, cache };
}

test('path-prefixed names (/v2/ghcr.io/owner/img/...) reach the ghcr.io upstream', { skip }, async (t) => {
  const { hub, ghcr, cache } = await twoUpstreams(t);
  const image = await seedImage(ghcr.url, 'owner/img', 'v1');
  // The same name on Docker Hub holds another image: a wrong route would return it.
  await seedImage(hub.url, 'owner/img', 'v1');
  const hubWindow = await logWindow(hub);
  const ghcrWindow = await logWindow(ghcr);

  const pulled = await pullImage({ base: cache.cacheUrl, name: 'ghcr.io/owner/img' }, 'v1');
  assert.equal(pulled.digest, image.digest);
  const entries = await ghcrWindow.entries();
  assert.deepEqual(
    entries.map((e) => `${e.method} ${e.path}`).sort(),
    ['GET /v2/owner/img/manifests/v1', ...image.blobs.map((b) => `GET /v2/owner/img/blobs/${b.digest}`)].sort(),
    show(entries),
  );
  assert.deepEqual(await hubWindow.entries(), [], 'docker.io upstream not asked');
  const stats = await getJson<StatsSnapshot>(`${cache.cacheUrl}/_regcache/stats`);
  assert.ok(stats.repositories['ghcr.io/owner/img'], Object.keys(stats.repositories).join(', '));
});

test('?ns=ghcr.io reaches the ghcr.io upstream and shares the cache entry of the path-prefixed form', { skip }, async (t) => {
  const { hub, ghcr, cache } = await twoUpstreams(t);
  const image = await seedImage(ghcr.url, 'owner/tool', 'v2');
  await seedImage(hub.url, 'owner/tool', 'v2');
  const hubWindow = await logWindow(hub);
  const ghcrWindow = await logWindow(ghcr);

  const pulled = await pullImage({ base: cache.cacheUrl, name: 'owner/tool', query: 'ns=ghcr.io' }, 'v2');
  assert.equal(pulled.digest, image.digest);
  const entries = await ghcrWindow.entries();
  assert.equal(entries.filter((e) => e.method === 'GET').length, 1 + image.blobs.length, show(entries));
  assert.ok(entries.every((e) => e.path.startsWith('/v2/owner/tool/')), show(entries));
  assert.deepEqual(await hubWindow.entries(), [], 'docker.io upstream not asked');

  const again = await logWindow(ghcr);
  assert.equal((await pullImage({ base: cache.cacheUrl, name: 'ghcr.io/owner/tool' }, 'v2')).digest, image.digest);
  assert.deepEqual(await again.entries(), [], 'path-prefixed pull of what ?ns= cached: no upstream request');

  const unknown = await expectError('GET', `${cache.cacheUrl}/v2/owner/tool/manifests/v2?ns=quay.io`);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.code, 'NAME_UNKNOWN');
});

test('pushes and deletes on the cache port answer 405 UNSUPPORTED and reach no upstream', { skip }, async (t) => {
  const { hub, ghcr, cache } = await twoUpstreams(t);
  const image = await seedImage(hub.url, 'library/app', 'v1');
  await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1');
  const hubWindow = await logWindow(hub);
  const ghcrWindow = await logWindow(ghcr);
  const fresh = randomImage();
  const base = cache.cacheUrl;
  const attempts: Array<[Parameters<typeof expectError>[0], string, Buffer | undefined]> = [
    ['POST', `${base}/v2/app/blobs/uploads/`, undefined],
    ['POST', `${base}/v2/app/blobs/uploads/?digest=${fresh.config.digest}`, fresh.config.data],
    ['POST', `${base}/v2/ghcr.io/owner/img/blobs/uploads/?ns=ghcr.io`, undefined],
    ['PATCH', `${base}/v2/app/blobs/uploads/some-session`, Buffer.from('x')],
    ['PUT', `${base}/v2/app/blobs/uploads/some-session?digest=${fresh.config.digest}`, fresh.config.data],
    ['PUT', `${base}/v2/app/manifests/v1`, fresh.manifest],
    ['DELETE', `${base}/v2/app/manifests/v1`, undefined],
    ['DELETE', `${base}/v2/app/manifests/${image.digest}`, undefined],
    ['DELETE', `${base}/v2/app/blobs/${image.layers[0]!.digest}`, undefined],
  ];
  for (const [method, url, body] of attempts) {
    const e = await expectError(method, url, body ? { body, headers: { 'content-type': 'application/octet-stream' } } : {});
    assert.deepEqual([e.status, e.code], [405, 'UNSUPPORTED'], `${method} ${url}: ${e.text}`);
  }
  // Nothing was deleted or replaced: the cached image still serves, locally.
  assert.equal((await pullImage({ base, name: 'app' }, 'v1')).digest, image.digest);
  assert.equal((await fetchBytes(`${base}/v2/app/blobs/${fresh.config.digest}`, { method: 'HEAD' })).status, 404);
  const hubEntries = await hubWindow.entries();
  assert.deepEqual(hubEntries.map((e) => `${e.method} ${e.path} ${e.status}`), [`HEAD /v2/library/app/blobs/${fresh.config.digest} 404`], `docker.io upstream: only the HEAD above:\n${show(hubEntries)}`);
  assert.deepEqual(await ghcrWindow.entries(), [], 'ghcr.io upstream not asked');
});
