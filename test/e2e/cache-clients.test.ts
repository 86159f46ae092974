// The pull-through cache with real clients and real upstreams, all on 127.0.0.1: two
// distribution registries stand in for Docker Hub and ghcr.io, regcache's cache port is in
// front of both, and docker (registry-mirrors, and the path form for another registry),
// containerd's ctr (hosts.toml mirrors for both registries, which send `?ns=`) and skopeo pull
// through it. Every pull is checked from both sides: regcache's statistics and request log,
// and the upstream's own access log.
//
// Each test pulls images of its own, so the tests do not depend on their order: the images
// are the busybox image of the harness in variants whose layer and config blobs differ (the
// gzip header's MTIME field and an image label), so no test finds another's blobs cached.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { type RunningServer, startServer } from '../../src/server/index.js';
import { startContainerd, writeHostsToml } from '../helpers/containerd.js';
import { type AccessLogEntry, type Distribution, startDistribution } from '../helpers/distribution.js';
import { type Dockerd, startDockerd } from '../helpers/dockerd.js';
import { type TempDir, run, tempDir } from '../helpers/proc.js';
import { busyboxRootfsTar } from '../helpers/rootfs.js';
import { privateToolEnv, skipUnless, toolPath } from '../helpers/tools.js';

const LABEL = 'org.example.regcache-e2e';
const IMAGE_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** One variant of the busybox image as pushed upstream. */
interface Variant {
  name: string;
  /** skopeo source `oci:<dir>:<tag>`. */
  layout: string;
  manifestDigest: string;
  configDigest: string;
  layerDigest: string;
  layerSize: number;
}

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/**
 * Writes an OCI layout of the busybox image whose blobs are unique to `name`: the layer is the
 * same tarball gzipped the same way but with `mtime` in the gzip header (the diff ID does not
 * change), and the config carries the label LABEL=name.
 */
async function writeVariant(dir: string, tar: Buffer, gzipped: Buffer, name: string, mtime: number): Promise<Variant> {
  const blobsDir = join(dir, 'blobs', 'sha256');
  await mkdir(blobsDir, { recursive: true });
  const put = async (data: Buffer) => {
    const digest = sha256(data);
    await writeFile(join(blobsDir, digest.slice(7)), data);
    return digest;
  };
  const layer = Buffer.from(gzipped);
  layer.writeUInt32LE(mtime, 4);
  const config = Buffer.from(JSON.stringify({
    architecture: process.arch === 'x64' ? 'amd64' : process.arch,
    os: 'linux',
    config: { Env: [IMAGE_PATH], Cmd: ['/bin/sh'], Labels: { [LABEL]: name } },
    rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
  }));
  const layerDigest = await put(layer);
  const configDigest = await put(config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }],
  }));
  const manifestDigest = await put(manifest);
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': 'v' } }],
  }));
  return { name, layout: `oci:${dir}:v`, manifestDigest, configDigest, layerDigest, layerSize: layer.length };
}

/** Runs skopeo with its state in `dir` and no policy.json. */
function skopeo(dir: string, args: string[]) {
  return run(toolPath('skopeo'), ['--insecure-policy', ...args], { env: privateToolEnv(dir) });
}

/** Access-log entries of `method` whose path starts with `prefix`. */
function requests(log: AccessLogEntry[], method: string, prefix: string): AccessLogEntry[] {
  return log.filter((e) => e.method === method && e.path.startsWith(prefix));
}

describe('pull-through cache with real clients', { skip: skipUnless(['docker-registry', 'skopeo', 'busybox']) }, () => {
  let hub: Distribution;
  let ghcr: Distribution;
  let work: TempDir;
  let server: RunningServer;
  /** `127.0.0.1:<port>` of the cache port. */
  let cacheHost: string;
  /** Path and query of every request the cache port answered, with its status. */
  const cacheLog: Array<{ method: string; url: string; status: number }> = [];
  const images = new Map<string, Variant>();

  /** Pushes variant `name` to `registry` as `repo:tag`. */
  async function seed(registry: Distribution, repo: string, name: string): Promise<void> {
    const v = images.get(name)!;
    await skopeo(work.path, ['copy', '--dest-tls-verify=false', v.layout, `docker://127.0.0.1:${registry.port}/${repo}`]);
  }

  async function stats(): Promise<{ repositories: Record<string, { blobMisses: number; blobHits: number; manifestMisses: number; manifestHits: number }>; upstreams: Record<string, { requests: Record<string, number> }> }> {
    const res = await request(`${server.cacheUrl}/_regcache/stats`);
    assert.equal(res.statusCode, 200);
    return (await res.body.json()) as never;
  }

  before(async () => {
    [hub, ghcr, work] = await Promise.all([startDistribution(), startDistribution(), tempDir('rc-cache-e2e-')]);
    const tar = await busyboxRootfsTar();
    const gzipped = gzipSync(tar);
    const names = ['docker-hub', 'docker-ghcr-path', 'ctr-hub', 'ctr-ghcr', 'skopeo-hub', 'skopeo-ghcr'];
    for (const [i, name] of names.entries()) images.set(name, await writeVariant(join(work.path, name), tar, gzipped, name, 1_000_000 + i));
    await Promise.all([
      seed(hub, 'library/busybox-e2e:1', 'docker-hub'),
      seed(ghcr, 'owner/img:tag', 'docker-ghcr-path'),
      seed(hub, 'library/ctr-e2e:1', 'ctr-hub'),
      seed(ghcr, 'owner/ctr-img:1', 'ctr-ghcr'),
      seed(hub, 'library/skopeo-e2e:1', 'skopeo-hub'),
      seed(ghcr, 'owner/skopeo-img:1', 'skopeo-ghcr'),
    ]);
    server = await startServer({
      registryAddr: '127.0.0.1:0',
      cacheAddr: '127.0.0.1:0',
      storage: join(work.path, 'storage'),
      upstreams: [`docker.io=${hub.url}`, `ghcr.io=${ghcr.url}`],
      logLevel: process.env.REGCACHE_E2E_LOG || 'silent',
    });
    cacheHost = new URL(server.cacheUrl).host;
    server.cacheApp.server.on('request', (req: IncomingMessage, res) => {
      // fastify's own listener ran first and re-encoded the name's slashes as %2F for routing
      const url = (req.url ?? '').replace(/^[^?]*/, (path) => path.replace(/%2F/gi, '/'));
      res.once('finish', () => cacheLog.push({ method: req.method ?? '', url, status: res.statusCode }));
    });
  });

  after(async () => {
    await server?.close();
    await Promise.all([hub?.stop(), ghcr?.stop()]);
    await work?.cleanup();
  });

  describe('docker', { skip: skipUnless(['docker', 'dockerd', 'containerd', 'runc'], { root: true }) }, () => {
    let first: Dockerd;
    let second: Dockerd;

    before(async () => {
      const daemonJson = { 'registry-mirrors': [server.cacheUrl] };
      [first, second] = await Promise.all([startDockerd({ daemonJson }), startDockerd({ daemonJson })]);
    });
    after(async () => {
      await Promise.all([first?.stop(), second?.stop()]);
    });

    const label = async (d: Dockerd, ref: string) =>
      (await d.docker(['image', 'inspect', '--format', `{{index .Config.Labels "${LABEL}"}}`, ref])).stdout.trim();

    test('docker pull of a Docker Hub image goes through registry-mirrors to the upstream once; a second, fresh dockerd pulls it with zero upstream GETs', async () => {
      const v = images.get('docker-hub')!;
      const pull = await first.docker(['pull', 'busybox-e2e:1']);
      assert.match(pull.stdout, /Pull complete/);
      assert.equal(await label(first, 'busybox-e2e:1'), 'docker-hub');
      const run1 = await first.docker(['run', '--rm', '--network', 'none', 'busybox-e2e:1', 'sh', '-c', 'echo hello from $(cat /etc/passwd | cut -d: -f1)']);
      assert.equal(run1.stdout, 'hello from root\n');

      // regcache's side: the mirror was asked, and went upstream for the manifest and both blobs
      // (dockerd 20.10 resolves the tag with HEAD, then GETs the manifest by digest and the blobs)
      assert.ok(cacheLog.some((r) => r.url === '/v2/library/busybox-e2e/manifests/1' && r.status === 200), 'the daemon asked the mirror for the tag');
      for (const d of [v.manifestDigest, v.layerDigest, v.configDigest]) {
        assert.ok(cacheLog.some((r) => r.method === 'GET' && r.url.endsWith(`/${d}`) && r.status === 200), `the daemon got ${d} from the mirror`);
      }
      const repo = (await stats()).repositories['docker.io/library/busybox-e2e'];
      assert.equal(repo?.manifestMisses, 1);
      assert.equal(repo?.blobMisses, 2, 'config and layer fetched upstream');
      assert.equal(repo?.blobHits, 0);
      // the upstream's side: one GET per blob and for the manifest
      const log = await hub.accessLog();
      assert.equal(requests(log, 'GET', `/v2/library/busybox-e2e/blobs/${v.layerDigest}`).length, 1);
      assert.equal(requests(log, 'GET', `/v2/library/busybox-e2e/blobs/${v.configDigest}`).length, 1);
      assert.equal(requests(log, 'GET', '/v2/library/busybox-e2e/manifests/').length, 1);
      assert.equal(requests(await ghcr.accessLog(), 'GET', '/v2/library/busybox-e2e/').length, 0, 'nothing went to the other upstream');

      const before = log.length;
      await second.docker(['pull', 'busybox-e2e:1']);
      assert.equal(await label(second, 'busybox-e2e:1'), 'docker-hub');
      const after = (await hub.accessLog()).slice(before);
      assert.deepEqual(requests(after, 'GET', '/v2/library/busybox-e2e/blobs/'), [], 'zero upstream blob GETs');
      assert.deepEqual(requests(after, 'GET', '/v2/library/busybox-e2e/manifests/'), [], 'zero upstream manifest GETs (the tag is fresh)');
      const repo2 = (await stats()).repositories['docker.io/library/busybox-e2e'];
      assert.equal(repo2?.blobHits, 2, 'both blobs served from the store');
      assert.equal(repo2?.blobMisses, 2);
      const run2 = await second.docker(['run', '--rm', '--network', 'none', 'busybox-e2e:1', 'echo', 'second']);
      assert.equal(run2.stdout, 'second\n');
    });

    test('docker pull 127.0.0.1:<cache port>/ghcr.io/owner/img:tag (the path form for another registry) pulls from that upstream and runs', async () => {
      const v = images.get('docker-ghcr-path')!;
      const ref = `${cacheHost}/ghcr.io/owner/img:tag`;
      await first.docker(['pull', ref]);
      assert.equal(await label(first, ref), 'docker-ghcr-path');
      const r = await first.docker(['run', '--rm', '--network', 'none', ref, 'echo', 'path form']);
      assert.equal(r.stdout, 'path form\n');
      assert.ok(cacheLog.some((e) => e.url.startsWith('/v2/ghcr.io/owner/img/manifests/tag')));
      const log = await ghcr.accessLog();
      assert.equal(requests(log, 'GET', `/v2/owner/img/blobs/${v.layerDigest}`).length, 1);
      assert.equal(requests(log, 'GET', `/v2/owner/img/blobs/${v.configDigest}`).length, 1);
      assert.deepEqual(requests(await hub.accessLog(), 'GET', '/v2/owner/img/'), [], 'nothing went to Docker Hub');
      assert.equal((await stats()).repositories['ghcr.io/owner/img']?.blobMisses, 2);
    });
  });

  test('ctr images pull --hosts-dir with hosts.toml mirrors for docker.io and ghcr.io: both pulls succeed, each from its own upstream (?ns=)', { skip: skipUnless(['containerd', 'ctr', 'runc'], { root: true }) }, async (t) => {
    const ctrd = await startContainerd();
    t.after(() => ctrd.stop());
    const hosts = join(ctrd.dir, 'hosts');
    await writeHostsToml(hosts, 'docker.io', server.cacheUrl);
    await writeHostsToml(hosts, 'ghcr.io', server.cacheUrl);
    const hubRef = 'docker.io/library/ctr-e2e:1';
    const ghcrRef = 'ghcr.io/owner/ctr-img:1';
    await ctrd.ctr(['images', 'pull', '--hosts-dir', hosts, hubRef]);
    await ctrd.ctr(['images', 'pull', '--hosts-dir', hosts, ghcrRef]);
    const ls = await ctrd.ctr(['images', 'ls']);
    for (const [ref, name] of [[hubRef, 'ctr-hub'], [ghcrRef, 'ctr-ghcr']] as const) {
      const line = ls.stdout.split('\n').find((l) => l.startsWith(`${ref} `));
      assert.ok(line?.includes(images.get(name)!.manifestDigest), `${ref} is the ${name} image:\n${ls.stdout}`);
    }
    assert.ok(cacheLog.some((e) => e.url.startsWith('/v2/library/ctr-e2e/manifests/1?ns=docker.io')), 'docker.io pull sent ns=docker.io');
    assert.ok(cacheLog.some((e) => e.url.startsWith('/v2/owner/ctr-img/manifests/1?ns=ghcr.io')), 'ghcr.io pull sent ns=ghcr.io');
    const [hubLog, ghcrLog] = await Promise.all([hub.accessLog(), ghcr.accessLog()]);
    for (const [log, other, repo, name] of [[hubLog, ghcrLog, 'library/ctr-e2e', 'ctr-hub'], [ghcrLog, hubLog, 'owner/ctr-img', 'ctr-ghcr']] as const) {
      const v = images.get(name)!;
      assert.equal(requests(log, 'GET', `/v2/${repo}/blobs/${v.layerDigest}`).length, 1, `${repo}: its upstream served the layer once`);
      assert.equal(requests(log, 'GET', `/v2/${repo}/blobs/${v.configDigest}`).length, 1);
      assert.deepEqual(requests(other, 'GET', `/v2/${repo}/`), [], `${repo}: nothing from the other upstream`);
    }
    const out = await ctrd.ctr(['run', ...ctrd.runFlags, '--rm', '--net-host', ghcrRef, 'cache-ctr-run', 'cat', '/etc/group']);
    assert.equal(out.stdout, 'root:x:0:\n');
  });

  test('skopeo inspect and copy through the cache port, by tag and by digest, from both upstreams', async () => {
    const hubImage = images.get('skopeo-hub')!;
    const ghcrImage = images.get('skopeo-ghcr')!;
    const inspect = JSON.parse((await skopeo(work.path, ['inspect', '--tls-verify=false', `docker://${cacheHost}/skopeo-e2e:1`])).stdout) as { Digest: string; Labels: Record<string, string> };
    assert.equal(inspect.Digest, hubImage.manifestDigest);
    assert.equal(inspect.Labels[LABEL], 'skopeo-hub');
    const raw = await skopeo(work.path, ['inspect', '--raw', '--tls-verify=false', `docker://${cacheHost}/library/skopeo-e2e@${hubImage.manifestDigest}`]);
    assert.equal(sha256(Buffer.from(raw.stdout)), hubImage.manifestDigest);

    const out = join(work.path, 'skopeo-out');
    await skopeo(work.path, ['copy', '--src-tls-verify=false', `docker://${cacheHost}/ghcr.io/owner/skopeo-img:1`, `oci:${out}:1`]);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    assert.equal(index.manifests[0]?.digest, ghcrImage.manifestDigest);
    const layer = await readFile(join(out, 'blobs', 'sha256', ghcrImage.layerDigest.slice(7)));
    assert.equal(sha256(layer), ghcrImage.layerDigest);

    const [hubLog, ghcrLog] = await Promise.all([hub.accessLog(), ghcr.accessLog()]);
    assert.ok(requests(hubLog, 'GET', '/v2/library/skopeo-e2e/manifests/').length >= 1);
    assert.equal(requests(ghcrLog, 'GET', `/v2/owner/skopeo-img/blobs/${ghcrImage.layerDigest}`).length, 1);
    assert.deepEqual(requests(hubLog, 'GET', '/v2/owner/skopeo-img/'), []);
    // a second copy is served from the store
    await skopeo(work.path, ['copy', '--src-tls-verify=false', `docker://${cacheHost}/ghcr.io/owner/skopeo-img:1`, `oci:${join(work.path, 'skopeo-out2')}:1`]);
    assert.equal(requests(await ghcr.accessLog(), 'GET', '/v2/owner/skopeo-img/blobs/').length, 2, 'config and layer, each once');
  });
});
