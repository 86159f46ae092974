// Garbage collection: what manifests reference is kept, what nothing references is swept
// once older than the grace period, a dry run only reports, and swept blobs leave no
// repository link behind.
import assert from 'node:assert/strict';
import { utimes } from 'node:fs/promises';
import { test } from 'node:test';
import type { GcResult, Storage } from '../../src/storage/index.js';
import { OCI_INDEX, OCI_MANIFEST, parseReference, type Digest } from '../../src/oci/index.js';
import { chunks, digest, tempStorage } from './fixtures.js';

const HOUR = 60 * 60 * 1000;

async function age(storage: Storage, d: Digest, ms = 2 * HOUR): Promise<void> {
  const when = new Date(Date.now() - ms);
  await utimes(storage.layout.blob(d), when, when);
}

async function blob(storage: Storage, name: string, content: string, algorithm: 'sha256' | 'sha512' = 'sha256'): Promise<Digest> {
  const d = digest(content, algorithm);
  await storage.registry.putBlob(name, d, chunks(content));
  return d;
}

/** Pushes an image manifest over a config and layers; returns its digest. */
async function image(storage: Storage, name: string, tag: string, config: Digest, layers: Digest[], sizes: number[]): Promise<Digest> {
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.value, size: sizes[0] },
      layers: layers.map((l, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l.value, size: sizes[i + 1] })),
    }),
  );
  return (await storage.registry.putManifest(name, parseReference(tag, 'write'), body, OCI_MANIFEST)).digest;
}

/** The counts of a result that these tests check. */
function counts(r: GcResult): { marked: number; deleted: number; deletedBytes: number; keptRecent: number } {
  return { marked: r.marked, deleted: r.deleted, deletedBytes: r.deletedBytes, keptRecent: r.keptRecent };
}

async function has(storage: Storage, d: Digest): Promise<boolean> {
  return (await storage.blobs.stat(d)) !== undefined;
}

test('an old unreferenced blob is deleted with its repository link; referenced blobs stay', async (t) => {
  const { storage } = await tempStorage(t);
  const config = await blob(storage, 'r', '{"c":1}');
  const layer = await blob(storage, 'r', 'layer bytes');
  const orphan = await blob(storage, 'r', 'nobody references me');
  const manifest = await image(storage, 'r', 'v1', config, [layer], [7, 11]);
  for (const d of [config, layer, orphan, manifest]) await age(storage, d);

  const r = await storage.gc();
  assert.deepEqual(counts(r), { marked: 3, deleted: 1, deletedBytes: 'nobody references me'.length, keptRecent: 0 });
  assert.equal(await has(storage, orphan), false);
  assert.equal(await storage.repositories.hasBlobLink('r', orphan), false);
  for (const d of [config, layer, manifest]) assert.equal(await has(storage, d), true, d.value);
  assert.equal(await storage.repositories.hasBlobLink('r', layer), true);
  const m = await storage.registry.getManifest('r', parseReference('v1', 'read'), true);
  assert.equal(m?.digest.value, manifest.value);
});

test('an unreferenced blob younger than the grace period is kept', async (t) => {
  const { storage } = await tempStorage(t);
  const fresh = await blob(storage, 'r', 'just pushed, manifest on its way');
  const r = await storage.gc();
  assert.deepEqual(counts(r), { marked: 0, deleted: 0, deletedBytes: 0, keptRecent: 1 });
  assert.equal(await has(storage, fresh), true);
  // With no grace at all, it goes.
  await age(storage, fresh, 1000);
  assert.equal((await storage.gc({ gracePeriodMs: 0 })).deleted, 1);
  assert.equal(await has(storage, fresh), false);
});

test('a dry run reports what it would delete and deletes nothing', async (t) => {
  const { storage } = await tempStorage(t);
  const orphan = await blob(storage, 'r', 'orphan');
  await age(storage, orphan);
  const r = await storage.gc({ dryRun: true });
  assert.equal(r.deleted, 1);
  assert.equal(r.deletedBytes, 6);
  assert.equal(await has(storage, orphan), true);
  assert.equal(await storage.repositories.hasBlobLink('r', orphan), true);
});

test('children of an index, and their blobs, are kept through the index', async (t) => {
  const { storage } = await tempStorage(t);
  const config = await blob(storage, 'multi', '{"arch":"amd64"}');
  const layer = await blob(storage, 'multi', 'amd64 layer');
  const child = await image(storage, 'multi', 'amd64', config, [layer], [16, 11]);
  // Untag the child: only the index still names it.
  await storage.registry.deleteManifest('multi', parseReference('amd64', 'read'));
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: child.value, size: 1 }] }));
  const { digest: indexDigest } = await storage.registry.putManifest('multi', parseReference('latest', 'write'), index, OCI_INDEX);
  for (const d of [config, layer, child, indexDigest]) await age(storage, d);
  const r = await storage.gc();
  assert.equal(r.deleted, 0);
  assert.equal(r.marked, 4);
});

test('a blob deleted from a repository but still referenced by a manifest elsewhere is kept', async (t) => {
  const { storage } = await tempStorage(t);
  const config = await blob(storage, 'a', '{}');
  const manifest = await image(storage, 'a', 'v1', config, [], [2]);
  await storage.registry.deleteBlob('a', config);
  for (const d of [config, manifest]) await age(storage, d);
  assert.equal((await storage.gc()).deleted, 0);
  assert.equal(await has(storage, config), true);
});

test('blobs of a deleted manifest become garbage', async (t) => {
  const { storage } = await tempStorage(t);
  const config = await blob(storage, 'a', '{"gone":true}');
  const manifest = await image(storage, 'a', 'v1', config, [], [13]);
  await storage.registry.deleteManifest('a', parseReference(manifest.value, 'read'));
  for (const d of [config, manifest]) await age(storage, d);
  const r = await storage.gc();
  assert.equal(r.deleted, 2);
  assert.equal(await has(storage, config), false);
  assert.equal(await has(storage, manifest), false);
});

test('sha512 manifests and blobs are marked and swept like sha256 ones', async (t) => {
  const { storage } = await tempStorage(t);
  const config = await blob(storage, 'r', '{"sha":512}', 'sha512');
  const orphan = await blob(storage, 'r', 'sha512 orphan', 'sha512');
  const body = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.value, size: 11 }, layers: [] }),
  );
  const md = digest(body, 'sha512');
  await storage.registry.putManifest('r', parseReference(md.value, 'write'), body, OCI_MANIFEST);
  for (const d of [config, orphan, md]) await age(storage, d);
  const r = await storage.gc();
  assert.equal(r.marked, 2);
  assert.equal(r.deleted, 1);
  assert.equal(await has(storage, orphan), false);
  assert.equal(await has(storage, config), true);
  assert.equal(await has(storage, md), true);
});

test('blobs the pull-through cache links are kept', async (t) => {
  const { storage } = await tempStorage(t);
  const cached = digest('cached layer');
  await storage.blobs.putBytes(cached, Buffer.from('cached layer'), { repositories: storage.cacheRepositories, name: 'docker.io/library/alpine' });
  await age(storage, cached);
  const r = await storage.gc();
  assert.equal(r.deleted, 0);
  assert.equal(await has(storage, cached), true);
});
