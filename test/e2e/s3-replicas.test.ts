// Two regcache servers on one S3 bucket of a real Ceph RADOS Gateway, each started as users
// start it (`regcache serve --storage s3://bucket/prefix ...`, its own --cache-dir): what one
// accepts the other serves, the same tag pushed through both at once is never torn, a blob
// pushed through one while the other collects garbage is kept for the manifest that names it,
// an upload continues on the other server after the first was killed, and the cache ports of
// both fetch each blob from their one upstream once in all.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { join } from 'node:path';
import { readdir } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { request, Agent } from 'undici';
import { startCeph, skipUnlessCeph, type CephS3 } from '../helpers/s3-ceph.js';
import { DIST_CLI, startRegcacheProcess, type RegcacheProcess } from '../helpers/regcache.js';
import { tempDir } from '../helpers/proc.js';
import { startDistribution } from '../helpers/distribution.js';
import { getBlob, getManifest, pullImage, pushBlob, pushManifest, randomImage, seedImage, sha256 } from '../helpers/upstream-images.js';
import { skipUnless } from '../helpers/tools.js';

const run = promisify(execFile);
const skip = skipUnlessCeph() || skipUnless(['docker-registry']);

describe('two servers on one S3 bucket', { skip, concurrency: 1 }, () => {
  let ceph: CephS3;
  before(async () => {
    ceph = await startCeph();
    // The servers are child processes: they find the gateway's keys the AWS SDK's way.
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: ceph.accessKeyId, AWS_SECRET_ACCESS_KEY: ceph.secretAccessKey, AWS_REGION: ceph.region });
  });
  after(async () => {
    await ceph?.stop();
  });

  /** Starts `n` servers on one fresh bucket, each with its own directory; stopped after the test. */
  async function replicas(t: { after(fn: () => Promise<void>): void }, n: number, extra: string[] = []): Promise<{ servers: RegcacheProcess[]; storage: string; dirs: string[] }> {
    const bucket = await ceph.createBucket('replicas');
    const storage = `s3://${bucket}/registry`;
    const servers: RegcacheProcess[] = [];
    const dirs: string[] = [];
    for (let i = 0; i < n; i++) {
      const dir = await tempDir(`rc-replica-${i}-`, t);
      dirs.push(dir.path);
      const server = await startRegcacheProcess(dir.path, ['--storage', storage, '--s3-endpoint', ceph.endpoint, '--s3-path-style', '--cache-dir', join(dir.path, 'local'), ...extra]);
      servers.push(server);
      t.after(async () => void (await server.stop()));
    }
    return { servers, storage, dirs };
  }

  test('an image pushed through one server is pulled whole through the other', async (t) => {
    const { servers: [a, b] } = await replicas(t, 2);
    const image = await seedImage(a!.url, 'team/app', 'v1', { layers: 3, layerSize: 256 * 1024 });
    const pulled = await pullImage({ base: b!.url, name: 'team/app' }, 'v1');
    assert.equal(pulled.digest, image.digest);
    for (const blob of image.blobs) assert.ok(pulled.blobs.get(blob.digest)!.equals(blob.data), blob.digest);
    const tags = await request(`${b!.url}/v2/team/app/tags/list`);
    assert.deepEqual(await tags.body.json(), { name: 'team/app', tags: ['v1'] });
  });

  test('the same tag pushed through both servers at once points at one of the two images, whole on both', async (t) => {
    const { servers } = await replicas(t, 2);
    const images = [randomImage({ layers: 2, layerSize: 128 * 1024 }), randomImage({ layers: 2, layerSize: 128 * 1024 })];
    for (let round = 0; round < 5; round++) {
      await Promise.all(servers.map(async (s, i) => {
        for (const blob of images[i]!.blobs) await pushBlob(s.url, 'team/race', blob);
        await pushManifest(s.url, 'team/race', 'latest', images[i]!.manifest, images[i]!.mediaType);
      }));
      // Reads are trusted for 2 s on a shared bucket: ask after that, through both.
      await new Promise((r) => setTimeout(r, 2_100));
      const seen = await Promise.all(servers.map((s) => getManifest({ base: s.url, name: 'team/race' }, 'latest')));
      assert.equal(seen[0]!.digest, seen[1]!.digest, `round ${round}: both servers name the same manifest`);
      const winner = images.find((i) => i.digest === seen[0]!.digest);
      assert.ok(winner, `round ${round}: the tag names one of the pushed images, not a mix`);
      for (const s of servers) await pullImage({ base: s.url, name: 'team/race' }, 'latest');
    }
  });

  test('a push through one server while the other collects garbage: every manifest accepted keeps its blobs', async (t) => {
    const { servers: [a, b], dirs } = await replicas(t, 2);
    const accepted: Array<ReturnType<typeof randomImage>> = [];
    let refused = 0;
    for (let round = 0; round < 4; round++) {
      const image = randomImage({ layers: 3, layerSize: 256 * 1024 });
      const push = (async () => {
        for (const blob of image.blobs) await pushBlob(b!.url, 'team/gc', blob);
        try {
          await pushManifest(b!.url, 'team/gc', `r${round}`, image.manifest, image.mediaType);
          accepted.push(image);
        } catch (err) {
          // A blob collected before its manifest came (--grace 0) is refused, never accepted half.
          assert.match(String(err), /MANIFEST_BLOB_UNKNOWN/);
          refused++;
        }
      })();
      // Server a collects with no grace period at all, asked the way an operator asks it.
      const gc = run(process.execPath, [DIST_CLI, 'gc', '--storage', join(dirs[0]!, 'local'), '--grace', '0s', '--json'], { timeout: 60_000 });
      await Promise.all([push, gc]);
    }
    await run(process.execPath, [DIST_CLI, 'gc', '--storage', join(dirs[0]!, 'local'), '--grace', '0s', '--json'], { timeout: 60_000 });
    t.diagnostic(`manifests accepted: ${accepted.length}, refused for a collected blob: ${refused}`);
    assert.ok(accepted.length > 0, `some pushes were accepted (refused: ${refused})`);
    for (const image of accepted) {
      for (const s of [a!, b!]) {
        const pulled = await pullImage({ base: s.url, name: 'team/gc' }, image.digest);
        assert.equal(pulled.blobs.size, image.blobs.length);
      }
    }
  });

  test('an upload continues through the other server after the first was killed with SIGKILL', async (t) => {
    const { servers: [a, b] } = await replicas(t, 2);
    const data = randomBytes(12 * 1024 * 1024);
    const digest = sha256(data);
    const post = await request(`${a!.url}/v2/team/resume/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
    assert.equal(post.statusCode, 202);
    await post.body.dump();
    const path = String(post.headers.location);
    const half = 7 * 1024 * 1024;
    const patch = await request(new URL(path, a!.url), { method: 'PATCH', body: data.subarray(0, half), headers: { 'content-type': 'application/octet-stream', 'content-range': `0-${half - 1}` } });
    assert.equal(patch.statusCode, 202);
    await patch.body.dump();
    process.kill(a!.child.pid, 'SIGKILL');
    await a!.child.exited;

    const status = await request(new URL(path, b!.url));
    assert.equal(status.statusCode, 204);
    assert.equal(status.headers.range, `0-${half - 1}`, 'the other server knows how far the upload got');
    await status.body.dump();
    const put = await request(`${new URL(path, b!.url)}${path.includes('?') ? '&' : '?'}digest=${digest}`, {
      method: 'PUT',
      body: data.subarray(half),
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${half}-${data.length - 1}` },
    });
    assert.equal(put.statusCode, 201, await put.body.text());
    const got = await getBlob({ base: b!.url, name: 'team/resume' }, digest);
    assert.equal(got.byteLength, data.length);
  });

  test('with --s3-redirect a blob GET is a 307 to a presigned URL of the bucket, which serves the bytes', async (t) => {
    const { servers: [a] } = await replicas(t, 1, ['--s3-redirect']);
    const image = await seedImage(a!.url, 'team/redirect', 'v1', { layers: 1, layerSize: 512 * 1024 });
    const layer = image.layers[0]!;
    const res = await request(`${a!.url}/v2/team/redirect/blobs/${layer.digest}`);
    await res.body.dump();
    assert.equal(res.statusCode, 307);
    const location = String(res.headers.location);
    assert.ok(location.startsWith(`${ceph.endpoint}/`), `redirected to the gateway: ${location}`);
    assert.match(location, /X-Amz-Signature=/);
    const bytes = Buffer.from(await (await request(location)).body.arrayBuffer());
    assert.equal(sha256(bytes), layer.digest);
  });

  test('with --cache-dir-size 0 a server keeps no local copies: blobs stream from the bucket, ranges too', async (t) => {
    const { servers: [a, b], dirs } = await replicas(t, 2, ['--cache-dir-size', '0']);
    const image = await seedImage(a!.url, 'team/nocopies', 'v1', { layers: 2, layerSize: 300 * 1024 });
    const pulled = await pullImage({ base: b!.url, name: 'team/nocopies' }, 'v1');
    assert.equal(pulled.digest, image.digest);
    const layer = image.layers[0]!;
    const part = await request(`${b!.url}/v2/team/nocopies/blobs/${layer.digest}`, { headers: { range: 'bytes=1000-1999' } });
    assert.equal(part.statusCode, 206);
    assert.ok(Buffer.from(await part.body.arrayBuffer()).equals(layer.data.subarray(1000, 2000)));
    for (const dir of dirs) {
      const copies = await readdir(join(dir, 'local', 'blobs'), { recursive: true }).catch(() => []);
      assert.deepEqual(copies.filter((f) => /^[0-9a-f]{64}$/.test(String(f).split('/').pop()!)), [], `no blob file under ${dir}/local/blobs`);
    }
  });

  test('the cache ports of both servers fetch each blob from their upstream once in all', async (t) => {
    const upstream = await startDistribution();
    t.after(() => upstream.stop());
    const image = await seedImage(upstream.url, 'library/shared', 'v1', { layers: 3, layerSize: 2 * 1024 * 1024 });
    const { servers } = await replicas(t, 2, ['--upstream', `docker.io=${upstream.url}`]);
    const agents = Array.from({ length: 6 }, () => new Agent({ connections: 2 }));
    t.after(() => Promise.all(agents.map((x) => x.close())).then(() => {}));
    const pulls = await Promise.all(agents.map((dispatcher, i) => pullImage({ base: servers[i % 2]!.ready.cache, name: 'shared', dispatcher }, 'v1')));
    for (const p of pulls) assert.equal(p.digest, image.digest);
    const log = await upstream.accessLog();
    for (const blob of image.blobs) {
      const gets = log.filter((e) => e.method === 'GET' && e.path.endsWith(`/blobs/${blob.digest}`));
      assert.equal(gets.length, 1, `${blob.digest} fetched once:\n${log.map((e) => `${e.method} ${e.path} ${e.status}`).join('\n')}`);
    }
  });
});
