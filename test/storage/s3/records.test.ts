// S3Records against a real gateway (Ceph RADOS Gateway): records live under the location's
// prefix; create is once among racing servers; replaceIf wins only at the version read, and of
// servers racing with the same version exactly one wins; children and removeTree page through
// more keys than one listing holds.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { type CephS3, skipUnlessCeph, startCeph } from '../../helpers/s3-ceph.js';
import { S3Records } from '../../../src/storage/s3/records.js';
import { replicaLocation } from './fixtures.js';

describe('S3Records', { skip: skipUnlessCeph() }, () => {
  let ceph: CephS3;
  before(async () => {
    ceph = await startCeph();
  });
  after(() => ceph?.stop());

  test('a record is created once: the first create writes it, later ones answer false and change nothing', async (t) => {
    const bucket = await ceph.createBucket();
    const a = new S3Records(replicaLocation(t, ceph, bucket, 'store'));
    const b = new S3Records(replicaLocation(t, ceph, bucket, 'store'));
    assert.equal(a.location, `s3://${bucket}/store/`);
    assert.equal(a.exclusive, false);
    assert.equal(await a.read('repositories/x/_layers/sha256/aa/link'), undefined);
    assert.equal(await a.has('repositories/x/_layers/sha256/aa/link'), false);

    // Eight servers create the same key at once: one wins.
    const racers = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).create('repositories/x/_layers/sha256/aa/link', `writer ${i}`)));
    assert.equal(racers.filter(Boolean).length, 1, `exactly one create wins: ${racers}`);
    const winner = racers.indexOf(true);
    assert.equal((await a.read('repositories/x/_layers/sha256/aa/link'))?.toString(), `writer ${winner}`);
    assert.equal(await b.create('repositories/x/_layers/sha256/aa/link', 'late'), false);
    assert.equal((await b.read('repositories/x/_layers/sha256/aa/link'))?.toString(), `writer ${winner}`);

    // Under the prefix in the bucket, nowhere else.
    const listed = await ceph.client.send(new ListObjectsV2Command({ Bucket: bucket }));
    assert.deepEqual(listed.Contents?.map((o) => o.Key), ['store/repositories/x/_layers/sha256/aa/link']);
  });

  test('replaceIf replaces only the version read; of servers racing with the same version exactly one wins', async (t) => {
    const bucket = await ceph.createBucket();
    const servers = Array.from({ length: 4 }, () => new S3Records(replicaLocation(t, ceph, bucket)));
    const [a, b] = servers as [S3Records, S3Records];
    await a.write('uploads/u1/state', 'v0');
    const v0 = (await a.readVersioned('uploads/u1/state'))!;
    assert.equal(v0.data.toString(), 'v0');
    assert.match(v0.version, /\S/);

    assert.equal(await b.replaceIf('uploads/u1/state', 'v1', v0.version), true);
    const v1 = (await b.readVersioned('uploads/u1/state'))!;
    assert.equal(v1.data.toString(), 'v1');
    assert.notEqual(v1.version, v0.version);
    assert.equal(await a.replaceIf('uploads/u1/state', 'stale', v0.version), false, 'the version read before the replace is stale');
    assert.equal((await a.read('uploads/u1/state'))?.toString(), 'v1');
    assert.equal(await a.replaceIf('uploads/none', 'x', v1.version), false, 'no record: nothing to replace');
    assert.equal(await a.has('uploads/none'), false);

    // Rounds of four servers replacing the same version at once: one wins each round, and the
    // record holds the winner's bytes.
    for (let round = 0; round < 10; round++) {
      const base = (await a.readVersioned('uploads/u1/state'))!;
      const results = await Promise.all(servers.map((s, i) => s.replaceIf('uploads/u1/state', `round ${round} server ${i}`, base.version)));
      assert.equal(results.filter(Boolean).length, 1, `round ${round}: exactly one replaceIf wins: ${results}`);
      assert.equal((await a.read('uploads/u1/state'))?.toString(), `round ${round} server ${results.indexOf(true)}`);
    }
  });

  test('remove tells whether the record existed; modifiedMs is its last write', async (t) => {
    const bucket = await ceph.createBucket();
    const records = new S3Records(replicaLocation(t, ceph, bucket));
    const before = Date.now();
    await records.write('repositories/x/_manifests/tags/latest/current/link', 'sha256:aa');
    const modified = await records.modifiedMs('repositories/x/_manifests/tags/latest/current/link');
    assert.ok(modified !== undefined && Math.abs(modified - before) < 5000, `modified ${modified}, written about ${before}`);
    assert.equal(await records.modifiedMs('repositories/x/nothing'), undefined);
    assert.equal(await records.remove('repositories/x/_manifests/tags/latest/current/link'), true);
    assert.equal(await records.has('repositories/x/_manifests/tags/latest/current/link'), false);
    assert.equal(await records.remove('repositories/x/_manifests/tags/latest/current/link'), false);
  });

  test('children and removeTree page through 1100 records (a listing answers at most 1000)', async (t) => {
    const bucket = await ceph.createBucket();
    const records = new S3Records(replicaLocation(t, ceph, bucket, 'deep/prefix'));
    const tags = Array.from({ length: 1100 }, (_, i) => `t${String(i).padStart(4, '0')}`);
    for (let i = 0; i < tags.length; i += 50) {
      await Promise.all(tags.slice(i, i + 50).map((tag) => records.write(`repositories/app/_manifests/tags/${tag}/current/link`, tag)));
    }
    await records.write('repositories/app/_manifests/tags/t0000/index/sha256/aa/link', '');
    await records.write('repositories/app/_layers/sha256/bb/link', 'sha256:bb');
    await records.write('repositories/other/_layers/sha256/cc/link', 'sha256:cc');
    await records.write('repositories/app.json', '{}');

    const children = await records.children('repositories/app/_manifests/tags');
    assert.deepEqual(children.sort(), tags);
    assert.deepEqual((await records.children('repositories/app/_manifests/tags/')).length, 1100, 'a trailing / names the same prefix');
    assert.deepEqual((await records.children('repositories')).sort(), ['app', 'app.json', 'other'], 'records and deeper prefixes, without a trailing /');
    assert.deepEqual((await records.children('repositories/app/_manifests/tags/t0000')).sort(), ['current', 'index']);
    assert.deepEqual(await records.children('repositories/none'), []);

    await records.removeTree('repositories/app');
    assert.deepEqual(await records.children('repositories/app/_manifests/tags'), []);
    assert.deepEqual((await records.children('repositories')).sort(), ['app.json', 'other'], 'app.json is not under app/');
    assert.equal((await records.read('repositories/other/_layers/sha256/cc/link'))?.toString(), 'sha256:cc');
  });
});
