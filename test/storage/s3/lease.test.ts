// S3WorkLease against a real gateway (Ceph RADOS Gateway), with servers as separate clients on
// one bucket: of servers asking at once only one runs the work; a holder's fresh lease keeps the
// others out for as long as its work runs (renewal); a lease whose holder died is taken over
// once it expires; a holder whose lease was taken over hears of it.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test, type TestContext } from 'node:test';
import { type CephS3, skipUnlessCeph, startCeph } from '../../helpers/s3-ceph.js';
import { S3Records } from '../../../src/storage/s3/records.js';
import { S3WorkLease } from '../../../src/storage/s3/lease.js';
import { parseLease, type LeaseOwner } from '../../../src/storage/s3/lease-record.js';
import { replicaLocation } from './fixtures.js';

describe('S3WorkLease', { skip: skipUnlessCeph() }, () => {
  let ceph: CephS3;
  before(async () => {
    ceph = await startCeph();
  });
  after(() => ceph?.stop());

  /** The records of one server on `bucket`. */
  function server(t: TestContext, bucket: string): S3Records {
    return new S3Records(replicaLocation(t, ceph, bucket));
  }

  test('of servers asking at once, one runs the work; once it is done the lease is free again', async (t) => {
    const bucket = await ceph.createBucket();
    const leases = Array.from({ length: 4 }, () => new S3WorkLease(server(t, bucket), { ttlMs: 5000 }));
    for (let round = 0; round < 3; round++) {
      let running = 0;
      const ran: number[] = [];
      const results = await Promise.all(
        leases.map((l, i) =>
          l.runOnce('gc', async () => {
            running++;
            assert.equal(running, 1, 'never two at once');
            ran.push(i);
            await sleep(300);
            running--;
            return `server ${i}`;
          }),
        ),
      );
      assert.equal(ran.length, 1, `round ${round}: one server ran the work: ${ran}`);
      assert.deepEqual(results.filter((r) => r !== undefined), [`server ${ran[0]}`]);
    }
    // Released: a later ask runs, and other names are independent.
    assert.equal(await leases[2]!.runOnce('gc', async () => 'later'), 'later');
    const both = await Promise.all([leases[0]!.runOnce('gc', async () => sleep(200, 'gc')), leases[1]!.runOnce('evict', async () => sleep(200, 'evict'))]);
    assert.deepEqual(both, ['gc', 'evict']);
  });

  test('a holder renews its lease while the work runs, longer than the lease lasts', async (t) => {
    const bucket = await ceph.createBucket();
    const records = server(t, bucket);
    const lost: string[] = [];
    const holder = new S3WorkLease(records, { ttlMs: 900, onLost: (key) => lost.push(key) });
    const other = new S3WorkLease(server(t, bucket), { ttlMs: 900 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const running = holder.runOnce('gc', () => gate.then(() => 'done'));

    const expiries: number[] = [];
    for (let i = 0; i < 12; i++) {
      await sleep(250);
      assert.equal(await other.runOnce('gc', async () => 'ran'), undefined, `at ${(i + 1) * 250} ms the lease is still held`);
      const record = await records.read('leases/gc');
      expiries.push(parseLease(record!)!.expiresAt);
    }
    assert.ok(expiries.at(-1)! > expiries[0]! + 1500, `renewed: expiresAt moved from ${expiries[0]} to ${expiries.at(-1)}`);
    release();
    assert.equal(await running, 'done');
    assert.deepEqual(lost, []);
    assert.equal(await records.has('leases/gc'), false, 'released: the record is gone');
  });

  test('a lease whose holder died is taken over once it expires, not before', async (t) => {
    const bucket = await ceph.createBucket();
    const records = server(t, bucket);
    const lease = new S3WorkLease(server(t, bucket), { ttlMs: 2000 });
    const dead: LeaseOwner = { host: 'elsewhere', pid: 4242, id: 'dead' };

    // Another server's record, fresh: the work is not run.
    await records.write('leases/gc', JSON.stringify({ owner: dead, expiresAt: Date.now() + 1500 }));
    assert.equal(await lease.runOnce('gc', async () => 'ran'), undefined);
    // Past its expiry nobody renewed it: taken over.
    await sleep(1600);
    let seen: LeaseOwner | undefined;
    assert.equal(
      await lease.runOnce('gc', async () => {
        seen = parseLease((await records.read('leases/gc'))!)?.owner;
        return 'ran';
      }),
      'ran',
    );
    assert.notEqual(seen?.id, 'dead');
    assert.equal(seen?.pid, process.pid);
    // A record that is not a lease at all is treated as expired.
    await records.write('leases/gc', 'garbage');
    assert.equal(await lease.runOnce('gc', async () => 'ran'), 'ran');
  });

  test('a holder whose lease was taken over (it stalled past the expiry) is told, and its release leaves the new holder alone', async (t) => {
    const bucket = await ceph.createBucket();
    const records = server(t, bucket);
    const lost: Array<{ key: string; holder: LeaseOwner | undefined }> = [];
    const lease = new S3WorkLease(server(t, bucket), { ttlMs: 900, onLost: (key, holder) => lost.push({ key, holder }) });
    const thief: LeaseOwner = { host: 'elsewhere', pid: 7, id: 'thief' };
    const result = await lease.runOnce('evict', async () => {
      await records.write('leases/evict', JSON.stringify({ owner: thief, expiresAt: Date.now() + 60_000 }));
      await sleep(700);
      return 'finished';
    });
    assert.equal(result, 'finished');
    assert.deepEqual(lost, [{ key: 'leases/evict', holder: thief }]);
    assert.equal(parseLease((await records.read('leases/evict'))!)?.owner.id, 'thief', 'the new holder keeps its record');
  });
});
