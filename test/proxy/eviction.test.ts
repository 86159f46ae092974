// --max-cache-size: the least recently used cached blobs go first, blobs being served or
// referenced by a pushed (:5000) image stay, and the cache ends at most at its bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startDistribution } from '../helpers/distribution.js';
import { skipUnless } from '../helpers/tools.js';
import { tempDir } from '../helpers/proc.js';
import { fetchBytes, pushImage, randomImage, sha256 } from '../helpers/upstream-images.js';
import { startServer } from '../../src/server/index.js';

const MiB = 1024 * 1024;

function blobPath(storage: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(storage, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

test('the cache evicts least recently used blobs beyond --max-cache-size, never a pushed image\'s', { skip: skipUnless(['docker-registry']) }, async (t) => {
  const upstream = await startDistribution();
  t.after(() => upstream.stop());
  const dir = await tempDir('rc-evict-', t);
  // Three one-layer images of 1 MiB layers; img0's is also pushed, the bound holds one more.
  const images = [randomImage({ layers: 1, layerSize: MiB }), randomImage({ layers: 1, layerSize: MiB }), randomImage({ layers: 1, layerSize: MiB })];
  for (const [i, img] of images.entries()) await pushImage(upstream.url, `library/img${i}`, 'v1', img);
  const server = await startServer({
    registryAddr: '127.0.0.1:0',
    cacheAddr: '127.0.0.1:0',
    storage: dir.path,
    upstreams: [`docker.io=${upstream.url}`],
    maxCacheBytes: 1.5 * MiB,
    logLevel: 'silent',
  });
  t.after(() => server.close());

  // img0's layer is also part of an image pushed to the registry port.
  await pushImage(server.registryUrl, 'pushed/app', 'v1', images[0]!);

  for (const [i, img] of images.entries()) {
    for (const b of img.blobs) {
      const got = await fetchBytes(`${server.cacheUrl}/v2/img${i}/blobs/${b.digest}`);
      assert.equal(got.status, 200);
      assert.equal(sha256(got.body), b.digest);
    }
    await new Promise((r) => setTimeout(r, 20)); // distinct use times
  }
  // Eviction runs after each fill; wait until img1's layer is gone.
  const img1Layer = blobPath(dir.path, images[1]!.layers[0]!.digest);
  for (let i = 0; i < 100 && existsSync(img1Layer); i++) await new Promise((r) => setTimeout(r, 50));

  // img1 was the least recently used blob the cache owned alone: gone from disk.
  assert.equal(existsSync(blobPath(dir.path, images[1]!.layers[0]!.digest)), false);
  // img0's layer was older still, but a pushed image references it: not the cache's to evict.
  assert.equal(existsSync(blobPath(dir.path, images[0]!.layers[0]!.digest)), true);
  // The newest stays cached.
  assert.equal(existsSync(blobPath(dir.path, images[2]!.layers[0]!.digest)), true);
  // The pushed image is whole on the registry port.
  const pulled = await fetchBytes(`${server.registryUrl}/v2/pushed/app/blobs/${images[0]!.layers[0]!.digest}`);
  assert.equal(pulled.status, 200);
});
