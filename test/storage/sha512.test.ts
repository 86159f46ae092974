// sha512 content end to end through the storage layer: blob writer, repository-scoped
// blobs, mounts, manifests pushed and read by their sha512 digest, and referrers of them.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { DigestMismatchError } from '../../src/storage/index.js';
import { OCI_MANIFEST, parseReference } from '../../src/oci/index.js';
import { bytes, chunks, digest, tempStorage } from './fixtures.js';

test('a sha512 blob is written, verified and stored under blobs/sha512/', async (t) => {
  const { storage } = await tempStorage(t);
  const data = bytes(100_000, 21);
  const d = digest(data, 'sha512');
  const w = await storage.blobs.createWriter('sha512');
  await w.write(chunks(data.subarray(0, 99), data.subarray(99)));
  assert.deepEqual(await w.commit(d, data.length), { digest: d, size: data.length });
  assert.equal(storage.layout.blob(d), `${storage.layout.blobsDir}/sha512/${d.hex.slice(0, 2)}/${d.hex}`);
  assert.deepEqual(await readFile(storage.layout.blob(d)), data);
});

test('a sha512 writer refuses content that has another sha512', async (t) => {
  const { storage } = await tempStorage(t);
  const w = await storage.blobs.createWriter('sha512');
  await w.write(chunks('one'));
  await assert.rejects(w.commit(digest('two', 'sha512')), DigestMismatchError);
  assert.equal(await storage.blobs.stat(digest('one', 'sha512')), undefined);
});

test('sha512 blobs are repository-scoped, mountable and readable by range', async (t) => {
  const { storage } = await tempStorage(t);
  const reg = storage.registry;
  const d = digest('0123456789', 'sha512');
  await reg.putBlob('a', d, chunks('0123456789'), 10);
  assert.equal(await reg.statBlob('a', d), 10);
  assert.equal(await reg.statBlob('b', d), undefined);
  assert.equal(await reg.mountBlob('b', d, 'a'), true);
  const handle = await reg.openBlob('b', d);
  const parts: Buffer[] = [];
  for await (const c of handle!.read({ start: 3, end: 6 })) parts.push(c as Buffer);
  assert.equal(Buffer.concat(parts).toString(), '3456');
  // The same bytes under sha256 are another blob, unknown until pushed.
  assert.equal(await reg.statBlob('a', digest('0123456789')), undefined);
});

test('a manifest pushed by sha512 digest is stored under it, tagged, and can be a subject', async (t) => {
  const { storage } = await tempStorage(t);
  const reg = storage.registry;
  const config = digest('{}', 'sha512');
  await reg.putBlob('r', config, chunks('{}'));
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.value, size: 2 }, layers: [] }));
  const md = digest(body, 'sha512');
  const put = await reg.putManifest('r', parseReference(md.value, 'write'), body, OCI_MANIFEST);
  assert.equal(put.digest.value, md.value);
  const got = await reg.getManifest('r', parseReference(md.value, 'read'), true);
  assert.deepEqual(got?.body, body);
  assert.equal(got?.mediaType, OCI_MANIFEST);
  // Tag it: pushing by tag hashes with sha256, so the tag points at the sha256 revision.
  const tagged = await reg.putManifest('r', parseReference('v1', 'write'), body, OCI_MANIFEST);
  assert.equal(tagged.digest.value, digest(body).value);
  // A referrer of the sha512 manifest.
  const sig = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: 'application/vnd.example.sig',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.value, size: 2 },
      layers: [],
      subject: { mediaType: OCI_MANIFEST, digest: md.value, size: body.length },
    }),
  );
  const sigPut = await reg.putManifest('r', parseReference(digest(sig, 'sha512').value, 'write'), sig, OCI_MANIFEST);
  assert.equal(sigPut.subject, md.value);
  const refs = await reg.listReferrers('r', md);
  assert.deepEqual(refs.map((r) => r.digest), [digest(sig, 'sha512').value]);
  assert.equal(refs[0]!.artifactType, 'application/vnd.example.sig');
});

test('a manifest pushed by a sha512 digest that its bytes do not have is refused', async (t) => {
  const { storage } = await tempStorage(t);
  const body = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}');
  await assert.rejects(storage.registry.putManifest('r', parseReference(digest('other', 'sha512').value, 'write'), body, undefined), { code: 'DIGEST_INVALID' });
  assert.equal(await storage.repositories.listTags('r'), undefined);
});
