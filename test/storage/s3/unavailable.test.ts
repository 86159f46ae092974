// What an S3 storage says when it cannot be used, against a real gateway (Ceph RADOS Gateway):
// wrong credentials name the credentials, a missing bucket names the bucket, and a gateway that
// was stopped makes every operation fail quickly with StorageUnavailableError naming the storage
// URL and the operation, which the registry answers 503 UNAVAILABLE. The gateway is stopped in
// the last test of this file, so this file has its own cluster.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type CephS3, skipUnlessCeph, startCeph } from '../../helpers/s3-ceph.js';
import { StorageBucketMissingError, StorageCredentialsError, StorageUnavailableError } from '../../../src/storage/errors.js';
import { toRegistryError } from '../../../src/registry/error-handler.js';
import { probeS3Location } from '../../../src/storage/s3/location.js';
import { S3Records } from '../../../src/storage/s3/records.js';
import { S3BucketBlobs } from '../../../src/storage/s3/bucket-blobs.js';
import { S3WorkLease } from '../../../src/storage/s3/lease.js';
import { S3FillClaims } from '../../../src/storage/s3/fill-claims.js';
import { digest, tempDir } from '../fixtures.js';
import { replicaLocation } from './fixtures.js';

describe('an S3 storage that cannot be used', { skip: skipUnlessCeph() }, () => {
  let ceph: CephS3;
  let stopped = false;
  before(async () => {
    ceph = await startCeph();
  });
  after(async () => {
    if (ceph && !stopped) await ceph.stop();
  });

  test('wrong credentials name the credentials to check; a missing bucket names the bucket', async (t) => {
    const bucket = await ceph.createBucket();
    const wrong = replicaLocation(t, ceph, bucket, 'p', { credentials: { accessKeyId: ceph.accessKeyId, secretAccessKey: 'not-the-secret' } });
    const records = new S3Records(wrong);
    await assert.rejects(records.read('repositories/x/link'), (err: Error) => {
      assert.ok(err instanceof StorageCredentialsError, String(err));
      assert.match(err.message, new RegExp(`^storage s3://${bucket}/p/ refused GetObject repositories/x/link \\(403 SignatureDoesNotMatch\\)`));
      assert.match(err.message, /AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
      return true;
    });
    await assert.rejects(probeS3Location(wrong), StorageCredentialsError);

    const missing = replicaLocation(t, ceph, 'no-such-bucket-here');
    await assert.rejects(new S3Records(missing).read('x'), (err: Error) => {
      assert.ok(err instanceof StorageBucketMissingError, String(err));
      assert.match(err.message, /bucket no-such-bucket-here does not exist/);
      return true;
    });
    await assert.rejects(probeS3Location(missing), StorageBucketMissingError);
    await assert.rejects(async () => {
      for await (const _ of new S3BucketBlobs(missing).list());
    }, StorageBucketMissingError);
    await probeS3Location(replicaLocation(t, ceph, bucket));
  });

  test('a stopped gateway: every operation fails within seconds with StorageUnavailableError, answered 503 UNAVAILABLE', async (t) => {
    const bucket = await ceph.createBucket();
    const location = replicaLocation(t, ceph, bucket);
    const records = new S3Records(location);
    const blobs = new S3BucketBlobs(location);
    const data = randomBytes(1024);
    const d = digest(data);
    const file = join(await tempDir(t), 'blob');
    await writeFile(file, data);
    await blobs.putBytes(d, data);
    await records.write('repositories/x/link', d.value);

    await ceph.stop();
    stopped = true;

    const operations: Array<[string, () => Promise<unknown>]> = [
      ['GetObject repositories/x/link', () => records.read('repositories/x/link')],
      ['PutObject (If-None-Match: *) repositories/y', () => records.create('repositories/y', 'y')],
      ['ListObjectsV2 repositories/', () => records.children('repositories')],
      ['HeadObject', () => blobs.head(d)],
      ['GetObject blobs/', () => blobs.read(d)],
      ['HeadObject blobs/', () => blobs.putFile(file, digest('other'), data.length)],
      ['GetObject leases/gc', () => new S3WorkLease(records).runOnce('gc', async () => 'ran')],
      ['GetObject fills/', () => new S3FillClaims(records).claim(d, 1000)],
    ];
    for (const [operation, run] of operations) {
      const started = Date.now();
      await assert.rejects(run(), (err: Error) => {
        assert.ok(err instanceof StorageUnavailableError, `${operation}: ${err}`);
        assert.ok(err.message.startsWith(`storage s3://${bucket}/regcache/ is unavailable: ${operation}`), err.message);
        assert.match(err.message, /ECONNREFUSED/);
        const answer = toRegistryError(err);
        assert.equal(answer.status, 503);
        assert.equal(answer.code, 'UNAVAILABLE');
        assert.equal(answer.message, err.message);
        return true;
      });
      const ms = Date.now() - started;
      t.diagnostic(`${operation}: failed after ${ms} ms`);
      assert.ok(ms < 5000, `${operation} failed after ${ms} ms`);
    }
  });
});
