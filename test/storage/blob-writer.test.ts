// The two-phase blob writer: a blob becomes visible only after commit verified it; a
// cancelled or mismatched write leaves nothing behind, neither in blobs/ nor in tmp/.
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { test } from 'node:test';
import { DigestMismatchError, SizeMismatchError, StorageFullError, TooLargeError } from '../../src/storage/index.js';
import { BlobStore } from '../../src/storage/blob-store.js';
import { bytes, chunks, digest, tempStorage } from './fixtures.js';

async function countBlobs(store: BlobStore): Promise<number> {
  let n = 0;
  for await (const _ of store.list()) n++;
  return n;
}

test('commit publishes the blob at its digest path and empties tmp/', async (t) => {
  const { storage } = await tempStorage(t);
  const data = bytes(100_000);
  const w = await storage.blobs.createWriter();
  await w.write(chunks(data.subarray(0, 1), data.subarray(1, 5000), data.subarray(5000)));
  assert.equal(w.written, data.length);
  const d = digest(data);
  const r = await w.commit(d, data.length);
  assert.deepEqual(r, { digest: d, size: data.length });
  assert.deepEqual(await readFile(storage.layout.blob(d)), data);
  assert.equal(await storage.blobs.stat(d), data.length);
  assert.deepEqual(await readdir(storage.layout.tmpDir), []);
});

test('commit without an expected digest publishes under the computed one', async (t) => {
  const { storage } = await tempStorage(t);
  const w = await storage.blobs.createWriter();
  await w.write(chunks('abc'));
  const r = await w.commit();
  assert.equal(r.digest.value, digest('abc').value);
  assert.equal(await storage.blobs.stat(r.digest), 3);
});

test('a digest mismatch throws and leaves no file in blobs/ or tmp/', async (t) => {
  const { storage } = await tempStorage(t);
  const w = await storage.blobs.createWriter();
  await w.write(chunks('actual content'));
  const claimed = digest('claimed content');
  await assert.rejects(w.commit(claimed), (err: unknown) => {
    assert.ok(err instanceof DigestMismatchError);
    assert.equal(err.expected, claimed.value);
    assert.equal(err.actual, digest('actual content').value);
    return true;
  });
  assert.equal(await countBlobs(storage.blobs), 0);
  assert.equal(await storage.blobs.stat(claimed), undefined);
  assert.equal(await storage.blobs.stat(digest('actual content')), undefined);
  assert.deepEqual(await readdir(storage.layout.tmpDir), []);
});

test('a size mismatch throws and leaves nothing behind', async (t) => {
  const { storage } = await tempStorage(t);
  const w = await storage.blobs.createWriter();
  await w.write(chunks('12345'));
  await assert.rejects(w.commit(digest('12345'), 6), SizeMismatchError);
  assert.equal(await countBlobs(storage.blobs), 0);
  assert.deepEqual(await readdir(storage.layout.tmpDir), []);
});

test('cancel removes the temp file and is safe to call twice', async (t) => {
  const { storage } = await tempStorage(t);
  const w = await storage.blobs.createWriter();
  await w.write(chunks('partial'));
  assert.equal((await readdir(storage.layout.tmpDir)).length, 1);
  await w.cancel();
  await w.cancel();
  assert.deepEqual(await readdir(storage.layout.tmpDir), []);
  assert.equal(await countBlobs(storage.blobs), 0);
});

test('cancel after a failed commit is harmless', async (t) => {
  const { storage } = await tempStorage(t);
  const w = await storage.blobs.createWriter();
  await w.write(chunks('x'));
  await assert.rejects(w.commit(digest('y')), DigestMismatchError);
  await w.cancel();
  assert.deepEqual(await readdir(storage.layout.tmpDir), []);
});

test('a write past its limit throws TooLargeError before writing the chunk', async (t) => {
  const { storage } = await tempStorage(t);
  const w = await storage.blobs.createWriter();
  await assert.rejects(w.write(chunks('1234', '5678'), 6), (err: unknown) => err instanceof TooLargeError && err.limit === 6);
  await w.cancel();
  assert.deepEqual(await readdir(storage.layout.tmpDir), []);
});

test('concurrent writers of one digest both succeed and leave one intact blob', async (t) => {
  const { storage } = await tempStorage(t);
  const data = bytes(256 * 1024, 7);
  const d = digest(data);
  const writers = await Promise.all(Array.from({ length: 4 }, () => storage.blobs.createWriter()));
  // Interleave the writes so that every writer is half-way before any commits.
  await Promise.all(writers.map((w) => w.write(chunks(data.subarray(0, 1000)))));
  await Promise.all(writers.map((w) => w.write(chunks(data.subarray(1000)))));
  const results = await Promise.all(writers.map((w) => w.commit(d, data.length)));
  for (const r of results) assert.equal(r.digest.value, d.value);
  assert.equal(await countBlobs(storage.blobs), 1);
  assert.deepEqual(await readFile(storage.layout.blob(d)), data);
  assert.deepEqual(await readdir(storage.layout.tmpDir), []);
});

test('a write of an already stored blob keeps the stored file and drops the new one', async (t) => {
  const { storage } = await tempStorage(t);
  const d = digest('same');
  await storage.blobs.putBytes(d, Buffer.from('same'));
  const w = await storage.blobs.createWriter();
  await w.write(chunks('same'));
  await w.commit(d);
  assert.equal(await countBlobs(storage.blobs), 1);
  assert.deepEqual(await readdir(storage.layout.tmpDir), []);
});

test('openRead serves inclusive byte ranges; readSmall refuses blobs over its limit', async (t) => {
  const { storage } = await tempStorage(t);
  const data = Buffer.from('0123456789');
  const d = digest(data);
  await storage.blobs.putBytes(d, data);
  const parts: Buffer[] = [];
  for await (const c of storage.blobs.openRead(d, { start: 2, end: 5 })) parts.push(c as Buffer);
  assert.equal(Buffer.concat(parts).toString(), '2345');
  assert.deepEqual(await storage.blobs.readSmall(d, 10), data);
  await assert.rejects(storage.blobs.readSmall(d, 9), TooLargeError);
});

test('createWriter with an announced size the file system has no room for throws StorageFullError (code ENOSPC) and creates nothing', async (t) => {
  const { storage } = await tempStorage(t);
  await assert.rejects(storage.blobs.createWriter('sha256', Number.MAX_SAFE_INTEGER), (err: unknown) => {
    assert.ok(err instanceof StorageFullError);
    assert.equal(err.code, 'ENOSPC');
    assert.equal(err.needed, Number.MAX_SAFE_INTEGER);
    return true;
  });
  assert.deepEqual(await readdir(storage.layout.tmpDir), []);
  // A size that fits is no obstacle.
  const w = await storage.blobs.createWriter('sha256', 4);
  await w.write(chunks('fits'));
  await w.commit(digest('fits'), 4);
});
