// A regcache server on an S3 bucket of a real Ceph RADOS Gateway whose gateway goes down and
// comes back (the cluster keeps running, only the S3 endpoint stops): pushes answer 503
// UNAVAILABLE naming the bucket, promptly; the tag and the blobs this server has served are
// still answered from its memory and its --cache-dir; the server stays up; once the gateway is
// back the push that failed succeeds and everything pushed before pulls whole, through this
// server and through a fresh one that has nothing in memory.
// The tests share one cluster, one bucket and one server and run in this order: the `before`
// hook pushes and pulls an image and then stops the gateway, the first three tests run with it
// down, the last one starts it again.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startCeph, skipUnlessCeph, type CephS3 } from '../helpers/s3-ceph.js';
import { startRegcacheProcess, httpRequest, listTags, type RegcacheProcess } from '../helpers/regcache.js';
import { tempDir, type TempDir } from '../helpers/proc.js';
import { pullImage, pushImage, randomImage, sha256, type TestImage } from '../helpers/upstream-images.js';

const skip = skipUnlessCeph();

/** What a 503 of the registry says: its first error's code and message. */
function firstError(text: string): { code: string; message: string } {
  return (JSON.parse(text) as { errors: Array<{ code: string; message: string }> }).errors[0]!;
}

describe('one server on S3 while the gateway is down', { skip, concurrency: 1 }, () => {
  let ceph: CephS3;
  let work: TempDir;
  let server: RegcacheProcess;
  let storage: string;
  let first: TestImage;
  const second = randomImage({ layers: 2, layerSize: 192 * 1024 });
  const args = () => ['--storage', storage, '--s3-endpoint', ceph.endpoint, '--s3-path-style'];

  before(async () => {
    ceph = await startCeph();
    // The servers are child processes: they find the gateway's keys the AWS SDK's way.
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: ceph.accessKeyId, AWS_SECRET_ACCESS_KEY: ceph.secretAccessKey, AWS_REGION: ceph.region });
    work = await tempDir('rc-s3-outage-');
    storage = `s3://${await ceph.createBucket('outage')}/x`;
    await mkdir(join(work.path, 'a'));
    server = await startRegcacheProcess(join(work.path, 'a'), [...args(), '--cache-dir', join(work.path, 'a', 'local')]);
    first = await pushImage(server.url, 'team/app', 'v1', randomImage({ layers: 3, layerSize: 256 * 1024 }));
    const pulled = await pullImage({ base: server.url, name: 'team/app' }, 'v1');
    assert.equal(pulled.digest, first.digest);
    await ceph.stopGateway();
  }, { timeout: 180_000 });

  after(async () => {
    await server?.stop();
    await ceph?.stop();
    await work?.cleanup();
  }, { timeout: 120_000 });

  test('a push answers 503 UNAVAILABLE naming the bucket, within seconds', async (t) => {
    const started = Date.now();
    const post = await httpRequest('POST', `${server.url}/v2/team/app/blobs/uploads/`, { headers: { 'content-length': '0' } });
    const postMs = Date.now() - started;
    assert.equal(post.status, 503, `${post.text}\n--- server log ---\n${server.child.log(8192)}`);
    assert.equal(firstError(post.text).code, 'UNAVAILABLE');
    assert.ok(firstError(post.text).message.includes(storage), `the message names ${storage}: ${firstError(post.text).message}`);

    const putStarted = Date.now();
    const put = await httpRequest('PUT', `${server.url}/v2/team/app/manifests/v2`, { body: second.manifest, headers: { 'content-type': second.mediaType } });
    const putMs = Date.now() - putStarted;
    assert.equal(put.status, 503, `${put.text}\n--- server log ---\n${server.child.log(8192)}`);
    assert.equal(firstError(put.text).code, 'UNAVAILABLE');
    assert.ok(firstError(put.text).message.includes(storage), firstError(put.text).message);
    t.diagnostic(`upload POST answered 503 in ${postMs} ms, manifest PUT in ${putMs} ms`);
    // The bound is the "clear 503s", not a performance target: the SDK is set to 3 s
    // connection timeouts and 3 attempts, and a refused connection fails at once.
    assert.ok(postMs < 15_000 && putMs < 15_000, `answered in ${postMs} ms and ${putMs} ms`);
  });

  test('the tag read before is answered from memory, its blobs from the local copies', async () => {
    const pulled = await pullImage({ base: server.url, name: 'team/app' }, 'v1');
    assert.equal(pulled.digest, first.digest);
    for (const blob of first.blobs) assert.ok(pulled.blobs.get(blob.digest)!.equals(blob.data), blob.digest);
    const byDigest = await httpRequest('HEAD', `${server.url}/v2/team/app/manifests/${first.digest}`, { headers: { accept: first.mediaType } });
    assert.equal(byDigest.status, 200);

    // What the server never saw cannot be answered: 503, not 404 (the bucket may hold it).
    const unknownTag = await httpRequest('GET', `${server.url}/v2/team/app/manifests/never-pushed`, { headers: { accept: first.mediaType } });
    assert.equal(unknownTag.status, 503, unknownTag.text);
    const unknownBlob = await httpRequest('GET', `${server.url}/v2/team/app/blobs/${sha256('never pushed')}`);
    assert.equal(unknownBlob.status, 503, unknownBlob.text);
    // Listings are read from the bucket each time.
    const tags = await httpRequest('GET', `${server.url}/v2/team/app/tags/list`);
    assert.equal(tags.status, 503, tags.text);
    assert.equal(firstError(tags.text).code, 'UNAVAILABLE');
  });

  test('the server stays up: GET /v2/ answers 200', async () => {
    const base = await httpRequest('GET', `${server.url}/v2/`);
    assert.equal(base.status, 200);
    assert.equal(server.child.exitInfo(), undefined, 'the process is running');
  });

  test('after the gateway is back, the same push succeeds and everything pushed before pulls whole, here and through a fresh server', async (t) => {
    const started = Date.now();
    await ceph.startGateway();
    t.diagnostic(`gateway answering again after ${Date.now() - started} ms`);
    await pushImage(server.url, 'team/app', 'v2', second);
    for (const [tag, image] of [['v1', first], ['v2', second]] as const) {
      const pulled = await pullImage({ base: server.url, name: 'team/app' }, tag);
      assert.equal(pulled.digest, image.digest, tag);
    }
    assert.deepEqual(await listTags(server.url, 'team/app'), ['v1', 'v2']);

    // A server with an empty memory and an empty --cache-dir reads it all from the bucket.
    await mkdir(join(work.path, 'b'));
    const fresh = await startRegcacheProcess(join(work.path, 'b'), [...args(), '--cache-dir', join(work.path, 'b', 'local')]);
    t.after(async () => void (await fresh.stop()));
    for (const [tag, image] of [['v1', first], ['v2', second]] as const) {
      const pulled = await pullImage({ base: fresh.url, name: 'team/app' }, tag);
      assert.equal(pulled.digest, image.digest, tag);
      for (const blob of image.blobs) assert.ok(pulled.blobs.get(blob.digest)!.equals(blob.data), `${tag} ${blob.digest}`);
    }
    assert.deepEqual(await listTags(fresh.url, 'team/app'), ['v1', 'v2']);
  });
});
