// Scenario: the container image (the repository's Dockerfile), built on the locally assembled
// Node base in a private dockerd and run as `registry:2` users run theirs, with a named volume at
// /var/lib/registry and `--network host` (the test dockerd has no bridge; the loopback ports come
// through REGISTRY_HTTP_ADDR / REGISTRY_HTTP_DEBUG_ADDR):
// - docker push and pull through the container; `docker kill -s KILL` and start again on the
//   same volume (the same container, then a new one): it serves what it had;
// - the HEALTHCHECK reaches healthy, also with TLS and htpasswd on other ports;
// - `docker stop` (SIGTERM to node as PID 1) drains and exits 0;
// - a volume a root process wrote with distribution's layout in it (a `registry:2` volume) is
//   refused with the path and the fix, and once the printed fix is applied the server starts
//   and names distribution's layout;
// - a deleted image's blobs are freed by `docker exec ... regcache gc` while the container serves.
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { Agent } from 'undici';
import { makeTestCertificates } from '../helpers/certs.js';
import { skipUnlessBaseNode } from '../helpers/node-base.js';
import { type TempDir, tempDir, waitFor } from '../helpers/proc.js';
import { headManifest, httpRequest, listTags } from '../helpers/regcache.js';
import {
  type ImageRig, IMAGE_TOOLS, buildImageRig, containerLogs, containerState, runRegcacheContainer, uniqueName, waitHealth, waitServing,
} from '../helpers/regcache-image.js';
import { importBusyboxImage } from '../helpers/rootfs.js';
import { skipUnless } from '../helpers/tools.js';

const skip = skipUnless([...IMAGE_TOOLS, 'openssl'], { root: true }) || skipUnlessBaseNode();

/** Removes `ref` and every unused image layer from the daemon, so that the next pull downloads. */
async function forgetImage(rig: ImageRig, ref: string): Promise<void> {
  await rig.dockerd.docker(['rmi', ref]);
  await rig.dockerd.docker(['image', 'prune', '--force']);
}

describe('the container image', { skip }, () => {
  let rig: ImageRig;
  let work: TempDir;
  before(async () => {
    work = await tempDir('rc-image-');
    rig = await buildImageRig();
  }, { timeout: 600_000 });
  after(async () => {
    await rig?.dockerd.stop();
    await work?.cleanup();
  });

  test('runs as uid 1000; push, pull, kill -9 and start again on the same volume serve what it had', async () => {
    const volume = uniqueName('rc-vol');
    const c = await runRegcacheContainer(rig, { volume });
    await waitServing(rig, c);
    assert.equal((await rig.dockerd.docker(['exec', c.name, 'id', '-u'])).stdout.trim(), '1000');
    assert.match(await containerLogs(rig, c.name), new RegExp(`registry http://127\\.0\\.0\\.1:${c.registryPort}, cache http://127\\.0\\.0\\.1:${c.cachePort}, storage /var/lib/registry`));
    const ref = `${c.registryHost}/e2e/app:1`;
    await importBusyboxImage(rig.dockerd, ref);
    const push = await rig.dockerd.docker(['push', ref]);
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(push.stdout)?.[1];
    assert.ok(digest, push.stdout);
    await forgetImage(rig, ref);
    assert.match((await rig.dockerd.docker(['pull', ref])).stdout, /Pull complete/);

    await rig.dockerd.docker(['kill', '-s', 'KILL', c.name]);
    await waitFor(async () => (await containerState(rig, c.name)).Status === 'exited', { what: `${c.name} to exit` });
    await rig.dockerd.docker(['start', c.name]);
    await waitServing(rig, c);
    const url = `http://127.0.0.1:${c.registryPort}`;
    assert.deepEqual(await listTags(url, 'e2e/app'), ['1']);
    assert.equal((await headManifest(url, 'e2e/app', '1')).digest, digest);
    await forgetImage(rig, ref);
    assert.match((await rig.dockerd.docker(['pull', ref])).stdout, /Pull complete/, 'the restarted container serves the layers');
    assert.equal((await rig.dockerd.docker(['run', '--rm', '--network', 'none', ref, 'echo', 'restored'])).stdout, 'restored\n');

    // Killed again, and a new container on the volume (another container's PID 1 held the lock).
    await rig.dockerd.docker(['kill', '-s', 'KILL', c.name]);
    const next = await runRegcacheContainer(rig, { volume });
    await waitServing(rig, next);
    assert.equal((await headManifest(`http://127.0.0.1:${next.registryPort}`, 'e2e/app', '1')).digest, digest);
  });

  test('with no configuration it listens on every interface, ports 5000 and 5001, and is healthy', async () => {
    // --network none: the container's own loopback, so the default ports cannot clash with the host's.
    const name = uniqueName('rc-img');
    await rig.dockerd.docker(['run', '-d', '--name', name, '--network', 'none', '--health-interval', '1s', '--health-start-period', '60s', '-v', `${uniqueName('rc-vol')}:/var/lib/registry`, rig.image]);
    await waitHealth(rig, name, 'healthy');
    // Listening sockets (state 0A) of the container's network namespace: the wildcard address
    // (0.0.0.0 or ::) on ports 5000 (1388) and 5001 (1389).
    const tables = (await rig.dockerd.docker(['exec', name, 'cat', '/proc/net/tcp', '/proc/net/tcp6'])).stdout;
    const listening = tables.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f[3] === '0A').map((f) => f[1]);
    for (const port of ['1388', '1389']) {
      assert.ok(listening.some((a) => a === `00000000:${port}` || a === `${'0'.repeat(32)}:${port}`), `port 0x${port} on every interface: ${listening.join(' ')}`);
    }
    const ready = JSON.parse((await rig.dockerd.docker(['exec', name, 'cat', '/tmp/regcache-ready.json'])).stdout) as { registry: string; cache: string; storage: string };
    assert.equal(ready.storage, '/var/lib/registry');
    assert.match(ready.registry, /^http:\/\/(127\.0\.0\.1|\[::1\]):5000$/);
    assert.match(ready.cache, /^http:\/\/(127\.0\.0\.1|\[::1\]):5001$/);
  });

  test('the health check reaches healthy and `docker stop` (SIGTERM to PID 1) drains and exits 0', async () => {
    const c = await runRegcacheContainer(rig, { volume: uniqueName('rc-vol'), runArgs: ['--health-interval', '1s', '--health-start-period', '60s'] });
    await waitServing(rig, c);
    await waitHealth(rig, c.name, 'healthy');
    const probe = await rig.dockerd.docker(['exec', c.name, 'node', '/opt/regcache/dist/healthcheck.js']);
    assert.equal(probe.stdout, 'healthy\n');
    const missing = await rig.dockerd.docker(['exec', c.name, 'node', '/opt/regcache/dist/healthcheck.js', '/tmp/no-such-ready-file'], { allowFail: true });
    assert.equal(missing.code, 1, 'no ready file is not healthy');

    await rig.dockerd.docker(['stop', '--time', '60', c.name], { timeoutMs: 90_000 });
    const state = await containerState(rig, c.name);
    assert.equal(state.ExitCode, 0, 'exit 0, not 137 after the stop timeout');
    assert.match(await containerLogs(rig, c.name), /SIGTERM, draining/);
  });

  test('with TLS and htpasswd (flags after the image) the health check still reaches healthy', async () => {
    const certs = await makeTestCertificates(work.path, { ips: ['127.0.0.1'] });
    // Read by uid 1000 in the container.
    await chmod(work.path, 0o755);
    await chmod(certs.key, 0o644);
    await writeFile(join(work.path, 'htpasswd'), `ci:${bcrypt.hashSync('secret', 5)}\n`, { mode: 0o644 });
    const c = await runRegcacheContainer(rig, {
      volume: uniqueName('rc-vol'),
      runArgs: ['-v', `${work.path}:/config:ro`, '--health-interval', '1s', '--health-start-period', '60s'],
      command: ['serve', '--tls-cert', '/config/server.crt', '--tls-key', '/config/server.key', '--htpasswd', '/config/htpasswd'],
    });
    await waitHealth(rig, c.name, 'healthy');
    const insecure = new Agent({ connect: { rejectUnauthorized: false } });
    try {
      for (const port of [c.registryPort, c.cachePort]) {
        const r = await httpRequest('GET', `https://127.0.0.1:${port}/v2/`, { dispatcher: insecure });
        assert.equal(r.status, 401, `port ${port} serves TLS with basic auth`);
      }
    } finally {
      await insecure.close();
    }
  });

  test('a root-owned volume with distribution\'s layout is refused with the path and the fix; after the fix it starts and names the layout', async () => {
    const volume = uniqueName('rc-vol');
    // What registry:2 (running as root) leaves in a volume.
    await rig.dockerd.docker(['run', '--rm', '--network', 'none', '-u', '0', '-v', `${volume}:/data`, '--entrypoint', 'sh', rig.image, '-c',
      'mkdir -p /data/docker/registry/v2/repositories /data/docker/registry/v2/blobs && chown -R 0:0 /data']);
    const c = await runRegcacheContainer(rig, { volume });
    await waitFor(async () => (await containerState(rig, c.name)).Status === 'exited', { what: `${c.name} to exit`, timeoutMs: 60_000 });
    assert.equal((await containerState(rig, c.name)).ExitCode, 1);
    const logs = await containerLogs(rig, c.name);
    assert.match(logs, /storage \/var\/lib\/registry is owned by uid 0 and not writable by uid 1000/);
    const fix = /docker run --rm -u 0 -v <volume>:\/var\/lib\/registry --entrypoint chown <image> -R 1000:1000 \/var\/lib\/registry/.exec(logs)?.[0];
    assert.ok(fix, `the error shows the command that fixes it:\n${logs}`);

    const words = fix.replace('<volume>', volume).replace('<image>', rig.image).split(' ');
    assert.deepEqual(words.slice(0, 2), ['docker', 'run']);
    await rig.dockerd.docker(['run', '--network', 'none', ...words.slice(2)]);
    await rig.dockerd.docker(['start', c.name]);
    await waitServing(rig, c);
    assert.match(await containerLogs(rig, c.name), /\/var\/lib\/registry\/docker\/registry\/v2\/ is a distribution \(registry:2\) storage; regcache does not serve the images in it/);
  });

  test('a deleted image\'s blobs are freed by `regcache gc` run in the container while it serves', async () => {
    const c = await runRegcacheContainer(rig, { volume: uniqueName('rc-vol'), runArgs: ['-e', 'REGISTRY_STORAGE_DELETE_ENABLED=true'] });
    await waitServing(rig, c);
    const url = `http://127.0.0.1:${c.registryPort}`;
    const ref = `${c.registryHost}/e2e/gc:1`;
    await importBusyboxImage(rig.dockerd, ref);
    await rig.dockerd.docker(['push', ref]);
    const head = await headManifest(url, 'e2e/gc', '1');
    assert.ok(head.digest);
    const manifest = JSON.parse((await httpRequest('GET', `${url}/v2/e2e/gc/manifests/1`, { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } })).text) as { layers: Array<{ digest: string }> };
    const layer = manifest.layers[0]!.digest;
    assert.equal((await httpRequest('DELETE', `${url}/v2/e2e/gc/manifests/${head.digest}`)).status, 202);
    const gc = await rig.dockerd.docker(['exec', c.name, 'regcache', 'gc', '--grace', '0s'], { allowFail: true });
    assert.equal(gc.code, 0, `gc of the running server's storage:\n${gc.stdout}${gc.stderr}`);
    assert.equal((await httpRequest('HEAD', `${url}/v2/e2e/gc/blobs/${layer}`)).status, 404, 'the layer is gone');
    const files = await rig.dockerd.docker(['exec', c.name, 'find', '/var/lib/registry/blobs', '-type', 'f']);
    assert.doesNotMatch(files.stdout, new RegExp(layer.slice('sha256:'.length)), 'its file is deleted');
    assert.equal((await containerState(rig, c.name)).Status, 'running');
  });
});
