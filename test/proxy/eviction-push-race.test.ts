// The crane-shaped race (issue 12): an image is read through the cache port and the same bytes
// are pushed to the registry port while the store is over --max-cache-size. An eviction pass
// that chose the cached blobs before the push linked them must not delete them after: the
// manifest PUT must succeed and every blob must stay. The pass is held, deterministically,
// between its choice and its deletes (the evictor's beforeDelete pause point) while the push
// runs; a later pass that includes a newer blob proves the held pass has ended before the
// manifest is put. Many iterations under REGCACHE_LONG=1 (npm run test:long), a few otherwise.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { fetchBytes, pushBlob, pushImage, randomImage, sha256, type Blob } from '../helpers/upstream-images.js';
import { startCache } from './support.js';

const ITERATIONS = process.env.REGCACHE_LONG ? 60 : 3;

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

function blobPath(storage: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(storage, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

test(`a blob the cache serves and a push links while an eviction pass is under way stays, and the manifest PUT succeeds (${ITERATIONS} iterations)`, async (t) => {
  // The upstream: regcache's own registry port.
  const upstream = await startCache(t, {});
  /** The pass is held at its first blob once armed; `watch` tells when a pass reaches a given blob. */
  let gate: { reached: Deferred; release: Deferred } | undefined;
  let watch: { digest: string; seen: Deferred } | undefined;
  const cache = await startCache(t, {
    upstreams: [`docker.io=${upstream.registryUrl}`],
    // Over the bound with any cached blob: every cached blob the pass finds is one it chooses.
    maxCacheBytes: 1,
    evictionBeforeDelete: async (digest) => {
      if (watch?.digest === digest) watch.seen.resolve();
      const g = gate;
      if (!g) return;
      gate = undefined;
      g.reached.resolve();
      await g.release.promise;
    },
  });
  const storage = join(cache.dir, 'storage');

  for (let i = 0; i < ITERATIONS; i++) {
    const image = randomImage({ layers: 1, layerSize: 256 * 1024 });
    await pushImage(upstream.registryUrl, `library/mid${i}`, 'v1', image);
    const later: Blob = randomImage({ layers: 0 }).config;
    await pushBlob(upstream.registryUrl, `library/later${i}`, later);

    // The config is read through the cache: its fill ends with an eviction pass, held at its first blob.
    const g = (gate = { reached: deferred(), release: deferred() });
    const config = await fetchBytes(`${cache.cacheUrl}/v2/mid${i}/blobs/${image.config.digest}`);
    assert.equal(config.status, 200);
    await g.reached.promise;
    // The layer too (its pass waits for the held one), then both are pushed to the registry port:
    // the upload of each finds the cached file and links it.
    const layer = await fetchBytes(`${cache.cacheUrl}/v2/mid${i}/blobs/${image.layers[0]!.digest}`);
    assert.equal(sha256(layer.body), image.layers[0]!.digest);
    await pushBlob(cache.registryUrl, `pushed/img${i}`, { ...image.config, data: config.body });
    await pushBlob(cache.registryUrl, `pushed/img${i}`, { ...image.layers[0]!, data: layer.body });
    // The held pass goes on; a blob cached after it started is seen only by a later pass.
    const w = (watch = { digest: later.digest, seen: deferred() });
    g.release.resolve();
    assert.equal((await fetchBytes(`${cache.cacheUrl}/v2/later${i}/blobs/${later.digest}`)).status, 200);
    await w.seen.promise;

    const put = await request(`${cache.registryUrl}/v2/pushed/img${i}/manifests/v1`, {
      method: 'PUT',
      body: image.manifest,
      headers: { 'content-type': image.mediaType },
    });
    const answer = await put.body.text();
    assert.equal(put.statusCode, 201, `iteration ${i}: manifest PUT answered ${put.statusCode} ${answer}`);
    for (const b of image.blobs) {
      assert.ok(existsSync(blobPath(storage, b.digest)), `iteration ${i}: ${b.digest} left the store`);
      const got = await fetchBytes(`${cache.registryUrl}/v2/pushed/img${i}/blobs/${b.digest}`);
      assert.equal(got.status, 200);
      assert.equal(sha256(got.body), b.digest);
    }
  }
});
