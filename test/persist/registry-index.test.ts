// The index's registry part keeps only what can be served whole (pushed content is complete):
// pruning after a pack left the index, and the merge of registry parts.
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { emptyIndex, mergeIndex, pruneRegistry, type PersistIndex } from '../../src/persist/index.js';
import { randomIndex, randomImage, type TestImage } from '../helpers/upstream-images.js';

const inline = (m: { manifest: Buffer; mediaType: string }) => ({ mediaType: m.mediaType, body: m.manifest.toString('base64') });

/** An index whose registry holds `images` in `repo` (each tagged by its name), layers in one pack per image, configs inline. */
function indexOf(repo: string, images: Record<string, TestImage>): PersistIndex {
  const index = emptyIndex();
  index.registry = { tags: { [repo]: {} }, manifests: { [repo]: {} }, blobs: { [repo]: [] } };
  for (const [tag, image] of Object.entries(images)) {
    index.registry.tags[repo]![tag] = image.digest;
    index.registry.manifests[repo]![image.digest] = inline(image);
    index.registry.blobs[repo]!.push(...image.blobs.map((b) => b.digest));
    index.inline[image.config.digest] = image.config.data.toString('base64');
    index.packs[`rc-pack-${tag}`] = { digests: image.layers.map((l) => l.digest), size: 1 };
  }
  return index;
}

test('a pushed image whose pack left the index leaves it too, with its tag and the multi-platform index naming it', () => {
  const multi = randomIndex([
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);
  const [amd64, arm64] = multi.children as [TestImage, TestImage];
  const other = randomImage();
  const index = indexOf('team/app', { amd64, arm64, other });
  index.registry!.manifests['team/app']![multi.digest] = inline(multi);
  index.registry!.tags['team/app']!.latest = multi.digest;
  delete index.packs['rc-pack-arm64'];

  const pruned = pruneRegistry(index);
  assert.deepEqual(pruned.registry!.tags['team/app'], { amd64: amd64.digest, other: other.digest });
  assert.deepEqual(Object.keys(pruned.registry!.manifests['team/app']!).sort(), [amd64.digest, other.digest].sort(), 'arm64 and the index naming it are gone');
  assert.ok(!pruned.registry!.blobs['team/app']!.some((b) => arm64.layers.some((l) => l.digest === b)), "arm64's layers are no longer listed");
});

test('an index whose registry part is entirely gone has no registry part (equal to one that never had)', () => {
  const image = randomImage();
  const index = indexOf('team/app', { v1: image });
  delete index.packs['rc-pack-v1'];
  for (const b of image.blobs) delete index.inline[b.digest];
  assert.equal(pruneRegistry(index).registry, undefined);
});

test("merging registry parts: the newer tag wins, manifests and blobs are a union, the cache's repositories are apart", () => {
  const [one, two] = [randomImage(), randomImage()];
  const older = indexOf('team/app', { v1: one });
  const newer = indexOf('team/app', { v1: two });
  newer.tags['team/app'] = { v1: one.digest };
  const merged = mergeIndex(older, newer);
  assert.deepEqual(merged.registry!.tags['team/app'], { v1: two.digest });
  assert.deepEqual(Object.keys(merged.registry!.manifests['team/app']!).sort(), [one.digest, two.digest].sort());
  assert.deepEqual(merged.tags, { 'team/app': { v1: one.digest } }, "a cache repository of the same name is another repository");
});

test("a BuildKit cache index (cache-to type=registry: an index of layer and cache-config blobs) is kept while a pack holds its blobs", () => {
  const digest = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
  const [layer, config] = [digest('layer'), digest('cache config')];
  const body = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer, size: 5 },
      { mediaType: 'application/vnd.buildkit.cacheconfig.v0', digest: config, size: 12 },
    ],
  }));
  const cacheDigest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  const index = emptyIndex();
  index.registry = {
    tags: { 'team/cache': { main: cacheDigest } },
    manifests: { 'team/cache': { [cacheDigest]: { mediaType: 'application/vnd.oci.image.index.v1+json', body: body.toString('base64') } } },
    blobs: { 'team/cache': [layer, config] },
  };
  index.packs['rc-pack-cache'] = { digests: [layer, config], size: 17 };
  // Its entries are blobs, as the registry checked them on push: not child manifests that are missing.
  assert.deepEqual(pruneRegistry(index).registry!.tags['team/cache'], { main: cacheDigest });
  delete index.packs['rc-pack-cache'];
  assert.equal(pruneRegistry(index).registry, undefined, 'and leaves once its blobs are gone');
});
