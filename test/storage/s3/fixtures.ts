// Fixtures of the S3 backend tests: an S3Location on a Ceph gateway's bucket, as a server would
// open it (its own client, like another replica's), closed when the test ends.
import type { TestContext } from 'node:test';
import type { CephS3 } from '../../helpers/s3-ceph.js';
import { openS3Location, type S3Location, type S3Settings } from '../../../src/storage/s3/location.js';

/** A location (own client) on `bucket` under `prefix`, as one replica opens it; its client is closed after the test. */
export function replicaLocation(t: TestContext, ceph: CephS3, bucket: string, prefix = 'regcache', extra: Partial<S3Settings> = {}): S3Location {
  const location = openS3Location({
    url: `s3://${bucket}/${prefix}`,
    endpoint: ceph.endpoint,
    region: ceph.region,
    forcePathStyle: true,
    credentials: { accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey },
    ...extra,
  });
  t.after(() => location.client.destroy());
  return location;
}
