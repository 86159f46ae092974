// S3FillClaims against a real gateway (Ceph RADOS Gateway), servers as separate clients on one
// bucket: one claim per blob among servers claiming at once; a held claim is renewed past its
// time to live; a released claim can be taken again; a claim whose holder died is taken over
// once it expires.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test, type TestContext } from 'node:test';
import { type CephS3, skipUnlessCeph, startCeph } from '../../helpers/s3-ceph.js';
import { S3Records } from '../../../src/storage/s3/records.js';
import { S3FillClaims } from '../../../src/storage/s3/fill-claims.js';
import { digest } from '../fixtures.js';
import { replicaLocation } from './fixtures.js';

describe('S3FillClaims', { skip: skipUnlessCeph() }, () => {
  let ceph: CephS3;
  before(async () => {
    ceph = await startCeph();
  });
  after(() => ceph?.stop());

  function server(t: TestContext, bucket: string): S3Records {
    return new S3Records(replicaLocation(t, ceph, bucket));
  }

  test('of servers claiming one blob at once, one holds the claim until it releases it; other blobs are free', async (t) => {
    const bucket = await ceph.createBucket();
    const servers = Array.from({ length: 4 }, () => new S3FillClaims(server(t, bucket)));
    const layer = digest('layer');
    const claims = await Promise.all(servers.map((s) => s.claim(layer, 10_000)));
    const held = claims.filter((c) => c !== undefined);
    assert.equal(held.length, 1, 'one claim among four');
    assert.equal(await servers[0]!.claim(layer, 10_000), undefined, 'still held');
    const other = await servers[1]!.claim(digest('another layer'), 10_000);
    assert.ok(other, 'another blob is claimed independently');

    await held[0]!.release();
    await held[0]!.release(); // safe twice
    const again = await servers[2]!.claim(layer, 10_000);
    assert.ok(again, 'released: claimable again');
    await again.release();
    await other.release();
  });

  test('a held claim is renewed past its time to live', async (t) => {
    const bucket = await ceph.createBucket();
    const a = new S3FillClaims(server(t, bucket));
    const b = new S3FillClaims(server(t, bucket));
    const layer = digest('slow layer', 'sha512');
    const claim = await a.claim(layer, 800);
    assert.ok(claim);
    for (let i = 0; i < 8; i++) {
      await sleep(300);
      assert.equal(await b.claim(layer, 800), undefined, `at ${(i + 1) * 300} ms the claim is still held`);
    }
    await claim.release();
    const taken = await b.claim(layer, 800);
    assert.ok(taken);
    await taken.release();
  });

  test('a claim whose holder died is taken over once it expires', async (t) => {
    const bucket = await ceph.createBucket();
    const records = server(t, bucket);
    const claims = new S3FillClaims(server(t, bucket));
    const layer = digest('orphaned layer');
    await records.write(`fills/sha256/${layer.hex}`, JSON.stringify({ owner: { host: 'elsewhere', pid: 9, id: 'dead' }, expiresAt: Date.now() + 1200 }));
    assert.equal(await claims.claim(layer, 5000), undefined, 'fresh: wait for it');
    await sleep(1300);
    const claim = await claims.claim(layer, 5000);
    assert.ok(claim, 'expired: taken over');
    assert.equal(JSON.parse((await records.read(`fills/sha256/${layer.hex}`))!.toString()).owner.pid, process.pid);
    await claim.release();
    assert.equal(await records.has(`fills/sha256/${layer.hex}`), false, 'released: the record is gone');
  });
});
