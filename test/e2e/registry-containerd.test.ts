// Scenario: containerd's ctr pulls from regcache's registry port, once with --plain-http and
// once configured through a hosts.toml (`--hosts-dir`) for the 127.0.0.1:<port> host, which
// refetches every blob after the first image was removed and garbage-collected; then the image
// runs with `ctr run`; `ctr images push` to another repository mounts the blobs across
// repositories. The image is pushed with skopeo from the busybox OCI layout.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type Containerd, startContainerd, writeHostsToml } from '../helpers/containerd.js';
import { tempDir } from '../helpers/proc.js';
import { headManifest, skopeo, startRegcache } from '../helpers/regcache.js';
import { writeBusyboxOciLayout } from '../helpers/rootfs.js';
import { skipUnless } from '../helpers/tools.js';

/** `ctr images ls` as a map ref → target digest. */
async function images(c: Containerd): Promise<Map<string, string>> {
  const out = (await c.ctr(['images', 'ls'])).stdout.split('\n').slice(1).filter(Boolean);
  return new Map(out.map((line) => {
    const [ref, , digest] = line.split(/\s+/);
    return [ref!, digest!];
  }));
}

/** Digests in the content store. */
async function contentDigests(c: Containerd): Promise<string[]> {
  const out = (await c.ctr(['content', 'ls', '-q'])).stdout;
  return out.split('\n').filter(Boolean);
}

describe('containerd (ctr) against the registry port', { skip: skipUnless(['containerd', 'ctr', 'runc', 'skopeo', 'busybox'], { root: true }) }, () => {
  test('ctr pulls with --plain-http and through a hosts.toml for 127.0.0.1:<port>, then runs the image', async (t) => {
    const work = await tempDir('rc-e2e-ctr-', t);
    const rc = await startRegcache({}, t);
    const image = await writeBusyboxOciLayout(join(work.path, 'layout'), '1');
    const ref = `${rc.host}/e2e/ctr:1`;
    await skopeo(work.path, ['copy', '--dest-tls-verify=false', image.skopeoRef, `docker://${ref}`]);
    const ctrd = await startContainerd();
    t.after(() => ctrd.stop());
    const blobs = [image.manifestDigest, image.configDigest, image.layerDigest];

    await t.test('ctr images pull --plain-http fetches the manifest, config and layer', async () => {
      const before = rc.requests.length;
      await ctrd.ctr(['images', 'pull', '--plain-http', ref]);
      assert.equal((await images(ctrd)).get(ref), image.manifestDigest);
      const content = await contentDigests(ctrd);
      for (const d of blobs) assert.ok(content.includes(d), `${d} in the content store`);
      const since = rc.requests.slice(before);
      assert.ok(since.some((r) => r.method === 'HEAD' && r.url === '/v2/e2e/ctr/manifests/1' && r.status === 200), JSON.stringify(since));
      assert.ok(since.some((r) => r.method === 'GET' && r.url === `/v2/e2e/ctr/blobs/${image.layerDigest}` && r.status === 200));
    });

    await t.test('after rmi and GC, ctr pulls everything again through hosts.toml (no --plain-http)', async () => {
      await ctrd.ctr(['images', 'rm', '--sync', ref]);
      assert.equal((await images(ctrd)).size, 0);
      const content = await contentDigests(ctrd);
      for (const d of blobs) assert.ok(!content.includes(d), `${d} was garbage-collected`);
      const hosts = join(work.path, 'hosts');
      // ctr would speak plain HTTP to 127.0.0.1 even without --plain-http (it matches localhost),
      // so a header that only the hosts.toml sets proves the pull was configured by it.
      await writeHostsToml(hosts, rc.host, rc.url, { server: rc.url, header: { 'x-regcache-e2e': 'hosts.toml' } });
      const before = rc.requests.length;
      await ctrd.ctr(['images', 'pull', '--hosts-dir', hosts, ref]);
      assert.equal((await images(ctrd)).get(ref), image.manifestDigest);
      const since = rc.requests.slice(before);
      for (const d of [image.configDigest, image.layerDigest]) {
        assert.ok(since.some((r) => r.method === 'GET' && r.url === `/v2/e2e/ctr/blobs/${d}` && r.status === 200), `GET ${d}: ${JSON.stringify(since)}`);
      }
      assert.ok(since.length > 0 && since.every((r) => r.headers['x-regcache-e2e'] === 'hosts.toml'), 'every request carried the hosts.toml header');
    });

    await t.test('ctr images push to another repository mounts both blobs from e2e/ctr and stores the same manifest', async () => {
      const pushed = `${rc.host}/e2e/ctr-pushed:1`;
      await ctrd.ctr(['images', 'tag', ref, pushed]);
      const before = rc.requests.length;
      await ctrd.ctr(['images', 'push', '--plain-http', pushed]);
      const since = rc.requests.slice(before);
      // containerd remembers where it pulled each blob from (distribution.source labels) and mounts from there.
      for (const d of [image.configDigest, image.layerDigest]) {
        assert.ok(since.some((r) => r.method === 'POST' && r.url === `/v2/e2e/ctr-pushed/blobs/uploads/?mount=${d}&from=e2e/ctr` && r.status === 201), `mount of ${d}: ${JSON.stringify(since)}`);
      }
      assert.ok(!since.some((r) => r.method === 'PUT' && r.url.includes('/blobs/uploads/')), 'no blob was uploaded');
      assert.ok(since.some((r) => r.method === 'PUT' && r.url === '/v2/e2e/ctr-pushed/manifests/1' && r.status === 201), JSON.stringify(since));
      assert.equal((await headManifest(rc.url, 'e2e/ctr-pushed', '1')).digest, image.manifestDigest);
    });

    await t.test('ctr run runs the pulled image', async () => {
      const out = await ctrd.ctr(['run', ...ctrd.runFlags, '--rm', '--net-host', ref, 'e2e-ctr-run', 'sh', '-c', 'echo from-regcache; cat /etc/passwd']);
      assert.match(out.stdout, /^from-regcache\nroot:x:0:0:/);
    });
  });
});
