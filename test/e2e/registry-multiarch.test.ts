// Scenario: a multi-platform image (an OCI image index over a child for this machine's
// architecture and one for another) pushed to regcache's registry port with `skopeo copy --all`;
// `docker pull` resolves the index and fetches only the native child, and `ctr images pull
// --platform` fetches only the child it asks for.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startDockerd } from '../helpers/dockerd.js';
import { tempDir } from '../helpers/proc.js';
import { type RecordedRequest, headManifest, hostArchitecture, httpRequest, skopeo, startRegcache } from '../helpers/regcache.js';
import { writeBusyboxOciLayout } from '../helpers/rootfs.js';
import { skipUnless } from '../helpers/tools.js';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** One platform's image inside the index. */
interface Child {
  architecture: string;
  manifestDigest: string;
  configDigest: string;
}

/** What writeMultiArchLayout wrote. */
interface MultiArchLayout {
  skopeoRef: string;
  indexDigest: string;
  layerDigest: string;
  native: Child;
  foreign: Child;
}

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/**
 * An OCI layout tagged `tag` whose image is an index of two children sharing the busybox layer:
 * one for this machine's architecture (runnable) and one for another (only ever pulled). Their
 * configs differ only in `architecture`, so each child has its own config and manifest digest.
 */
async function writeMultiArchLayout(dir: string, tag: string): Promise<MultiArchLayout> {
  const base = await writeBusyboxOciLayout(dir, tag);
  const blob = async (data: Buffer) => {
    const digest = sha256(data);
    await writeFile(join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)), data);
    return { digest, size: data.length };
  };
  const config = JSON.parse(await readFile(join(dir, 'blobs', 'sha256', base.configDigest.slice('sha256:'.length)), 'utf8')) as Record<string, unknown>;
  const nativeArch = hostArchitecture();
  const foreignArch = nativeArch === 'amd64' ? 'arm64' : 'amd64';
  const children: Child[] = [];
  const descriptors: object[] = [];
  for (const architecture of [nativeArch, foreignArch]) {
    const c = await blob(Buffer.from(JSON.stringify({ ...config, architecture })));
    const m = await blob(Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...c },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: base.layerDigest, size: base.layerSize }],
    })));
    children.push({ architecture, manifestDigest: m.digest, configDigest: c.digest });
    descriptors.push({ mediaType: OCI_MANIFEST, ...m, platform: { architecture, os: 'linux' } });
  }
  const index = await blob(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: descriptors })));
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [{ mediaType: OCI_INDEX, ...index, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
  return { skopeoRef: `oci:${dir}:${tag}`, indexDigest: index.digest, layerDigest: base.layerDigest, native: children[0]!, foreign: children[1]! };
}

/** True when a GET (or HEAD) of `path` is among `requests`. */
const fetched = (requests: readonly RecordedRequest[], path: string) => requests.some((r) => r.url === path && r.status === 200);

describe('a multi-platform image index on the registry port', { skip: skipUnless(['docker', 'dockerd', 'containerd', 'ctr', 'runc', 'skopeo', 'busybox'], { root: true }) }, () => {
  test('skopeo copy --all pushes the index; docker pull picks the native child, ctr --platform the other', async (t) => {
    const work = await tempDir('rc-e2e-multiarch-', t);
    const rc = await startRegcache({}, t);
    const layout = await writeMultiArchLayout(join(work.path, 'layout'), '1');
    const ref = `${rc.host}/e2e/multi:1`;
    const dockerd = await startDockerd();
    t.after(() => dockerd.stop());
    const { native, foreign } = layout;

    await t.test('skopeo copy --all stores the index and both children', async () => {
      await skopeo(work.path, ['copy', '--all', '--dest-tls-verify=false', layout.skopeoRef, `docker://${ref}`]);
      const head = await headManifest(rc.url, 'e2e/multi', '1');
      assert.equal(head.digest, layout.indexDigest);
      assert.equal(head.mediaType, OCI_INDEX);
      const index = JSON.parse((await httpRequest('GET', `${rc.url}/v2/e2e/multi/manifests/1`, { headers: { accept: OCI_INDEX } })).text) as {
        manifests: { digest: string; platform: { architecture: string } }[];
      };
      assert.deepEqual(index.manifests.map((m) => [m.platform.architecture, m.digest]), [
        [native.architecture, native.manifestDigest],
        [foreign.architecture, foreign.manifestDigest],
      ]);
      for (const child of [native, foreign]) {
        assert.equal((await headManifest(rc.url, 'e2e/multi', child.manifestDigest)).mediaType, OCI_MANIFEST);
      }
    });

    await t.test(`docker pull resolves the index and fetches only the ${native.architecture} child`, async () => {
      const before = rc.requests.length;
      const pull = await dockerd.docker(['pull', ref]);
      assert.match(pull.stdout, new RegExp(`Digest: ${layout.indexDigest}`));
      const inspect = JSON.parse((await dockerd.docker(['image', 'inspect', ref])).stdout) as { Id: string; Architecture: string; RepoDigests: string[] }[];
      assert.equal(inspect[0]?.Id, native.configDigest, 'the image is the native child');
      assert.equal(inspect[0]?.Architecture, native.architecture);
      assert.deepEqual(inspect[0]?.RepoDigests, [`${rc.host}/e2e/multi@${layout.indexDigest}`]);
      const since = rc.requests.slice(before);
      assert.ok(fetched(since, `/v2/e2e/multi/manifests/${native.manifestDigest}`), JSON.stringify(since));
      assert.ok(fetched(since, `/v2/e2e/multi/blobs/${native.configDigest}`), `the native config: ${JSON.stringify(since)}`);
      assert.ok(!fetched(since, `/v2/e2e/multi/manifests/${foreign.manifestDigest}`), 'the foreign child was not fetched');
      assert.ok(!fetched(since, `/v2/e2e/multi/blobs/${foreign.configDigest}`), 'nor its config');
      const machine: Record<string, string> = { amd64: 'x86_64', arm64: 'aarch64' };
      const out = await dockerd.docker(['run', '--rm', '--network', 'none', ref, 'uname', '-m']);
      assert.equal(out.stdout.trim(), machine[native.architecture] ?? out.stdout.trim());
    });

    await t.test(`ctr images pull --platform linux/${foreign.architecture} fetches only that child`, async () => {
      const ctr = (args: string[]) => dockerd.containerd.ctr(args, { namespace: 'e2e-multiarch' });
      const before = rc.requests.length;
      await ctr(['images', 'pull', '--plain-http', '--platform', `linux/${foreign.architecture}`, ref]);
      const ls = (await ctr(['images', 'ls'])).stdout;
      assert.match(ls, new RegExp(`^${ref.replace(/\./g, '\\.')}\\s+${OCI_INDEX.replace(/[.+]/g, '\\$&')}\\s+${layout.indexDigest}\\s`, 'm'));
      const content = (await ctr(['content', 'ls', '-q'])).stdout.split('\n');
      for (const d of [layout.indexDigest, foreign.manifestDigest, foreign.configDigest, layout.layerDigest]) assert.ok(content.includes(d), `${d} fetched`);
      for (const d of [native.manifestDigest, native.configDigest]) assert.ok(!content.includes(d), `${d} not fetched`);
      const since = rc.requests.slice(before);
      assert.ok(fetched(since, `/v2/e2e/multi/blobs/${foreign.configDigest}`), JSON.stringify(since));
      assert.ok(!fetched(since, `/v2/e2e/multi/blobs/${native.configDigest}`), 'the native config was not fetched');
    });
  });
});
