// S3BucketBlobs against a real gateway (Ceph RADOS Gateway): a file above the multipart
// threshold goes up in parts and reads back whole and by ranges; a blob is put once; list()
// merges the touch records; a presigned URL serves the bytes to a plain HTTP client; removal.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { type CephS3, skipUnlessCeph, startCeph } from '../../helpers/s3-ceph.js';
import { BlobNotFoundError } from '../../../src/storage/errors.js';
import { S3BucketBlobs } from '../../../src/storage/s3/bucket-blobs.js';
import { digest, tempDir } from '../fixtures.js';
import { replicaLocation } from './fixtures.js';

const MiB = 1024 * 1024;

describe('S3BucketBlobs', { skip: skipUnlessCeph() }, () => {
  let ceph: CephS3;
  before(async () => {
    ceph = await startCeph();
  });
  after(() => ceph?.stop());

  test('a file above the multipart threshold goes up in parts and reads back whole and by ranges', async (t) => {
    const bucket = await ceph.createBucket();
    const blobs = new S3BucketBlobs(replicaLocation(t, ceph, bucket), { multipartThreshold: 4 * MiB, partSize: 5 * MiB, partConcurrency: 2 });
    const data = randomBytes(12 * MiB + 123);
    const d = digest(data);
    const file = join(await tempDir(t), 'blob');
    await writeFile(file, data);

    assert.equal(await blobs.head(d), undefined);
    assert.equal(await blobs.putFile(file, d, data.length), false, 'uploaded, not found there');
    const head = await blobs.head(d);
    assert.equal(head?.size, data.length);

    // Three parts made it one object, with a multipart ETag (`-3`), and no upload is left open.
    const listed = await ceph.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'regcache/blobs/' }));
    assert.deepEqual(listed.Contents?.map((o) => [o.Key, o.Size, o.ETag?.endsWith('-3"')]), [[`regcache/blobs/sha256/${d.hex.slice(0, 2)}/${d.hex}`, data.length, true]]);
    const open = await ceph.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.equal(open.Uploads?.length ?? 0, 0);

    assert.ok((await buffer(await blobs.read(d))).equals(data), 'the whole blob');
    for (const [start, end] of [[0, 0], [5 * MiB - 10, 5 * MiB + 10], [data.length - 100, data.length - 1], [7 * MiB, 11 * MiB]] as const) {
      const got = await buffer(await blobs.read(d, { start, end }));
      assert.ok(got.equals(data.subarray(start, end + 1)), `bytes ${start}-${end}`);
    }

    // A second put finds it; so does one of the same bytes from another server.
    assert.equal(await blobs.putFile(file, d, data.length), true);
    const other = new S3BucketBlobs(replicaLocation(t, ceph, bucket));
    assert.equal(await other.putFile(file, d, data.length), true);
  });

  test('a small blob is put once: racing servers all succeed, one object holds the bytes', async (t) => {
    const bucket = await ceph.createBucket();
    const servers = Array.from({ length: 4 }, () => new S3BucketBlobs(replicaLocation(t, ceph, bucket)));
    const data = randomBytes(300 * 1024);
    const d = digest(data);
    const file = join(await tempDir(t), 'blob');
    await writeFile(file, data);
    const found = await Promise.all(servers.map((s, i) => (i % 2 ? s.putFile(file, d, data.length) : s.putBytes(d, data))));
    assert.ok(found.includes(false), `someone uploaded it: ${found}`);
    assert.ok((await buffer(await servers[3]!.read(d))).equals(data));
    assert.equal(await servers[0]!.putBytes(d, data), true);
  });

  test('read and remove of a blob that is not there', async (t) => {
    const blobs = new S3BucketBlobs(replicaLocation(t, ceph, await ceph.createBucket()));
    const d = digest('absent');
    await assert.rejects(blobs.read(d), (err) => err instanceof BlobNotFoundError && err.digest === d.value);
    await assert.rejects(blobs.read(d, { start: 0, end: 3 }), BlobNotFoundError);
    assert.equal(await blobs.remove(d), false);
  });

  test('list() gives every blob with the later of its upload and its last touch; remove takes blob and touch', async (t) => {
    const bucket = await ceph.createBucket();
    const blobs = new S3BucketBlobs(replicaLocation(t, ceph, bucket, 'p'));
    const contents = Array.from({ length: 6 }, (_, i) => Buffer.from(`blob ${i} `.repeat(i + 1)));
    const digests = contents.map((c, i) => digest(c, i === 5 ? 'sha512' : 'sha256'));
    for (const [i, c] of contents.entries()) await blobs.putBytes(digests[i]!, c);
    const uploaded = new Map<string, number>();
    for await (const b of blobs.list()) uploaded.set(b.digest.value, b.mtimeMs);
    assert.equal(uploaded.size, 6);

    // LastModified has second resolution: touch well after the uploads.
    await sleep(2100);
    const touched = [digests[1]!, digests[4]!, digests[5]!];
    for (const d of touched) await blobs.touch(d);
    await blobs.touch(digest('never uploaded'));

    const listed = [];
    for await (const b of blobs.list()) listed.push(b);
    assert.deepEqual(listed.map((b) => b.digest.value).sort(), digests.map((d) => d.value).sort(), 'blobs only, not the touch without a blob');
    for (const b of listed) {
      const i = digests.findIndex((d) => d.value === b.digest.value);
      assert.equal(b.size, contents[i]!.length);
      const isTouched = touched.some((d) => d.value === b.digest.value);
      if (isTouched) assert.ok(b.mtimeMs >= uploaded.get(b.digest.value)! + 1000, `${b.digest.value} counts from its touch`);
      else assert.equal(b.mtimeMs, uploaded.get(b.digest.value), `${b.digest.value} counts from its upload`);
      assert.equal((await blobs.head(b.digest))?.mtimeMs, b.mtimeMs, 'head agrees with list');
    }

    assert.equal(await blobs.remove(digests[4]!), true);
    assert.equal(await blobs.head(digests[4]!), undefined);
    const keys = (await ceph.client.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents!.map((o) => o.Key);
    assert.ok(!keys.some((k) => k?.endsWith(digests[4]!.hex)), 'the touch record went with the blob');
  });

  test('a presigned URL answers a plain GET with the bytes, and stops when it expires', async (t) => {
    const blobs = new S3BucketBlobs(replicaLocation(t, ceph, await ceph.createBucket()));
    const data = randomBytes(64 * 1024);
    const d = digest(data);
    await blobs.putBytes(d, data);
    const url = await blobs.presign(d, 2);
    assert.ok(url.startsWith(`${ceph.endpoint}/`), url);
    const res = await request(url);
    assert.equal(res.statusCode, 200);
    assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(data));

    await sleep(3100);
    const late = await request(url);
    await late.body.dump();
    assert.equal(late.statusCode, 403, 'expired');
  });
});
