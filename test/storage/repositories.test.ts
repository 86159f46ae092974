// Repository metadata: blob links, manifest revisions, tags, referrers and the list of
// (nested) repositories, as the Repositories class and the RegistryStore over it keep them.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { test } from 'node:test';
import { Repositories } from '../../src/storage/index.js';
import { OCI_MANIFEST, parseReference } from '../../src/oci/index.js';
import { chunks, digest, fakeDigest, tempStorage } from './fixtures.js';

const record = { mediaType: OCI_MANIFEST, size: 10 };

test('tags are listed sorted, whatever order they were written in', async (t) => {
  const { storage } = await tempStorage(t);
  const repos = storage.repositories;
  for (const tag of ['b', 'a', 'Z', '10', '9', '_x', 'a.1', 'a-1']) await repos.putTag('r', tag, fakeDigest());
  assert.deepEqual(await repos.listTags('r'), ['10', '9', 'Z', '_x', 'a', 'a-1', 'a.1', 'b']);
});

test('listTags is undefined for an unknown repository and [] for one without tags', async (t) => {
  const { storage } = await tempStorage(t);
  assert.equal(await storage.repositories.listTags('nope'), undefined);
  await storage.repositories.writeBlobLink('blobs-only', fakeDigest());
  assert.deepEqual(await storage.repositories.listTags('blobs-only'), []);
});

test('a repository that only has nested repositories below it is unknown', async (t) => {
  const { storage } = await tempStorage(t);
  await storage.repositories.putTag('a/b/c', 'latest', fakeDigest());
  assert.equal(await storage.repositories.exists('a/b'), false);
  assert.equal(await storage.repositories.listTags('a'), undefined);
  assert.equal(await storage.repositories.listTags('a/b'), undefined);
  assert.deepEqual(await storage.repositories.listTags('a/b/c'), ['latest']);
});

test('a tag moved to another manifest resolves to the new one', async (t) => {
  const { storage } = await tempStorage(t);
  await storage.repositories.putTag('r', 'latest', fakeDigest('1'));
  await storage.repositories.putTag('r', 'latest', fakeDigest('2'));
  assert.equal(await storage.repositories.resolveTag('r', 'latest'), fakeDigest('2').value);
  // A fresh instance reads the same from disk (no stale cache involved).
  assert.equal(await new Repositories(storage.records, storage.layout.keys).resolveTag('r', 'latest'), fakeDigest('2').value);
});

test('deleteTag removes one tag and answers whether it existed', async (t) => {
  const { storage } = await tempStorage(t);
  await storage.repositories.putTag('r', 'a', fakeDigest());
  await storage.repositories.putTag('r', 'b', fakeDigest());
  assert.equal(await storage.repositories.deleteTag('r', 'a'), true);
  assert.equal(await storage.repositories.deleteTag('r', 'a'), false);
  assert.equal(await storage.repositories.resolveTag('r', 'a'), undefined);
  assert.deepEqual(await storage.repositories.listTags('r'), ['b']);
});

test('deleteManifest removes its tags and its referrer entry, and leaves other tags alone', async (t) => {
  const { storage } = await tempStorage(t);
  const repos = storage.repositories;
  const subject = fakeDigest('5');
  const m = fakeDigest('1');
  const other = fakeDigest('2');
  await repos.putManifest('r', m, { ...record, subject: subject.value, artifactType: 'application/vnd.example' });
  await repos.putManifest('r', other, record);
  await repos.putTag('r', 'one', m);
  await repos.putTag('r', 'also-one', m);
  await repos.putTag('r', 'two', other);
  assert.equal((await repos.listReferrers('r', subject)).length, 1);

  assert.equal(await repos.deleteManifest('r', m), true);
  assert.equal(await repos.getManifest('r', m), undefined);
  assert.deepEqual(await repos.listTags('r'), ['two']);
  assert.deepEqual(await repos.listReferrers('r', subject), []);
  assert.deepEqual(await repos.listManifests('r'), [other]);
  assert.equal(await repos.deleteManifest('r', m), false);
  assert.deepEqual(await new Repositories(storage.records, storage.layout.keys).listTags('r'), ['two']);
});

test('referrers carry the referrer descriptor with artifactType and annotations', async (t) => {
  const { storage } = await tempStorage(t);
  const subject = fakeDigest('5');
  const sig = fakeDigest('6');
  await storage.repositories.putManifest('r', sig, { ...record, subject: subject.value, artifactType: 'application/vnd.example.sig', annotations: { k: 'v' } });
  assert.deepEqual(await storage.repositories.listReferrers('r', subject), [
    { mediaType: OCI_MANIFEST, digest: sig.value, size: 10, artifactType: 'application/vnd.example.sig', annotations: { k: 'v' } },
  ]);
  assert.deepEqual(await storage.repositories.listReferrers('other', subject), []);
});

test('repositories are listed sorted, nested ones included, parents only when they have content', async (t) => {
  const { storage } = await tempStorage(t);
  const repos = storage.repositories;
  await repos.putTag('z', 'latest', fakeDigest());
  await repos.putTag('a/b/c', 'latest', fakeDigest());
  await repos.writeBlobLink('a/b', fakeDigest());
  await repos.putManifest('m/n', fakeDigest(), record);
  await repos.putTag('foo/blobs/bar', 'x', fakeDigest());
  assert.deepEqual(await repos.list(), ['a/b', 'a/b/c', 'foo/blobs/bar', 'm/n', 'z']);
});

test('blob links: link, check, unlink; repositories do not see each other\'s links', async (t) => {
  const { storage } = await tempStorage(t);
  const d = fakeDigest();
  await storage.repositories.writeBlobLink('a', d);
  await storage.repositories.writeBlobLink('a', d);
  assert.equal(await storage.repositories.hasBlobLink('a', d), true);
  assert.equal(await storage.repositories.hasBlobLink('b', d), false);
  assert.equal(await storage.repositories.removeBlobLink('a', d), true);
  assert.equal(await storage.repositories.removeBlobLink('a', d), false);
  assert.equal(await storage.repositories.hasBlobLink('a', d), false);
});

test('remove drops a whole repository and forgets its cached tags', async (t) => {
  const { storage } = await tempStorage(t);
  await storage.repositories.putTag('gone', 'latest', fakeDigest());
  await storage.repositories.putManifest('gone', fakeDigest(), record);
  await storage.repositories.remove('gone');
  assert.equal(await storage.repositories.resolveTag('gone', 'latest'), undefined);
  assert.equal(await storage.repositories.getManifest('gone', fakeDigest()), undefined);
  assert.deepEqual(await storage.repositories.list(), []);
});

test('RegistryStore: a blob is served only by repositories that link it; mount links it', async (t) => {
  const { storage } = await tempStorage(t);
  const reg = storage.registry;
  const d = digest('layer');
  await reg.putBlob('src', d, chunks('layer'), 5);
  assert.equal(await reg.statBlob('src', d), 5);
  assert.equal(await reg.statBlob('dst', d), undefined);
  assert.equal(await reg.openBlob('dst', d), undefined);
  const handle = await reg.openBlob('src', d);
  assert.equal(handle?.size, 5);
  const parts: Buffer[] = [];
  for await (const c of handle!.read({ start: 1, end: 3 })) parts.push(c as Buffer);
  assert.equal(Buffer.concat(parts).toString(), 'aye');
  assert.equal(await reg.mountBlob('dst', d, 'elsewhere'), false);
  assert.equal(await reg.mountBlob('dst', d, 'src'), true);
  assert.equal(await reg.statBlob('dst', d), 5);
  assert.equal(await reg.deleteBlob('dst', d), true);
  assert.equal(await reg.statBlob('dst', d), undefined);
  assert.equal(await reg.statBlob('src', d), 5);
  assert.equal(await reg.mountBlob('x', digest('absent')), false);
  assert.deepEqual(await readdir(storage.layout.tmpDir), []);
});

test('RegistryStore: deleting a manifest by tag removes only the tag', async (t) => {
  const { storage } = await tempStorage(t);
  const reg = storage.registry;
  const config = Buffer.from('{}');
  await reg.putBlob('r', digest(config), chunks(config));
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digest(config).value, size: 2 }, layers: [] }));
  const { digest: md } = await reg.putManifest('r', parseReference('v1', 'write'), body, OCI_MANIFEST);
  assert.equal(await reg.deleteManifest('r', parseReference('v1', 'read')), true);
  assert.equal(await reg.getManifest('r', parseReference('v1', 'read'), false), undefined);
  const byDigest = await reg.getManifest('r', parseReference(md.value, 'read'), true);
  assert.deepEqual(byDigest?.body, body);
});
