// Scenario: skopeo (containers/image) against regcache's registry port over plain HTTP: copy an
// OCI image layout in, inspect it (digests byte-exact), list tags, copy it to another repository
// of the same registry (skopeo mounts the layer across repositories instead of uploading it),
// copy it back out to an OCI layout, and delete it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { tempDir } from '../helpers/proc.js';
import { headManifest, hostArchitecture, listTags, skopeo, startRegcache } from '../helpers/regcache.js';
import { writeBusyboxOciLayout } from '../helpers/rootfs.js';
import { skipUnless } from '../helpers/tools.js';

const sha256 = (data: string | Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const blobPath = (layout: string, digest: string) => join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));

describe('skopeo against the registry port', { skip: skipUnless(['skopeo', 'busybox']) }, () => {
  test('copy in, inspect, list-tags, cross-repository copy (mount), copy out, delete', async (t) => {
    const work = await tempDir('rc-e2e-skopeo-', t);
    const rc = await startRegcache({}, t);
    const image = await writeBusyboxOciLayout(join(work.path, 'layout'), '1');
    const home = work.path; // skopeo's auth file and blob-info cache live here across the calls
    const plain = '--tls-verify=false';
    const repo = `docker://${rc.host}/e2e/skopeo`;

    await t.test('skopeo copy oci: → docker:// stores the manifest byte for byte', async () => {
      const r = await skopeo(home, ['copy', '--dest-tls-verify=false', image.skopeoRef, `${repo}:1`]);
      assert.match(r.stdout, /Writing manifest to image destination/);
      const raw = await skopeo(home, ['inspect', plain, '--raw', `${repo}:1`]);
      assert.equal(sha256(raw.stdout), image.manifestDigest);
      const head = await headManifest(rc.url, 'e2e/skopeo', '1');
      assert.equal(head.digest, image.manifestDigest);
      assert.equal(head.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    });

    await t.test('skopeo inspect reports the pushed digest, layers and config', async () => {
      const info = JSON.parse((await skopeo(home, ['inspect', plain, `${repo}:1`])).stdout) as {
        Digest: string; Layers: string[]; Architecture: string; Os: string; RepoTags: string[];
      };
      assert.equal(info.Digest, image.manifestDigest);
      assert.deepEqual(info.Layers, [image.layerDigest]);
      assert.equal(info.Architecture, hostArchitecture());
      assert.equal(info.Os, 'linux');
      const config = await skopeo(home, ['inspect', plain, '--raw', '--config', `${repo}:1`]);
      assert.equal(sha256(config.stdout), image.configDigest);
    });

    await t.test('skopeo list-tags lists every tag', async () => {
      await skopeo(home, ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `${repo}:1`, `${repo}:2`]);
      const tags = JSON.parse((await skopeo(home, ['list-tags', plain, repo])).stdout) as { Repository: string; Tags: string[] };
      assert.equal(tags.Repository, `${rc.host}/e2e/skopeo`);
      assert.deepEqual(tags.Tags, ['1', '2']);
    });

    await t.test('skopeo copy to another repository mounts the layer from the first one', async () => {
      const before = rc.requests.length;
      const r = await skopeo(home, ['--debug', 'copy', '--src-tls-verify=false', '--dest-tls-verify=false', `${repo}:1`, `docker://${rc.host}/e2e/copy:1`]);
      const mount = `mount=${encodeURIComponent(image.layerDigest)}`;
      assert.match(r.stderr, /Trying to mount \/v2\/e2e\/copy\/blobs\/uploads\/\?from=e2e%2Fskopeo&mount=/);
      assert.match(r.stderr, /mount OK/);
      const since = rc.requests.slice(before);
      assert.ok(
        since.some((q) => q.method === 'POST' && q.url.startsWith('/v2/e2e/copy/blobs/uploads/?') && q.url.includes(mount) && q.status === 201),
        `POST ...?mount=<layer>&from=e2e/skopeo answered 201: ${JSON.stringify(since)}`,
      );
      assert.ok(!since.some((q) => q.method === 'GET' && q.url === `/v2/e2e/skopeo/blobs/${image.layerDigest}`), 'the layer was not downloaded');
      // skopeo 1.9 copies the (small) config blob again instead of mounting it; only layers are mounted.
      assert.ok(!since.some((q) => q.method === 'PUT' && q.url.includes(`digest=${encodeURIComponent(image.layerDigest)}`)), 'the layer was not uploaded');
      assert.equal((await headManifest(rc.url, 'e2e/copy', '1')).digest, image.manifestDigest);
      const layer = await fetch(`${rc.url}/v2/e2e/copy/blobs/${image.layerDigest}`);
      assert.equal(layer.status, 200);
      assert.equal(sha256(Buffer.from(await layer.arrayBuffer())), image.layerDigest);
    });

    await t.test('skopeo copy docker:// → oci: gives back the same manifest and blobs', async () => {
      const back = join(work.path, 'back');
      await skopeo(home, ['copy', '--src-tls-verify=false', `docker://${rc.host}/e2e/copy:1`, `oci:${back}:1`]);
      const index = JSON.parse(await readFile(join(back, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
      assert.deepEqual(index.manifests.map((m) => m.digest), [image.manifestDigest]);
      for (const d of [image.manifestDigest, image.configDigest, image.layerDigest]) {
        assert.ok((await readFile(blobPath(back, d))).equals(await readFile(blobPath(image.dir, d))), `blob ${d} byte-identical`);
      }
    });

    await t.test('skopeo delete removes the manifest: inspect then fails with manifest unknown', async () => {
      await skopeo(home, ['delete', plain, `${repo}:1`]);
      for (const tag of ['1', '2']) {
        // Deleting by digest (what skopeo does) removes every tag naming that manifest, as in distribution.
        const r = await skopeo(home, ['inspect', plain, `${repo}:${tag}`], { allowFail: true });
        assert.notEqual(r.code, 0, `tag ${tag} is gone`);
        assert.match(r.stderr, /manifest unknown/);
      }
      assert.equal((await headManifest(rc.url, 'e2e/skopeo', image.manifestDigest)).status, 404);
      assert.deepEqual(await listTags(rc.url, 'e2e/skopeo'), []);
      const other = JSON.parse((await skopeo(home, ['inspect', plain, `docker://${rc.host}/e2e/copy:1`])).stdout) as { Digest: string };
      assert.equal(other.Digest, image.manifestDigest, 'the other repository keeps its copy');
    });
  });
});
