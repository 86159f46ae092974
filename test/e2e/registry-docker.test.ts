// Scenario: Docker (dockerd 20.10 and its CLI) uses regcache's registry port as a plain-HTTP
// registry on 127.0.0.1: push an image, pull it back into an empty daemon and run it, build on
// top of it (FROM pulls it; classic builder and BuildKit), push the build (its base layer is
// mounted across repositories), and pull and run that on a second, fresh dockerd. What docker
// reports (push digests, RepoDigests, image IDs) is checked against what regcache serves.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type Dockerd, startDockerd } from '../helpers/dockerd.js';
import { waitFor } from '../helpers/proc.js';
import { type RecordedRequest, headManifest, listTags, startRegcache } from '../helpers/regcache.js';
import { importBusyboxImage } from '../helpers/rootfs.js';
import { skipUnless } from '../helpers/tools.js';

/** Starts `count` dockerds side by side; stops the ones that started if any fails. */
async function startDockerds(count: number, t: { after(fn: () => Promise<void>): void }): Promise<Dockerd[]> {
  const settled = await Promise.allSettled(Array.from({ length: count }, () => startDockerd()));
  const started = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  t.after(async () => {
    await Promise.all(started.map((d) => d.stop()));
  });
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return started;
}

/** The manifest digest docker recorded for `ref` (from RepoDigests, `<repo>@<digest>`). */
async function repoDigest(d: Dockerd, ref: string): Promise<string> {
  const out = (await d.docker(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', ref])).stdout.trim();
  const at = out.lastIndexOf('@');
  assert.ok(at > 0, `RepoDigests of ${ref}: ${out}`);
  assert.equal(out.slice(0, at), ref.slice(0, ref.lastIndexOf(':')), 'RepoDigests names the repository');
  return out.slice(at + 1);
}

const imageId = async (d: Dockerd, ref: string) => (await d.docker(['image', 'inspect', '--format', '{{.Id}}', ref])).stdout.trim();

/**
 * Removes every image from a dockerd and checks that none is left. Waits first until no
 * container is left: dockerd removes a `run --rm` container after the client has returned,
 * and until then the container holds on to its image's layers.
 */
async function removeAllImages(d: Dockerd): Promise<void> {
  await waitFor(async () => (await d.docker(['ps', '-aq'])).stdout === '', { what: 'containers to be removed', timeoutMs: 10_000 });
  const ids = (await d.docker(['images', '-aq'])).stdout.split('\n').filter(Boolean);
  if (ids.length > 0) await d.docker(['rmi', '-f', ...new Set(ids)]);
  await d.docker(['image', 'prune', '--all', '--force']);
  assert.equal((await d.docker(['images', '-aq'])).stdout, '', 'no image left');
}

describe('docker push/pull/build against the registry port', { skip: skipUnless(['docker', 'dockerd', 'containerd', 'runc', 'busybox'], { root: true }) }, () => {
  test('push, pull back and run; build FROM the pushed image; push the build; pull and run it on a second dockerd', async (t) => {
    const rc = await startRegcache({}, t);
    const [first, second] = await startDockerds(2, t);
    assert.ok(first && second);
    const app = `${rc.host}/e2e/app:1`;
    const built = `${rc.host}/e2e/built:1`;
    let appDigest = '';

    await t.test('docker push of an imported image; regcache serves the digest docker reports', async () => {
      await importBusyboxImage(first, app);
      const push = await first.docker(['push', app]);
      const pushed = /^1: digest: (sha256:[0-9a-f]{64}) size: \d+$/m.exec(push.stdout)?.[1];
      assert.ok(pushed, `push output names the digest:\n${push.stdout}`);
      appDigest = await repoDigest(first, app);
      assert.equal(appDigest, pushed);
      assert.deepEqual(await listTags(rc.url, 'e2e/app'), ['1']);
      const head = await headManifest(rc.url, 'e2e/app', '1');
      assert.equal(head.status, 200);
      assert.equal(head.digest, appDigest);
      assert.equal(head.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
      assert.equal((await headManifest(rc.url, 'e2e/app', appDigest)).status, 200, 'also by digest');
    });

    await t.test('rmi + prune, then docker pull downloads it again and it runs', async () => {
      await removeAllImages(first);
      const pull = await first.docker(['pull', app]);
      assert.match(pull.stdout, /Pull complete/, 'layers were downloaded, not found locally');
      assert.match(pull.stdout, new RegExp(`Digest: ${appDigest}`));
      assert.equal(await repoDigest(first, app), appDigest);
      const r = await first.docker(['run', '--rm', '--network', 'none', app, 'sh', '-c', 'echo pulled; id -u']);
      assert.equal(r.stdout, 'pulled\n0\n');
    });

    await t.test('docker build FROM the pushed image pulls it through the registry (classic builder, then BuildKit)', async () => {
      const ctx = join(first.dir, 'ctx');
      await mkdir(ctx);
      await writeFile(join(ctx, 'Dockerfile'), `FROM ${app}\nRUN echo built > /built\n`);
      // What FROM must ask the registry: the tag. What else it fetches depends on the daemon's
      // caches (dockerd 20.10 keeps pulled manifests in its containerd's content store until
      // that collects them), so blob downloads are asserted by the pulls, not here.
      const resolvedTag = (since: readonly RecordedRequest[]) =>
        since.some((r) => /^(HEAD|GET)$/.test(r.method) && r.url === '/v2/e2e/app/manifests/1' && r.status === 200);

      await removeAllImages(first);
      let before = rc.requests.length;
      const classic = await first.docker(['build', '-t', built, ctx]);
      assert.match(classic.stdout, /Pulling from e2e\/app/);
      assert.ok(resolvedTag(rc.requests.slice(before)), `the classic builder resolved ${app}: ${JSON.stringify(rc.requests.slice(before))}`);
      assert.equal((await first.docker(['run', '--rm', '--network', 'none', built, 'cat', '/built'])).stdout, 'built\n');

      // BuildKit asks the registry only when the base tag is not local. Without a bridge network
      // it needs --network none for RUN.
      await first.docker(['rmi', app]);
      before = rc.requests.length;
      await first.docker(['build', '--network', 'none', '-t', 'e2e/built:buildkit', ctx], { env: { DOCKER_BUILDKIT: '1' } });
      assert.ok(resolvedTag(rc.requests.slice(before)), `BuildKit resolved ${app}: ${JSON.stringify(rc.requests.slice(before))}`);
      assert.equal((await first.docker(['run', '--rm', '--network', 'none', 'e2e/built:buildkit', 'cat', '/built'])).stdout, 'built\n');
    });

    await t.test('docker push of the build mounts the base layer from e2e/app', async () => {
      const before = rc.requests.length;
      const push = await first.docker(['push', built]);
      assert.match(push.stdout, /Mounted from e2e\/app/);
      const mounts = rc.requests.slice(before).filter((r) => r.method === 'POST' && r.url.includes('mount=') && r.url.includes('from=e2e%2Fapp'));
      assert.ok(mounts.length > 0 && mounts.every((r) => r.status === 201), `cross-repository mounts answered 201: ${JSON.stringify(mounts)}`);
      assert.deepEqual(await listTags(rc.url, 'e2e/built'), ['1']);
      assert.equal((await headManifest(rc.url, 'e2e/built', '1')).digest, await repoDigest(first, built));
    });

    await t.test('a second, fresh dockerd pulls the build and runs it', async () => {
      assert.equal((await second.docker(['images', '-aq'])).stdout, '');
      const pull = await second.docker(['pull', built]);
      assert.match(pull.stdout, /Pull complete/);
      assert.equal(await repoDigest(second, built), await repoDigest(first, built));
      assert.equal(await imageId(second, built), await imageId(first, built), 'same image config on both daemons');
      const r = await second.docker(['run', '--rm', '--network', 'none', built, 'cat', '/built']);
      assert.equal(r.stdout, 'built\n');
    });
  });
});
