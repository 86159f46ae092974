// Scenario: the compose files of examples/compose, run with Debian's docker-compose 1.29 against
// the test dockerd, the image tagged `regcache` as they name it. The test dockerd has no bridge,
// so published ports cannot work: each file is copied into a temp dir without its `ports:` list
// (docker-compose refuses them beside host networking, and an override cannot remove them), and
// an override file adds `network_mode: host` with free loopback ports as REGISTRY_HTTP_ADDR /
// REGISTRY_HTTP_DEBUG_ADDR (and, for the cache, the local upstream as REGISTRY_PROXY_REMOTEURL
// in place of Docker Hub). Everything else is the example as written.
// - The secured registry (htpasswd + TLS + delete): docker login, push, pull; a delete answers 202.
// - The Docker Hub cache: with the daemon's registry-mirrors pointing at it, `docker pull` of an
//   image that only the local upstream (Debian's docker-registry) has comes through the cache.
// - Two replicas on one bucket of a real Ceph RADOS Gateway (test/helpers/s3-ceph.ts), given to
//   docker-compose as S3_ENDPOINT, S3_BUCKET and the AWS_* keys: `docker push` through replica a,
//   `docker pull` through replica b (and each blob fetched through b over HTTP), which lists the
//   repository in its catalog.
import assert from 'node:assert/strict';
import { chmod, chown, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import bcrypt from 'bcryptjs';
import { Agent } from 'undici';
import { makeTestCertificates } from '../helpers/certs.js';
import { startDistribution } from '../helpers/distribution.js';
import { REPOSITORY_ROOT, skipUnlessBaseNode } from '../helpers/node-base.js';
import { type TempDir, freePort, run, tempDir, waitFor } from '../helpers/proc.js';
import { headManifest, httpRequest, listTags } from '../helpers/regcache.js';
import { type ImageRig, IMAGE_TOOLS, buildImageRig, uniqueName } from '../helpers/regcache-image.js';
import { importBusyboxImage } from '../helpers/rootfs.js';
import { skipUnlessCeph, startCeph } from '../helpers/s3-ceph.js';
import { skipUnless, toolPath } from '../helpers/tools.js';
import { pullImage } from '../helpers/upstream-images.js';

const skip = skipUnless([...IMAGE_TOOLS, 'docker-compose', 'docker-registry', 'openssl'], { root: true }) || skipUnlessBaseNode();

const USER = 'compose-user';
const PASSWORD = 'compose password';

/** A compose project: the example copied into `dir`, with the test's override beside it. */
interface Project {
  dir: string;
  name: string;
  compose(args: readonly string[]): Promise<{ stdout: string; stderr: string }>;
}

/** Copies examples/compose/<example>/docker-compose.yml into a fresh dir and writes the override. */
async function project(rig: ImageRig, work: TempDir, example: string, override: string, extraEnv: Record<string, string> = {}): Promise<Project> {
  const dir = join(work.path, example);
  await mkdir(dir, { recursive: true });
  const text = await readFile(join(REPOSITORY_ROOT, 'examples', 'compose', example, 'docker-compose.yml'), 'utf8');
  // docker-compose 1.29 refuses published ports beside network_mode: host, and an override cannot
  // remove them: the copy loses its `ports:` lists (one per service), and nothing else.
  const withoutPorts = text.replace(/^( +)ports:\n(\1 +- .*\n)+/gm, '');
  assert.notEqual(withoutPorts, text, 'the example publishes its port');
  await writeFile(join(dir, 'docker-compose.yml'), withoutPorts);
  await writeFile(join(dir, 'docker-compose.test.yml'), override);
  const name = uniqueName(`rc${example}`).replace(/-/g, '');
  const env = { ...rig.dockerd.clientEnv, DOCKER_HOST: rig.dockerd.host, ...extraEnv };
  return {
    dir,
    name,
    compose: (args) => run(toolPath('docker-compose'), ['-p', name, '-f', 'docker-compose.yml', '-f', 'docker-compose.test.yml', ...args], { cwd: dir, env, timeoutMs: 300_000 }),
  };
}

/** Waits until `url` + /v2/ answers one of `statuses` (TLS not verified), or the compose service stops. */
async function waitAnswering(p: Project, service: string, url: string, statuses: readonly number[]): Promise<void> {
  const insecure = new Agent({ connect: { rejectUnauthorized: false } });
  try {
    await waitFor(async () => {
      const r = await httpRequest('GET', `${url}/v2/`, { dispatcher: insecure });
      return statuses.includes(r.status);
    }, { what: `${service} answering ${url}/v2/`, timeoutMs: 60_000, intervalMs: 250 });
  } catch (err) {
    const logs = await p.compose(['logs', '--no-color', service]).catch((e: Error) => ({ stdout: e.message }));
    throw new Error(`${(err as Error).message}\n--- docker-compose logs ---\n${logs.stdout}`);
  } finally {
    await insecure.close();
  }
}

describe('the compose examples with docker-compose', { skip }, () => {
  let rig: ImageRig;
  let work: TempDir;
  before(async () => {
    work = await tempDir('rc-compose-');
    await chmod(work.path, 0o755); // the container's uid 1000 reads the mounted files
    rig = await buildImageRig();
    await rig.dockerd.docker(['tag', rig.image, 'regcache']);
  }, { timeout: 600_000 });
  after(async () => {
    await rig?.dockerd.stop();
    await work?.cleanup();
  });

  test('the secured registry (htpasswd, TLS, delete): login, push, pull, delete', async (t) => {
    const [port, debugPort] = [await freePort(), await freePort()];
    const p = await project(rig, work, 'registry', [
      'services:',
      '  registry:',
      '    network_mode: host',
      '    environment:',
      `      REGISTRY_HTTP_ADDR: 127.0.0.1:${port}`,
      `      REGISTRY_HTTP_DEBUG_ADDR: 127.0.0.1:${debugPort}`,
      '',
    ].join('\n'));
    // What the example asks for: certs/domain.{crt,key}, auth/htpasswd, data/ owned by uid 1000.
    await mkdir(join(p.dir, 'certs'));
    const certs = await makeTestCertificates(join(p.dir, 'certs'), { ips: ['127.0.0.1'] });
    await copyFile(certs.cert, join(p.dir, 'certs', 'domain.crt'));
    await copyFile(certs.key, join(p.dir, 'certs', 'domain.key'));
    await chmod(join(p.dir, 'certs', 'domain.key'), 0o644);
    await mkdir(join(p.dir, 'auth'));
    await writeFile(join(p.dir, 'auth', 'htpasswd'), `${USER}:${bcrypt.hashSync(PASSWORD, 5)}\n`, { mode: 0o644 });
    await mkdir(join(p.dir, 'data'));
    await chown(join(p.dir, 'data'), 1000, 1000);

    t.after(() => p.compose(['down', '--volumes', '--timeout', '30']).catch(() => undefined));
    await p.compose(['up', '-d']);
    const url = `https://127.0.0.1:${port}`;
    await waitAnswering(p, 'registry', url, [401]);

    const host = `127.0.0.1:${port}`;
    const ref = `${host}/e2e/compose:1`;
    await importBusyboxImage(rig.dockerd, ref);
    const anonymous = await rig.dockerd.docker(['push', ref], { allowFail: true });
    assert.notEqual(anonymous.code, 0, 'a push without login is refused');
    const login = await rig.dockerd.docker(['login', host, '-u', USER, '--password-stdin'], { input: `${PASSWORD}\n` });
    assert.match(login.stdout, /Login Succeeded/);
    const push = await rig.dockerd.docker(['push', ref]);
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(push.stdout)?.[1];
    assert.ok(digest, push.stdout);
    await rig.dockerd.docker(['rmi', ref]);
    await rig.dockerd.docker(['image', 'prune', '--force']);
    assert.match((await rig.dockerd.docker(['pull', ref])).stdout, /Pull complete/);

    const insecure = new Agent({ connect: { rejectUnauthorized: false } });
    try {
      const auth = { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` };
      const challenge = await httpRequest('GET', `${url}/v2/`, { dispatcher: insecure });
      assert.equal(challenge.headers['www-authenticate'], 'Basic realm="Registry Realm"');
      assert.deepEqual(await listTags(url, 'e2e/compose', { dispatcher: insecure, headers: auth }), ['1']);
      assert.equal((await headManifest(url, 'e2e/compose', '1', { dispatcher: insecure, headers: auth })).digest, digest);
      const del = await httpRequest('DELETE', `${url}/v2/e2e/compose/manifests/${digest}`, { dispatcher: insecure, headers: auth });
      assert.equal(del.status, 202, 'REGISTRY_STORAGE_DELETE_ENABLED turned deletes on');
    } finally {
      await insecure.close();
    }
  });

  test('the Docker Hub cache on 5001: a daemon whose mirror it is pulls through it from the upstream', async (t) => {
    const upstream = await startDistribution();
    t.after(() => upstream.stop());
    const upstreamHost = upstream.url.replace('http://', '');
    const original = `${upstreamHost}/e2e/cached:1`;
    await importBusyboxImage(rig.dockerd, original);
    const pushed = await rig.dockerd.docker(['push', original]);
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(pushed.stdout)?.[1];
    assert.ok(digest);
    await rig.dockerd.docker(['rmi', original]);
    await rig.dockerd.docker(['image', 'prune', '--force']);

    const port = await freePort();
    const p = await project(rig, work, 'cache', [
      'services:',
      '  cache:',
      '    network_mode: host',
      '    environment:',
      `      REGISTRY_HTTP_ADDR: 127.0.0.1:${port}`,
      `      REGISTRY_PROXY_REMOTEURL: ${upstream.url}`,
      '',
    ].join('\n'));
    t.after(() => p.compose(['down', '--volumes', '--timeout', '30']).catch(() => undefined));
    await p.compose(['up', '-d']);
    await waitAnswering(p, 'cache', `http://127.0.0.1:${port}`, [200]);

    await rig.dockerd.reload({ 'registry-mirrors': [`http://127.0.0.1:${port}`] });
    t.after(() => rig.dockerd.reload({}));
    // Docker Hub's name for it: the daemon asks its mirror, which asks the upstream.
    const pull = await rig.dockerd.docker(['pull', 'e2e/cached:1']);
    assert.match(pull.stdout, new RegExp(`Digest: ${digest}`));
    const log = await upstream.accessLog();
    assert.ok(log.some((e) => e.method === 'GET' && e.path.startsWith('/v2/e2e/cached/blobs/') && e.status === 200), `the cache fetched the layers from the upstream: ${JSON.stringify(log)}`);
    const blobGets = log.filter((e) => e.path.includes('/blobs/')).length;

    // A second daemon-side pull after forgetting the image is served by the cache alone.
    await rig.dockerd.docker(['rmi', 'e2e/cached:1']);
    await rig.dockerd.docker(['image', 'prune', '--force']);
    await rig.dockerd.docker(['pull', 'e2e/cached:1']);
    assert.equal((await upstream.accessLog()).filter((e) => e.path.includes('/blobs/')).length, blobGets, 'no blob fetched upstream again');
  });

  test('two replicas on one S3 bucket: docker push through a, docker pull through b', { skip: skipUnlessCeph(), timeout: 600_000 }, async (t) => {
    const ceph = await startCeph();
    t.after(() => ceph.stop());
    const bucket = await ceph.createBucket('compose');
    const [aPort, aCache, bPort, bCache] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const service = (name: string, port: number, cache: number) => [
      `  ${name}:`,
      '    network_mode: host',
      '    environment:',
      `      REGISTRY_HTTP_ADDR: 127.0.0.1:${port}`,
      `      REGISTRY_HTTP_DEBUG_ADDR: 127.0.0.1:${cache}`,
    ];
    const p = await project(rig, work, 'replicas', ['services:', ...service('regcache-a', aPort, aCache), ...service('regcache-b', bPort, bCache), ''].join('\n'), {
      S3_ENDPOINT: ceph.endpoint,
      S3_BUCKET: bucket,
      AWS_ACCESS_KEY_ID: ceph.accessKeyId,
      AWS_SECRET_ACCESS_KEY: ceph.secretAccessKey,
    });
    t.after(() => p.compose(['down', '--volumes', '--timeout', '30']).catch(() => undefined));
    await p.compose(['up', '-d']);
    await waitAnswering(p, 'regcache-a', `http://127.0.0.1:${aPort}`, [200]);
    await waitAnswering(p, 'regcache-b', `http://127.0.0.1:${bPort}`, [200]);

    const pushed = `127.0.0.1:${aPort}/e2e/replicated:1`;
    await importBusyboxImage(rig.dockerd, pushed);
    const push = await rig.dockerd.docker(['push', pushed]);
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(push.stdout)?.[1];
    assert.ok(digest, push.stdout);
    await rig.dockerd.docker(['rmi', pushed]);
    await rig.dockerd.docker(['image', 'prune', '--force']);

    const pulled = `127.0.0.1:${bPort}/e2e/replicated:1`;
    const pull = await rig.dockerd.docker(['pull', pulled]);
    assert.match(pull.stdout, new RegExp(`Digest: ${digest}`));
    // The daemon may keep the busybox layer from the tests before ("Already exists"): every blob
    // is also fetched through b and checked against its digest.
    const b = `http://127.0.0.1:${bPort}`;
    const image = await pullImage({ base: b, name: 'e2e/replicated' }, '1');
    assert.equal(image.digest, digest);
    assert.ok(image.blobs.size >= 2, 'config and layer');
    const catalog = await httpRequest('GET', `${b}/v2/_catalog`);
    assert.equal(catalog.status, 200, catalog.text);
    assert.deepEqual((JSON.parse(catalog.text) as { repositories: string[] }).repositories, ['e2e/replicated']);
    assert.deepEqual(await listTags(b, 'e2e/replicated'), ['1']);
    // Each replica stores in the bucket under distribution's rootdirectory (the example's default).
    const listed = await ceph.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'regcache/', MaxKeys: 1 }));
    assert.ok((listed.KeyCount ?? 0) > 0, 'the bucket holds objects under regcache/');
  });
});
