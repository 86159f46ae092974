// Runs every conformance case against regcache's registry port on a storage in an S3 bucket of
// a real Ceph RADOS Gateway (started for this file), with a local directory of its own for
// temp files and copies of blobs. The same cases, the same known differences (none).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/server/index.js';
import { startCeph, skipUnlessCeph, type CephS3 } from '../helpers/s3-ceph.js';
import { describeRegcacheConformance } from './regcache-run.js';

let local: string | undefined;
let ceph: CephS3 | undefined;
describeRegcacheConformance(
  'OCI conformance: regcache on S3 (Ceph RADOS Gateway)',
  { skip: skipUnlessCeph() },
  async () => {
    ceph = await startCeph();
    const bucket = await ceph.createBucket('conformance');
    local = await mkdtemp(join(tmpdir(), 'regcache-conformance-s3-'));
    return startServer({
      registryAddr: '127.0.0.1:0',
      cacheAddr: '127.0.0.1:0',
      storage: local,
      s3: {
        url: `s3://${bucket}/registry`,
        endpoint: ceph.endpoint,
        region: ceph.region,
        forcePathStyle: true,
        credentials: { accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey },
      },
      logLevel: 'silent',
    });
  },
  async () => {
    await ceph?.stop();
    if (local) await rm(local, { recursive: true, force: true });
  },
);
