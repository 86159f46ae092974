// Upload sessions kept in a bucket, against a real Ceph RADOS Gateway: chunks gathered into
// multipart parts, a session continued and completed by another replica (another S3Uploads on
// the same bucket, without the first one's running hash), Range checks, two replicas appending
// to one session at once, a digest mismatch, the purge of idle sessions, and the limits.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test, type TestContext } from 'node:test';
import { CopyObjectCommand, GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, ListPartsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DigestMismatchError, TooLargeError, UploadBusyError, UploadNotFoundError, UploadRangeError } from '../../../src/storage/errors.js';
import { openS3Location, type S3Location } from '../../../src/storage/s3/location.js';
import { S3Uploads, type PublishUpload } from '../../../src/storage/s3/uploads.js';
import type { Digest } from '../../../src/oci/index.js';
import { startCeph, skipUnlessCeph, type CephS3 } from '../../helpers/s3-ceph.js';
import { bytes, chunks, digest } from '../fixtures.js';

const skip = skipUnlessCeph();
const MiB = 1024 * 1024;
const PART = 5 * MiB;
let ceph: CephS3 | undefined;

before(async () => {
  if (!skip) ceph = await startCeph();
});
after(async () => {
  await ceph?.stop();
});

/** A replica's view of a fresh bucket (prefix `reg/`): its own client, destroyed after the test. */
function replica(t: TestContext, bucket: string): S3Location {
  const location = openS3Location({
    url: `s3://${bucket}/reg`,
    endpoint: ceph!.endpoint,
    region: ceph!.region,
    forcePathStyle: true,
    credentials: { accessKeyId: ceph!.accessKeyId, secretAccessKey: ceph!.secretAccessKey },
  });
  t.after(() => location.client.destroy());
  return location;
}

/** The key of blob `d` in the bucket tier's layout. */
function blobKey(location: S3Location, d: Digest): string {
  return `${location.prefix}blobs/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}`;
}

/** Publishes by a server-side copy to the blob's key, as the bucket tier does (CopyObject: objects up to 5 GiB). */
function copyPublisher(location: S3Location): PublishUpload {
  return async (d, source) => {
    await location.client.send(new CopyObjectCommand({ Bucket: location.bucket, Key: blobKey(location, d), CopySource: `${location.bucket}/${source.bucketKey}` }));
  };
}

function uploads(location: S3Location, opts: { leaseMs?: number } = {}): S3Uploads {
  return new S3Uploads(location, { partSize: PART, publish: copyPublisher(location), ...opts });
}

/** Two replicas on one fresh bucket. */
async function twoReplicas(t: TestContext): Promise<{ a: S3Uploads; b: S3Uploads; location: S3Location }> {
  const bucket = await ceph!.createBucket();
  const location = replica(t, bucket);
  return { a: uploads(location), b: uploads(replica(t, bucket)), location };
}

/** `data` as a stream of `size`-byte chunks. */
async function* pieces(data: Uint8Array, size = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

/** `data` as a slow stream: 16 KiB chunks, one every 20 ms. */
async function* slowly(data: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += 16 * 1024) {
    await sleep(20);
    yield data.subarray(i, i + 16 * 1024);
  }
}

async function blobBytes(location: S3Location, d: Digest): Promise<Buffer> {
  const r = await location.client.send(new GetObjectCommand({ Bucket: location.bucket, Key: blobKey(location, d) }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

async function keysUnder(location: S3Location, under: string): Promise<string[]> {
  const r = await location.client.send(new ListObjectsV2Command({ Bucket: location.bucket, Prefix: location.prefix + under }));
  return (r.Contents ?? []).map((o) => o.Key!);
}

async function multipartUploads(location: S3Location): Promise<Array<{ key: string; uploadId: string }>> {
  const r = await location.client.send(new ListMultipartUploadsCommand({ Bucket: location.bucket }));
  return (r.Uploads ?? []).map((u) => ({ key: u.Key!, uploadId: u.UploadId! }));
}

test('many 64 KiB chunks cross several 5 MiB parts and complete into the right blob', { skip }, async (t) => {
  const { a, location } = await twoReplicas(t);
  const data = bytes(12 * MiB + 12345, 7);
  const s = await a.create('lib/app');
  // PATCHes of 1 MiB and a bit, each a stream of 64 KiB chunks: parts fill across requests.
  const patch = MiB + 4321;
  for (let at = 0; at < data.length; at += patch) {
    assert.equal(await a.append(s, pieces(data.subarray(at, at + patch)), at), Math.min(at + patch, data.length));
  }
  assert.equal((await a.get('lib/app', s.id)).size, data.length);
  // Two whole parts in the multipart upload; the rest waits as the tail.
  const [mpu] = await multipartUploads(location);
  assert.ok(mpu);
  const parts = await location.client.send(new ListPartsCommand({ Bucket: location.bucket, Key: mpu.key, UploadId: mpu.uploadId }));
  assert.deepEqual(parts.Parts?.map((p) => p.Size), [PART, PART]);
  const d = digest(data);
  assert.deepEqual(await a.complete(s, d), { size: data.length });
  assert.ok((await blobBytes(location, d)).equals(data));
  assert.deepEqual(await a.list(), []);
  assert.deepEqual(await keysUnder(location, 'uploads/'), []);
  assert.deepEqual(await multipartUploads(location), []);
});

test('a second replica continues a session mid-way and completes it with the right digest', { skip }, async (t) => {
  const { a, b, location } = await twoReplicas(t);
  const data = bytes(9 * MiB + 777, 11);
  const s = await a.create('lib/app');
  await a.append(s, pieces(data.subarray(0, 6 * MiB)));
  // Another replica: no running hash, so it hashes the assembled object at completion.
  const there = await b.get('lib/app', s.id);
  assert.equal(there.size, 6 * MiB);
  await assert.rejects(b.append(there, chunks('x'), 0), UploadRangeError);
  assert.equal(await b.append(there, pieces(data.subarray(6 * MiB, 8 * MiB)), 6 * MiB), 8 * MiB);
  const d = digest(data);
  assert.deepEqual(await b.complete(there, d, pieces(data.subarray(8 * MiB))), { size: data.length });
  assert.ok((await blobBytes(location, d)).equals(data));
  await assert.rejects(a.get('lib/app', s.id), UploadNotFoundError);
});

test('a replica whose running hash another replica outran hashes the object instead', { skip }, async (t) => {
  const { a, b, location } = await twoReplicas(t);
  const data = bytes(7 * MiB, 13);
  const s = await a.create('r');
  await a.append(s, pieces(data.subarray(0, 3 * MiB)));
  await b.append(await b.get('r', s.id), pieces(data.subarray(3 * MiB, 6 * MiB)));
  // a's hash covers the first 3 MiB only: it must not continue from it.
  await a.append(await a.get('r', s.id), pieces(data.subarray(6 * MiB)), 6 * MiB);
  const d = digest(data);
  assert.deepEqual(await a.complete(s, d), { size: data.length });
  assert.ok((await blobBytes(location, d)).equals(data));
});

test('a chunk whose start is not where the upload stands is refused and changes nothing', { skip }, async (t) => {
  const { a, location } = await twoReplicas(t);
  const s = await a.create('a');
  await a.append(s, chunks('hello'), 0);
  const before = await keysUnder(location, `uploads/${s.id}/`);
  for (const start of [0, 4, 6, 100]) {
    await assert.rejects(a.append(s, chunks('xx'), start), (err: unknown) => {
      assert.ok(err instanceof UploadRangeError);
      assert.equal(err.expectedStart, 5);
      assert.equal(err.start, start);
      return true;
    });
  }
  assert.equal((await a.get('a', s.id)).size, 5);
  assert.deepEqual(await keysUnder(location, `uploads/${s.id}/`), before);
  await a.complete(s, digest('hello'));
  assert.equal((await blobBytes(location, digest('hello'))).toString(), 'hello');
});

test('two replicas appending to one session at once: one wins, the other is refused, the bytes stay whole', { skip }, async (t) => {
  const { a, b, location } = await twoReplicas(t);
  const s = await a.create('r');
  await a.append(s, chunks('start:'));
  const fromA = bytes(256 * 1024, 21);
  const fromB = bytes(256 * 1024, 22);
  const results = await Promise.allSettled([a.append(s, slowly(fromA), 6), b.append(await b.get('r', s.id), slowly(fromB), 6)]);
  const won = results.findIndex((r) => r.status === 'fulfilled');
  const lost = results.find((r) => r.status === 'rejected');
  assert.ok(won >= 0 && lost, `one append wins and one is refused: ${results.map((r) => r.status).join(', ')}`);
  assert.ok(lost.reason instanceof UploadBusyError || lost.reason instanceof UploadRangeError, String(lost.reason));
  const expected = Buffer.concat([Buffer.from('start:'), won === 0 ? fromA : fromB]);
  assert.equal((await a.get('r', s.id)).size, expected.length);
  assert.deepEqual(await b.complete(await b.get('r', s.id), digest(expected)), { size: expected.length });
  assert.ok((await blobBytes(location, digest(expected))).equals(expected));
});

test('a session another replica holds is busy until that request ends', { skip }, async (t) => {
  const { a, b } = await twoReplicas(t);
  const s = await a.create('r');
  const slow = a.append(s, slowly(bytes(128 * 1024, 3)));
  await sleep(60);
  await assert.rejects(b.append(await b.get('r', s.id), chunks('x')), UploadBusyError);
  assert.equal(await b.removeIfIdle(s.id, Number.POSITIVE_INFINITY), false);
  assert.equal(await slow, 128 * 1024);
  assert.equal(await b.append(await b.get('r', s.id), chunks('x')), 128 * 1024 + 1);
});

test('a digest mismatch ends the session and removes its objects, its multipart upload aborted', { skip }, async (t) => {
  const { a, b, location } = await twoReplicas(t);
  const data = bytes(6 * MiB, 5);
  const s = await a.create('r');
  await a.append(s, pieces(data));
  assert.equal((await multipartUploads(location)).length, 1);
  await assert.rejects(b.complete(await b.get('r', s.id), digest('something else')), DigestMismatchError);
  await assert.rejects(a.get('r', s.id), UploadNotFoundError);
  assert.deepEqual(await multipartUploads(location), []);
  assert.deepEqual(await keysUnder(location, ''), []);
});

test('removing an idle session aborts its multipart upload; a recent one is kept', { skip }, async (t) => {
  const { a, b, location } = await twoReplicas(t);
  const idle = await a.create('r');
  await a.append(idle, pieces(bytes(5 * MiB + 100, 1)));
  const fresh = await a.create('r');
  await a.append(fresh, chunks('fresh'));
  assert.equal(await b.removeIfIdle(idle.id, Date.now() - 60_000), false);
  assert.equal(await b.removeIfIdle(idle.id, Date.now() + 1000), true);
  assert.deepEqual(await multipartUploads(location), []);
  await assert.rejects(a.get('r', idle.id), UploadNotFoundError);
  assert.deepEqual(await b.list(), [fresh.id]);
  // The purge at startup: nothing idle for a minute.
  assert.equal(await b.purgeStale(60_000), 0);
  assert.deepEqual((await b.describe()).map((x) => [x.id, x.repository, x.size, x.broken]), [[fresh.id, 'r', 5, false]]);
});

test('a session directory without its state is broken and purged at startup', { skip }, async (t) => {
  const { a, location } = await twoReplicas(t);
  const id = '0b6f7b2e-1d3c-4a5b-8c9d-0e1f2a3b4c5d';
  await location.client.send(new PutObjectCommand({ Bucket: location.bucket, Key: `${location.prefix}uploads/${id}/tail-0011223344556677`, Body: 'left over' }));
  const [d] = await a.describe();
  assert.equal(d?.id, id);
  assert.equal(d?.broken, true);
  assert.equal(await a.purgeStale(60_000), 0);
  assert.equal(await a.purgeStale(60_000, { broken: true }), 1);
  assert.deepEqual(await keysUnder(location, ''), []);
});

test('a monolithic push (one request with every byte) completes a small blob', { skip }, async (t) => {
  const { a, location } = await twoReplicas(t);
  const data = bytes(300_000, 9);
  const s = await a.create('mono');
  assert.deepEqual(await a.complete(s, digest(data), pieces(data)), { size: data.length });
  assert.ok((await blobBytes(location, digest(data))).equals(data));
  assert.deepEqual(await multipartUploads(location), []);
  assert.deepEqual(await keysUnder(location, 'uploads/'), []);
});

test('an empty upload completes as the empty blob', { skip }, async (t) => {
  const { a, location } = await twoReplicas(t);
  const s = await a.create('empty');
  assert.deepEqual(await a.complete(s, digest('')), { size: 0 });
  assert.equal((await blobBytes(location, digest(''))).length, 0);
});

test('an upload completes as a sha512 blob (hashed from the bucket)', { skip }, async (t) => {
  const { a, location } = await twoReplicas(t);
  const data = bytes(100_000, 4);
  const s = await a.create('r');
  await a.append(s, pieces(data));
  assert.deepEqual(await a.complete(s, digest(data, 'sha512')), { size: data.length });
  assert.ok((await blobBytes(location, digest(data, 'sha512'))).equals(data));
});

test('bytes past the limit are refused with TooLargeError; those before it are kept', { skip }, async (t) => {
  const { a } = await twoReplicas(t);
  const s = await a.create('r');
  await assert.rejects(a.append(s, chunks('a'.repeat(60), 'b'.repeat(60)), 0, 100), (err: unknown) => err instanceof TooLargeError && err.limit === 100);
  assert.equal((await a.get('r', s.id)).size, 60);
  await assert.rejects(a.complete(s, digest('a'.repeat(60) + 'c'.repeat(50)), chunks('c'.repeat(50)), 100), TooLargeError);
  assert.equal((await a.get('r', s.id)).size, 60);
});

test('a part size under S3\'s 5 MiB minimum is refused', { skip }, () => {
  const location = { client: ceph!.client, bucket: 'unused', prefix: '', url: 's3://unused/' } as S3Location;
  assert.throws(() => new S3Uploads(location, { partSize: MiB, publish: async () => {} }), /5 MiB to 5 GiB/);
});
