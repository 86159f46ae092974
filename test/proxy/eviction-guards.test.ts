// The guarantees of --max-cache-size that a deliberate bug in src/proxy/eviction.ts or in the
// lifetime owner's sweep (src/storage/blob-lifetime.ts) must break (issue 15):
// - a blob the cache pulled FIRST and a push then linked (and a manifest referenced) is pushed
//   content: never evicted, however old its last use;
// - a blob a client is still reading stays while a pass runs;
// - a pass starts only above the bound (a store exactly at it is left alone) and then goes down
//   to 90% of it, not merely to the bound.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fetchBytes, pushBlob, pushImage, randomImage, sha256 } from '../helpers/upstream-images.js';
import { startCache } from './support.js';
import { CacheEvictor } from '../../src/proxy/index.js';
import { chunks, digest, tempStorage } from '../storage/fixtures.js';

const MiB = 1024 * 1024;

function blobPath(storage: string, d: string): string {
  const hex = d.slice('sha256:'.length);
  return join(storage, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

/** Waits (generously) until `cond` holds: passes run in the background after each fill. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 800 && !cond(); i++) await sleep(25);
  assert.ok(cond(), `timed out waiting until ${what}`);
}

test('a blob the cache pulled first and a push then referenced is never evicted', async (t) => {
  const upstream = await startCache(t, {});
  const images = [0, 1, 2].map(() => randomImage({ layers: 1, layerSize: MiB }));
  for (const [i, img] of images.entries()) await pushImage(upstream.registryUrl, `library/img${i}`, 'v1', img);
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.registryUrl}`], maxCacheBytes: 1.5 * MiB });
  const storage = join(cache.dir, 'storage');
  const [first, second, third] = images.map((img) => img.layers[0]!.digest) as [string, string, string];

  // The cache pulls img0's layer first: a cached blob, the least recently used from now on.
  assert.equal(sha256((await fetchBytes(`${cache.cacheUrl}/v2/img0/blobs/${first}`)).body), first);
  await sleep(20);
  // Then the same image is pushed to the registry port: its upload finds the cached file and links it.
  await pushImage(cache.registryUrl, 'pushed/app', 'v1', images[0]!);
  for (const d of [second, third]) {
    await sleep(20);
    assert.equal((await fetchBytes(`${cache.cacheUrl}/v2/img${d === second ? 1 : 2}/blobs/${d}`)).status, 200);
  }
  // Over the bound: a pass takes the least recently used blob the cache owns alone.
  await until(() => !existsSync(blobPath(storage, second)) || !existsSync(blobPath(storage, first)), 'a pass evicted a layer');
  assert.ok(existsSync(blobPath(storage, first)), 'the pushed layer was evicted');
  assert.equal(existsSync(blobPath(storage, second)), false, 'img1, the oldest blob only the cache holds, stays');
  const pulled = await fetchBytes(`${cache.registryUrl}/v2/pushed/app/blobs/${first}`);
  assert.equal(pulled.status, 200);
  assert.equal(sha256(pulled.body), first);
});

test('a blob a client is still reading stays while an eviction pass runs', async (t) => {
  const upstream = await startCache(t, {});
  const big = randomImage({ layers: 1, layerSize: 16 * MiB }).layers[0]!;
  const small = randomImage({ layers: 1, layerSize: MiB }).layers[0]!;
  const newer = randomImage({ layers: 1, layerSize: 4 * MiB }).layers[0]!;
  for (const [name, b] of [['big', big], ['small', small], ['newer', newer]] as const) await pushBlob(upstream.registryUrl, `library/${name}`, b);
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.registryUrl}`], maxCacheBytes: 18 * MiB });
  const storage = join(cache.dir, 'storage');

  assert.equal(sha256((await fetchBytes(`${cache.cacheUrl}/v2/big/blobs/${big.digest}`)).body), big.digest);
  // A client that reads the first bytes of the stored blob and then stops reading: the server
  // holds the blob's file open, with far more left to send than socket buffers take.
  const { port } = new URL(cache.cacheUrl);
  const reader = connect(Number(port), '127.0.0.1');
  const firstBytes = new Promise<void>((resolve, reject) => {
    reader.once('data', () => {
      reader.pause();
      resolve();
    });
    reader.once('error', reject);
  });
  reader.write(`GET /v2/big/blobs/${big.digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  await firstBytes;

  await sleep(20);
  assert.equal((await fetchBytes(`${cache.cacheUrl}/v2/small/blobs/${small.digest}`)).status, 200);
  await sleep(20);
  // 21 MiB cached, bound 18 MiB: the pass goes for the least recently used, the big blob, first.
  assert.equal((await fetchBytes(`${cache.cacheUrl}/v2/newer/blobs/${newer.digest}`)).status, 200);
  try {
    await until(() => !existsSync(blobPath(storage, small.digest)) || !existsSync(blobPath(storage, big.digest)), 'a pass evicted a blob');
    assert.ok(existsSync(blobPath(storage, big.digest)), 'the blob being read was evicted');
    assert.equal(existsSync(blobPath(storage, small.digest)), false, 'the pass took the next least recently used blob instead');
  } finally {
    // The server drains in-flight answers on close: this one must end first.
    reader.destroy();
  }
});

/** A store whose cache holds `sizes.length` blobs of those sizes, used in that order (oldest first). */
async function cachedBlobs(t: Parameters<typeof tempStorage>[0], sizes: number[]) {
  const { storage } = await tempStorage(t);
  const evictor = new CacheEvictor(storage.blobs, storage.cacheRepositories, storage.repositories, sizes.reduce((a, b) => a + b, 0));
  const digests = [];
  for (const [i, size] of sizes.entries()) {
    const data = Buffer.alloc(size, i + 1);
    const d = digest(data);
    const writer = await storage.blobs.createWriter('sha256', size);
    await writer.write(chunks(data));
    await writer.commit(d, size, { repositories: storage.cacheRepositories, name: `docker.io/library/b${i}` });
    evictor.touch(d.value);
    await sleep(2);
    digests.push(d);
  }
  return { storage, digests, evictor };
}

test('a store exactly at the bound is left alone; one byte over, a pass goes down to 90% of the bound', async (t) => {
  const sizes = Array.from({ length: 10 }, () => 1000);
  const { storage, digests, evictor } = await cachedBlobs(t, sizes);
  assert.equal(evictor.maxBytes, 10_000);
  const atBound = await evictor.evict();
  assert.deepEqual(atBound, { cachedBytes: 10_000, evicted: 0, evictedBytes: 0, kept: 0 });
  for (const d of digests) assert.notEqual(await storage.blobs.stat(d), undefined);

  // One byte more, used last: 10 001 bytes. Down to 9 000 at most takes the two oldest blobs.
  const extra = digest('x');
  await storage.blobs.putBytes(extra, Buffer.from('x'), { repositories: storage.cacheRepositories, name: 'docker.io/library/extra' });
  evictor.touch(extra.value);
  const over = await evictor.evict();
  assert.deepEqual(over, { cachedBytes: 8_001, evicted: 2, evictedBytes: 2_000, kept: 0 });
  assert.ok(over.cachedBytes <= 0.9 * evictor.maxBytes);
  assert.equal(await storage.blobs.stat(digests[0]!), undefined);
  assert.equal(await storage.blobs.stat(digests[1]!), undefined);
  for (const d of [...digests.slice(2), extra]) assert.notEqual(await storage.blobs.stat(d), undefined, d.value);
  assert.equal(await storage.cacheRepositories.hasBlobLink('docker.io/library/b0', digests[0]!), false);
});
