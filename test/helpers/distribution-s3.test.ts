// The distribution test helper on S3: Debian's distribution 2.8 (s3-aws driver) stores what is
// pushed to it in a bucket of a real Ceph RADOS Gateway (test/helpers/s3-ceph.ts), both with the
// configuration the helper builds and with a configuration file of the test's own, and serves
// blobs itself (no redirect to the gateway). The baseline of issue 14's replicas on one bucket.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { s3StorageEnv, startDistribution, type Distribution } from './distribution.js';
import { skipUnlessCeph, startCeph, type CephS3 } from './s3-ceph.js';

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Uploads a blob: POST, then PUT ?digest= with the body. */
async function pushBlob(url: string, repo: string, blob: Buffer): Promise<void> {
  const post = await request(`${url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  await post.body.dump();
  assert.equal(post.statusCode, 202);
  const loc = new URL(String(post.headers.location), url);
  loc.searchParams.set('digest', digestOf(blob));
  const put = await request(loc, { method: 'PUT', body: blob, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.statusCode, 201, await put.body.text());
}

/** Pushes one layer and a manifest naming it; returns the layer. */
async function pushImage(url: string, repo: string): Promise<{ blob: Buffer; digest: string }> {
  const blob = randomBytes(6 * 1024 * 1024 + 17); // above the driver's 5 MiB multipart minimum
  const digest = digestOf(blob);
  await pushBlob(url, repo, blob);
  const config = Buffer.from('{}');
  await pushBlob(url, repo, config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.byteLength },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: blob.byteLength }],
  });
  const mput = await request(`${url}/v2/${repo}/manifests/v1`, { method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(mput.statusCode, 201, await mput.body.text());
  return { blob, digest };
}

async function keysUnder(ceph: CephS3, bucket: string, prefix: string): Promise<string[]> {
  const out = await ceph.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!);
}

describe('distribution on a Ceph RADOS Gateway', { skip: skipUnlessCeph() }, () => {
  let ceph: CephS3;
  before(async () => {
    ceph = await startCeph();
  });
  after(async () => {
    await ceph?.stop();
  });

  async function roundTrip(d: Distribution, bucket: string, root: string): Promise<void> {
    const { blob, digest } = await pushImage(d.url, 'smoke/app');
    const get = await request(`${d.url}/v2/smoke/app/blobs/${digest}`);
    const body = Buffer.from(await get.body.arrayBuffer());
    assert.equal(get.statusCode, 200, 'served by the registry, not redirected to the gateway');
    assert.ok(body.equals(blob));
    const keys = await keysUnder(ceph, bucket, `${root}/docker/registry/v2/`);
    assert.ok(keys.includes(`${root}/docker/registry/v2/blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}/data`), keys.join('\n'));
    assert.ok(keys.some((k) => k.endsWith('/_manifests/tags/v1/current/link')), 'the tag is in the bucket');
  }

  test('with the configuration the helper builds', async () => {
    const bucket = await ceph.createBucket('dist');
    const d = await startDistribution({ storage: 's3', env: s3StorageEnv(ceph, bucket, '/reg') });
    try {
      await roundTrip(d, bucket, 'reg');
    } finally {
      await d.stop();
    }
  });

  test("with the test's own configuration file (no filesystem driver added)", async () => {
    const bucket = await ceph.createBucket('dist');
    const configFile = join(ceph.dir, `config-${randomBytes(4).toString('hex')}.yml`);
    await writeFile(configFile, 'version: 0.1\nlog: {level: warn}\nstorage: {delete: {enabled: true}}\nhttp: {addr: 127.0.0.1:1, secret: s}\n');
    const d = await startDistribution({ storage: 's3', configFile, env: s3StorageEnv(ceph, bucket) });
    try {
      await roundTrip(d, bucket, 'distribution');
    } finally {
      await d.stop();
    }
  });
});
