// Upload sessions: chunks appended in order, a session that survives a restart (a new
// Uploads instance on the same directory), verification at completion, and the purge of
// abandoned sessions.
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DigestMismatchError, UploadBusyError, UploadNotFoundError, UploadRangeError, Uploads } from '../../src/storage/index.js';
import { bytes, chunks, digest, tempStorage } from './fixtures.js';

test('chunks appended in order complete into a blob with the right digest', async (t) => {
  const { storage } = await tempStorage(t);
  const data = bytes(300_000, 3);
  const s = await storage.uploads.create('a/b');
  assert.equal(s.size, 0);
  assert.equal(s.repository, 'a/b');
  assert.equal(await storage.uploads.append(s, chunks(data.subarray(0, 100_000)), 0), 100_000);
  const again = await storage.uploads.get('a/b', s.id);
  assert.equal(again.size, 100_000);
  assert.equal(await storage.uploads.append(again, chunks(data.subarray(100_000, 200_000)), 100_000), 200_000);
  // Without a start (no Content-Range) a chunk continues where the upload stands.
  assert.equal(await storage.uploads.append(again, chunks(data.subarray(200_000))), 300_000);
  const d = digest(data);
  assert.deepEqual(await storage.uploads.complete(again, d), { size: data.length });
  assert.deepEqual(await readFile(storage.layout.blob(d)), data);
  assert.deepEqual(await storage.uploads.list(), []);
});

test('a chunk whose start is not where the upload stands is refused and changes nothing', async (t) => {
  const { storage } = await tempStorage(t);
  const s = await storage.uploads.create('a');
  await storage.uploads.append(s, chunks('hello'), 0);
  for (const start of [0, 4, 6, 100]) {
    await assert.rejects(storage.uploads.append(s, chunks('xx'), start), (err: unknown) => {
      assert.ok(err instanceof UploadRangeError);
      assert.equal(err.expectedStart, 5);
      assert.equal(err.start, start);
      return true;
    });
  }
  assert.equal((await storage.uploads.get('a', s.id)).size, 5);
  await storage.uploads.complete(s, digest('hello'));
  assert.equal(await storage.blobs.stat(digest('hello')), 5);
});

test('a last chunk given to complete is appended before verification', async (t) => {
  const { storage } = await tempStorage(t);
  const s = await storage.uploads.create('a');
  await storage.uploads.append(s, chunks('first,'));
  assert.deepEqual(await storage.uploads.complete(s, digest('first,last'), chunks('last')), { size: 10 });
  assert.equal((await readFile(storage.layout.blob(digest('first,last')))).toString(), 'first,last');
});

test('a new Uploads instance on the same directory resumes a half-done upload', async (t) => {
  const { storage } = await tempStorage(t);
  const data = bytes(64 * 1024, 5);
  const before = await storage.uploads.create('repo');
  await storage.uploads.append(before, chunks(data.subarray(0, 20_000)));
  // The running hash lived in the old instance only: the new one must rehash the file.
  const restarted = new Uploads(storage.layout, storage.blobs);
  const s = await restarted.get('repo', before.id);
  assert.equal(s.size, 20_000);
  await assert.rejects(restarted.append(s, chunks('x'), 0), UploadRangeError);
  assert.equal(await restarted.append(s, chunks(data.subarray(20_000)), 20_000), data.length);
  assert.deepEqual(await restarted.complete(s, digest(data)), { size: data.length });
  assert.deepEqual(await readFile(storage.layout.blob(digest(data))), data);
});

test('a resumed upload still detects a digest mismatch', async (t) => {
  const { storage } = await tempStorage(t);
  const first = await storage.uploads.create('repo');
  await storage.uploads.append(first, chunks('abc'));
  const restarted = new Uploads(storage.layout, storage.blobs);
  const s = await restarted.get('repo', first.id);
  await restarted.append(s, chunks('def'));
  await assert.rejects(restarted.complete(s, digest('abcdeX')), DigestMismatchError);
  assert.equal(await storage.blobs.stat(digest('abcdef')), undefined);
});

test('an upload completes as a sha512 blob', async (t) => {
  const { storage } = await tempStorage(t);
  const s = await storage.uploads.create('repo');
  await storage.uploads.append(s, chunks('sha512 ', 'content'));
  const d = digest('sha512 content', 'sha512');
  await storage.uploads.complete(s, d);
  assert.equal((await readFile(storage.layout.blob(d))).toString(), 'sha512 content');
  assert.match(storage.layout.blob(d), /blobs\/sha512\//);
});

test('completing with a mismatched digest removes the session and publishes nothing', async (t) => {
  const { storage } = await tempStorage(t);
  const s = await storage.uploads.create('repo');
  await storage.uploads.append(s, chunks('content'));
  await assert.rejects(storage.uploads.complete(s, digest('other')), DigestMismatchError);
  await assert.rejects(storage.uploads.get('repo', s.id), UploadNotFoundError);
  assert.deepEqual(await readdir(storage.layout.uploadsDir), []);
  assert.equal(await storage.blobs.stat(digest('content')), undefined);
  assert.equal(await storage.blobs.stat(digest('other')), undefined);
});

test('a session is unknown to another repository and to malformed ids', async (t) => {
  const { storage } = await tempStorage(t);
  const s = await storage.uploads.create('mine');
  await assert.rejects(storage.uploads.get('theirs', s.id), UploadNotFoundError);
  await assert.rejects(storage.uploads.get('mine', s.id.toUpperCase()), UploadNotFoundError);
  for (const id of ['..', '../tmp', '', 'not-a-uuid', `${s.id}/..`]) {
    await assert.rejects(storage.uploads.get('mine', id), UploadNotFoundError, id);
  }
  assert.equal((await storage.uploads.get('mine', s.id)).id, s.id);
});

test('a second request on a busy session is refused while the first streams', async (t) => {
  const { storage } = await tempStorage(t);
  const s = await storage.uploads.create('repo');
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  async function* slow(): AsyncGenerator<Uint8Array> {
    yield Buffer.from('one,');
    await gate;
    yield Buffer.from('two');
  }
  const first = storage.uploads.append(s, slow());
  await new Promise((r) => setTimeout(r, 20));
  await assert.rejects(storage.uploads.append(s, chunks('intruder')), UploadBusyError);
  release();
  assert.equal(await first, 7);
  await storage.uploads.complete(s, digest('one,two'));
  assert.equal(await storage.blobs.stat(digest('one,two')), 7);
});

test('a chunk that fails half-way leaves the session usable at the size on disk', async (t) => {
  const { storage } = await tempStorage(t);
  const s = await storage.uploads.create('repo');
  async function* broken(): AsyncGenerator<Uint8Array> {
    yield Buffer.from('abc');
    throw new Error('client went away');
  }
  await assert.rejects(storage.uploads.append(s, broken()), /client went away/);
  const now = await storage.uploads.get('repo', s.id);
  assert.equal(now.size, 3);
  await storage.uploads.append(now, chunks('def'), 3);
  await storage.uploads.complete(now, digest('abcdef'));
  assert.equal(await storage.blobs.stat(digest('abcdef')), 6);
});

test('cancel removes the session and its data', async (t) => {
  const { storage } = await tempStorage(t);
  const s = await storage.uploads.create('repo');
  await storage.uploads.append(s, chunks('data'));
  await storage.uploads.cancel(s);
  await assert.rejects(storage.uploads.get('repo', s.id), UploadNotFoundError);
  await assert.rejects(storage.uploads.append(s, chunks('more')), UploadNotFoundError);
  assert.deepEqual(await readdir(storage.layout.uploadsDir), []);
});

test('purgeStale removes sessions idle longer than the limit and keeps younger ones', async (t) => {
  const { storage } = await tempStorage(t);
  const old = await storage.uploads.create('repo');
  const young = await storage.uploads.create('repo');
  const record = join(storage.layout.upload(old.id), 'session.json');
  const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
  await writeFile(record, JSON.stringify({ repository: 'repo', startedAt: twoHoursAgo.getTime() }));
  await utimes(join(storage.layout.upload(old.id), 'data'), twoHoursAgo, twoHoursAgo);
  assert.equal(await storage.uploads.purgeStale(60 * 60 * 1000), 1);
  assert.deepEqual(await storage.uploads.list(), [young.id]);
  await assert.rejects(storage.uploads.get('repo', old.id), UploadNotFoundError);
  assert.equal((await stat(storage.layout.upload(young.id))).isDirectory(), true);
});

test('purgeStale counts bytes received as activity: a session started long ago but still written to stays', async (t) => {
  const { storage } = await tempStorage(t);
  const s = await storage.uploads.create('repo');
  const record = join(storage.layout.upload(s.id), 'session.json');
  await writeFile(record, JSON.stringify({ repository: 'repo', startedAt: Date.now() - 2 * 60 * 60 * 1000 }));
  await storage.uploads.append(s, chunks('recent bytes'));
  assert.equal(await storage.uploads.purgeStale(60 * 60 * 1000), 0);
  assert.equal((await storage.uploads.get('repo', s.id)).size, 12);
});

test('purgeStale with broken: also removes sessions without a record or without data (left by a crash)', async (t) => {
  const { storage } = await tempStorage(t);
  const good = await storage.uploads.create('repo');
  const noRecord = join(storage.layout.uploadsDir, '11111111-1111-4111-8111-111111111111');
  await mkdir(noRecord);
  await writeFile(join(noRecord, 'data'), 'x');
  const noData = join(storage.layout.uploadsDir, '22222222-2222-4222-8222-222222222222');
  await mkdir(noData);
  await writeFile(join(noData, 'session.json'), JSON.stringify({ repository: 'repo', startedAt: Date.now() }));
  // Young and possibly being created right now: left alone by the periodic purge.
  assert.equal(await storage.uploads.purgeStale(60 * 60 * 1000), 0);
  assert.equal(await storage.uploads.purgeStale(60 * 60 * 1000, { broken: true }), 2);
  assert.deepEqual(await storage.uploads.list(), [good.id]);
});
