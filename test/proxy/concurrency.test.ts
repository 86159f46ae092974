// Ten concurrent pulls of one image by independent HTTP clients (each its own undici Agent,
// so its own connections, as ten CI jobs would be): the upstream (distribution 2.8) must see
// each blob GET exactly once and the manifest GET once, and every client must receive the
// right bytes. Likewise against a bearer-token upstream (one token per repository scope), and
// a client that goes away mid-blob does not abort the download into the cache.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Agent } from 'undici';
import { request } from 'undici';
import { startDistribution } from '../helpers/distribution.js';
import { startTokenIssuer } from '../helpers/token-issuer.js';
import { getBlob, pullImage, seedImage, sha256 } from '../helpers/upstream-images.js';
import { waitFor } from '../helpers/proc.js';
import { parseDigest } from '../../src/oci/index.js';
import { skipUnless } from '../helpers/tools.js';
import type { StatsSnapshot } from '../../src/stats/index.js';
import { cleanup, getJson, logWindow, matching, show, startCache } from './support.js';

const skip = skipUnless(['docker-registry']);
const CLIENTS = 10;

test('10 concurrent pulls by independent clients: each blob is fetched upstream exactly once', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution());
  const image = await seedImage(upstream.url, 'library/big', 'v1', { layers: 3, layerSize: 3 * 1024 * 1024 });
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });
  const agents = Array.from({ length: CLIENTS }, () => new Agent({ connections: 2 }));
  t.after(() => Promise.all(agents.map((a) => a.close())).then(() => {}));
  const window = await logWindow(upstream);

  const pulls = await Promise.all(agents.map((dispatcher) => pullImage({ base: cache.cacheUrl, name: 'big', dispatcher }, 'v1')));

  for (const pulled of pulls) {
    assert.equal(pulled.digest, image.digest);
    assert.equal(pulled.blobs.size, image.blobs.length);
    // pullImage already checked each blob's sha256; compare bytes as well.
    for (const b of image.blobs) assert.ok(pulled.blobs.get(b.digest)!.equals(b.data), `blob ${b.digest}`);
  }
  const entries = await window.entries();
  assert.equal(matching(entries, 'GET', '/manifests/v1').length, 1, show(entries));
  for (const b of image.blobs) assert.equal(matching(entries, 'GET', `/blobs/${b.digest}`).length, 1, `${b.digest} fetched once:\n${show(entries)}`);
  assert.equal(entries.length, 1 + image.blobs.length, show(entries));

  const repo = (await getJson<StatsSnapshot>(`${cache.cacheUrl}/_regcache/stats`)).repositories['docker.io/library/big']!;
  assert.equal(repo.blobMisses + repo.blobHits, CLIENTS * image.blobs.length, 'every blob request counted once');
  assert.equal(repo.blobMisses - repo.blobJoins, image.blobs.length, 'one upstream download per blob by the counters too');
  const size = image.manifest.byteLength + image.blobs.reduce((n, b) => n + b.size, 0);
  assert.equal(repo.bytesFetched, size, 'bytes fetched = the image size (manifest and blobs), once');
});

test('10 concurrent clients pulling two images from a bearer upstream: one token per scope, each blob once', { skip }, async (t) => {
  const issuer = cleanup(t, await startTokenIssuer());
  const upstream = cleanup(t, await startDistribution({ token: issuer.distribution }));
  const images = [
    await seedImage(upstream.url, 'library/one', 'v1', { layers: 2, layerSize: 1024 * 1024, authorization: issuer.pushAuthorization('library/one') }),
    await seedImage(upstream.url, 'library/two', 'v1', { layers: 2, layerSize: 1024 * 1024, authorization: issuer.pushAuthorization('library/two') }),
  ];
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });
  const agents = Array.from({ length: CLIENTS }, () => new Agent({ connections: 2 }));
  t.after(() => Promise.all(agents.map((a) => a.close())).then(() => {}));
  const window = await logWindow(upstream);

  const pulls = await Promise.all(agents.map((dispatcher, i) => pullImage({ base: cache.cacheUrl, name: i % 2 === 0 ? 'one' : 'two', dispatcher }, 'v1')));
  pulls.forEach((p, i) => assert.equal(p.digest, images[i % 2]!.digest));

  assert.deepEqual(issuer.requests().map((r) => r.scopes.join(' ')).sort(), ['repository:library/one:pull', 'repository:library/two:pull']);
  const entries = (await window.entries()).filter((e) => e.status === 200);
  for (const image of images) {
    for (const b of image.blobs) assert.equal(matching(entries, 'GET', `/blobs/${b.digest}`).length, 1, `${b.digest} fetched once:\n${show(entries)}`);
  }
  assert.equal(entries.length, images.length * 3 + images.length, show(entries));
});

test('a client that disconnects mid-blob does not abort the fill: the blob lands in the store', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution());
  const image = await seedImage(upstream.url, 'library/big', 'v1', { layers: 1, layerSize: 24 * 1024 * 1024 });
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });
  const [layer] = image.layers;
  const statsUrl = `${cache.cacheUrl}/_regcache/stats`;

  const agent = new Agent();
  const res = await request(`${cache.cacheUrl}/v2/big/blobs/${layer!.digest}`, { dispatcher: agent });
  assert.equal(res.statusCode, 200);
  for await (const _chunk of res.body) break; // one chunk, then hang up
  await agent.destroy();

  // The fill goes on without the client: the blob lands in the store (a blob file appears only
  // once it is whole and verified, by rename), and its bytes are the layer's.
  const d = parseDigest(layer!.digest);
  await waitFor(async () => (await cache.server.storage.blobs.stat(d)) !== undefined, { what: 'the blob to land in the store after the client left', timeoutMs: 30_000 });
  const fh = await cache.server.storage.blobs.openFile(d);
  assert.ok(fh, 'the store opens the blob');
  let stored: Buffer;
  try {
    stored = await fh.readFile();
  } finally {
    await fh.close();
  }
  assert.equal(stored.byteLength, layer!.size);
  assert.equal(sha256(stored), layer!.digest, 'the stored bytes are the layer\'s');
  assert.ok((await getJson<StatsSnapshot>(statsUrl)).repositories['docker.io/library/big']!.bytesFetched >= layer!.size, 'the whole blob was fetched');
  const window = await logWindow(upstream);
  const data = await getBlob({ base: cache.cacheUrl, name: 'big' }, layer!.digest);
  assert.equal(data.byteLength, layer!.size);
  const entries = await window.entries();
  assert.deepEqual(entries, [], `served from the store:\n${show(entries)}`);
  const upstreamGets = matching(await upstream.accessLog(), 'GET', `/blobs/${layer!.digest}`);
  assert.equal(upstreamGets.length, 1, 'the blob was fetched upstream once in all');
});
