// Images pushed to the :5000 registry across runs (issue 5, the `persist-registry` input): the
// real bundled Action on fresh runners, pushes and pulls over HTTP on the registry port.
//   - persist-registry: true: a pushed image comes back in the next job, its layers from its
//     pack, and that job uploads nothing (nothing new);
//   - an image built on a pulled one: the layers both hold stay in the cache's pack;
//   - persist-registry: false (the default): pushed images are not saved, the cache's layers are;
//   - an evicted pack under a :5000 tag: that image answers MANIFEST_UNKNOWN (a clean error, at
//     once), the other pushed image restores whole, and the next index no longer carries the tag.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { ActionsCacheService } from '../helpers/actions-cache-service.js';
import type { Distribution } from '../helpers/distribution.js';
import { skipUnless } from '../helpers/tools.js';
import { fetchBytes, pullImage, pushImage, randomImage, seedImage, type TestImage } from '../helpers/upstream-images.js';
import { packKey } from '../../src/persist/index.js';
import { formatBytes } from '../../src/action/summary/index.js';
import { parseSummary } from '../helpers/summary-markdown.js';
import { blobGets, createdIndexes, createdPacks, lookupsOf, pullThroughCache, restoredIndex, serverStats, startJob, type JobOptions, type JobRun, persistWorld } from './support.js';

const skip = skipUnless(['docker-registry', 'zstd']);

interface Fixture {
  dir: string;
  svc: ActionsCacheService;
  upstream: Distribution;
}

async function fixture(t: TestContext): Promise<Fixture> {
  const { dir, svc, upstream } = await persistWorld(t);
  return { dir: dir.path, svc, upstream };
}

/** A job (save: true) whose work gets the registry port's URL and the cache port's. */
async function job(t: TestContext, f: Fixture, n: number, inputs: Record<string, string>, work: (registryUrl: string, cacheUrl: string) => Promise<unknown>): Promise<JobRun> {
  const o: JobOptions = { svc: f.svc, upstream: f.upstream, dir: join(f.dir, `run${n}`), runner: { runId: n }, inputs: { save: 'true', ...inputs } };
  const started = await startJob(t, o);
  const registryUrl = started.main.outputs['registry-url'];
  assert.ok(registryUrl, `main set registry-url\n${started.main.stdout}`);
  await work(registryUrl, started.cacheUrl);
  return started.finish();
}

/** The pack of a pushed image: its layers (its config travels inline in the index). */
const packOf = (image: TestImage) => packKey('regcache', image.layers.map((l) => l.digest));

/** A GET (or HEAD) and how long it took. */
async function timed(url: string, method: 'GET' | 'HEAD' = 'GET') {
  const t0 = Date.now();
  const r = await fetchBytes(url, { method, headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  return { ...r, ms: Date.now() - t0, code: method === 'GET' ? (JSON.parse(r.body.toString('utf8') || '{}') as { errors?: Array<{ code: string }> }).errors?.[0]?.code : undefined };
}

test('persist-registry: true: an image pushed to :5000 is served by the next job, its layers from its pack, and nothing is uploaded again', { skip, timeout: 120_000 }, async (t) => {
  const f = await fixture(t);
  const image = randomImage({ layers: 3 });
  const first = await job(t, f, 1, { 'persist-registry': 'true' }, (registry) => pushImage(registry, 'team/app', 'v1', image));
  assert.deepEqual(createdPacks(first).map((e) => e.key), [packOf(image)], 'one pack: the pushed layers');
  assert.equal(createdIndexes(first).length, 1);

  const second = await job(t, f, 2, { 'persist-registry': 'true' }, async (registry) => {
    const pulled = await pullImage({ base: registry, name: 'team/app' }, 'v1');
    assert.equal(pulled.digest, image.digest, 'the tag names the pushed manifest');
    assert.deepEqual([...pulled.blobs.keys()].sort(), image.blobs.map((b) => b.digest).sort(), 'every blob, each checked against its digest');
    const tags = await fetchBytes(`${registry}/v2/team/app/tags/list`);
    assert.deepEqual(JSON.parse(tags.body.toString('utf8')), { name: 'team/app', tags: ['v1'] });
  });
  const persist = (await serverStats(second)).extras.persist as Record<string, number>;
  assert.equal(persist.packsRestored, 1);
  assert.equal(persist.blobsRestored, image.layers.length);
  assert.deepEqual(blobGets(second.upstream), [], 'nothing came from the upstream');
  assert.deepEqual(second.created, [], 'nothing new: no pack, no index uploaded');
  assert.equal(second.persistence['Pushed images restored (persist-registry)'], '1 tag, 1 manifest');
  const row = parseSummary(second.post.summary).tables[0]?.rows.find((r) => r[0]!.endsWith('/team/app'));
  assert.ok(row, `the summary has a row for the image pulled from :5000:\n${second.post.summary}`);
  assert.deepEqual(row.slice(1), ['v1', image.digest.slice(0, 19), 'Actions cache', formatBytes(image.manifest.byteLength + image.blobs.reduce((a, b) => a + b.size, 0)), '0 B'], 'restored from the Actions cache, every byte');
});

test("a pushed image built on a pulled one: the shared layers stay in the cache's pack, the pushed pack holds the rest, the next job restores both", { skip, timeout: 120_000 }, async (t) => {
  const f = await fixture(t);
  const base = await seedImage(f.upstream.url, 'library/base', 'v1', { layers: 2 });
  const built = randomImage({ baseLayers: base.layers, layers: 1 });
  const inputs = { 'persist-registry': 'true' };
  const first = await job(t, f, 1, inputs, async (registry, cache) => {
    await pullThroughCache(cache, [{ name: 'library/base', reference: 'v1', image: base }]);
    await pushImage(registry, 'team/app', 'v1', built);
  });
  const basePack = packKey('regcache', base.layers.map((l) => l.digest));
  const ownPack = packKey('regcache', built.layers.slice(base.layers.length).map((l) => l.digest));
  assert.deepEqual(createdPacks(first).map((e) => e.key).sort(), [basePack, ownPack].sort(), "the base's pack has the key it has without persist-registry");

  const second = await job(t, f, 2, inputs, async (registry) => {
    const pulled = await pullImage({ base: registry, name: 'team/app' }, 'v1');
    assert.equal(pulled.digest, built.digest);
    assert.equal(pulled.blobs.size, built.blobs.length);
  });
  assert.equal(((await serverStats(second)).extras.persist as Record<string, number>).packsRestored, 2);
  assert.deepEqual(blobGets(second.upstream), []);
  assert.deepEqual(second.created, [], 'nothing new');
});

test('persist-registry: false (the default): pushed images are not saved, the layers pulled through the cache are', { skip, timeout: 120_000 }, async (t) => {
  const f = await fixture(t);
  const upstreamImage = await seedImage(f.upstream.url, 'library/base', 'v1', { layers: 2 });
  const pushed = randomImage({ layers: 2 });
  const first = await job(t, f, 1, {}, async (registry, cache) => {
    await pullThroughCache(cache, [{ name: 'library/base', reference: 'v1', image: upstreamImage }]);
    await pushImage(registry, 'team/app', 'v1', pushed);
  });
  assert.deepEqual(createdPacks(first).map((e) => e.key), [packKey('regcache', upstreamImage.layers.map((l) => l.digest))], "only the cache's layers were packed");

  const second = await job(t, f, 2, { 'persist-registry': 'true' }, async (registry) => {
    const r = await timed(`${registry}/v2/team/app/manifests/v1`);
    assert.equal(r.status, 404);
    assert.equal(r.code, 'MANIFEST_UNKNOWN');
  });
  const index = (await restoredIndex(second)) as { registry?: unknown; packs: Record<string, unknown> };
  assert.equal(index.registry, undefined, 'the index carries no registry part');
  assert.deepEqual(Object.keys(index.packs), [packKey('regcache', upstreamImage.layers.map((l) => l.digest))]);
});

test('an evicted pack under a :5000 tag: that image answers MANIFEST_UNKNOWN at once, the other restores, the tag leaves the index', { skip, timeout: 150_000 }, async (t) => {
  const f = await fixture(t);
  const x = randomImage({ layers: 2 });
  const y = randomImage({ layers: 3 });
  const inputs = { 'persist-registry': 'true' };
  const first = await job(t, f, 1, inputs, async (registry) => {
    await pushImage(registry, 'team/x', 'v1', x);
    await pushImage(registry, 'team/y', 'v1', y);
  });
  assert.deepEqual(createdPacks(first).map((e) => e.key).sort(), [packOf(x), packOf(y)].sort(), 'a pack per pushed repository');
  await f.svc.evict(packOf(x));

  const second = await job(t, f, 2, inputs, async (registry) => {
    const head = await timed(`${registry}/v2/team/x/manifests/v1`, 'HEAD');
    assert.equal(head.status, 404, 'HEAD of the tag whose layers were evicted');
    for (const reference of ['v1', x.digest]) {
      const r = await timed(`${registry}/v2/team/x/manifests/${reference}`);
      assert.equal(r.status, 404, `GET x:${reference}: ${r.body.toString('utf8')}`);
      assert.equal(r.code, 'MANIFEST_UNKNOWN');
      assert.ok(r.ms < 10_000, `answered in ${r.ms} ms`);
    }
    // Its config travelled inline in the index (and is served); its layers are gone.
    for (const b of x.layers) {
      const r = await timed(`${registry}/v2/team/x/blobs/${b.digest}`);
      assert.equal(r.status, 404, `blob ${b.digest} of x: ${r.body.toString('utf8')}`);
      assert.equal(r.code, 'BLOB_UNKNOWN');
    }
    const tags = await fetchBytes(`${registry}/v2/team/x/tags/list`);
    assert.deepEqual((JSON.parse(tags.body.toString('utf8')) as { tags: string[] }).tags, [], 'the tag is gone');
    const pulled = await pullImage({ base: registry, name: 'team/y' }, 'v1');
    assert.equal(pulled.digest, y.digest);
    assert.equal(pulled.blobs.size, y.blobs.length, "y restored whole (every blob checked against its digest)");
  });
  assert.deepEqual(lookupsOf(second.requests, packOf(x)), [{ hit: false }], 'the evicted pack was looked up once');
  const persist = (await serverStats(second)).extras.persist as Record<string, number>;
  assert.equal(persist.packsMissing, 1);
  assert.equal(persist.packsRestored, 1);
  assert.equal(createdPacks(second).length, 0, "x's layers are nowhere to pack again");
  assert.equal(createdIndexes(second).length, 1, 'an index without the evicted pack');

  const third = await job(t, f, 3, inputs, async (registry) => {
    const r = await timed(`${registry}/v2/team/x/manifests/v1`);
    assert.equal(r.code, 'MANIFEST_UNKNOWN');
    assert.equal((await pullImage({ base: registry, name: 'team/y' }, 'v1')).digest, y.digest);
  });
  const index = (await restoredIndex(third)) as { registry?: { tags: Record<string, unknown>; manifests: Record<string, unknown> }; packs: Record<string, unknown> };
  assert.deepEqual(index.registry?.tags, { 'team/y': { v1: y.digest } }, "the index no longer carries x's tag");
  assert.deepEqual(Object.keys(index.registry?.manifests ?? {}), ['team/y']);
  assert.ok(!(packOf(x) in index.packs));
  assert.deepEqual(lookupsOf(third.requests, packOf(x)), [], 'nor looks the evicted pack up again');
  assert.equal(third.persistence['Pushed images restored (persist-registry)'], '1 tag, 1 manifest');
});
