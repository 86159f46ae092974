// Referrers through the built CLI's cache port (`node dist/cli.js serve`), in front of two
// upstreams: regcache's registry port, which has the referrers API (2 referrers a page), and
// Debian's distribution 2.8, which has not (its referrers are in an oras-style `sha256-<hex>` tag).
// Discovery runs as oras does it (test/helpers/referrers.ts); skopeo, a real client, then reads
// the referrers tag and a referrer manifest through the cache, as `oras cp -r` would.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startDistribution } from '../helpers/distribution.js';
import { type RegcacheProcess, startRegcache, startRegcacheProcess } from '../helpers/regcache.js';
import { byDigest, discover, pushReferrer, referrersTag, writeReferrersTag, type Referrer } from '../helpers/referrers.js';
import { seedImage } from '../helpers/upstream-images.js';
import { run, tempDir } from '../helpers/proc.js';
import { privateToolEnv, skipUnless, toolPath } from '../helpers/tools.js';

const SBOM = 'application/vnd.example.sbom.v1+json';
const SIGNATURE = 'application/vnd.example.signature.v1+json';

/** A subject image in `name` with an SBOM and two signatures, each annotated. */
async function seed(base: string, name: string) {
  const image = await seedImage(base, name, 'v1', { layers: 1, layerSize: 1024 });
  const subject = { mediaType: image.mediaType, digest: image.digest, size: image.manifest.byteLength };
  const referrers: Referrer[] = [];
  for (const [i, artifactType] of [SBOM, SIGNATURE, SIGNATURE].entries()) {
    referrers.push(await pushReferrer(base, name, subject, { artifactType, annotations: { 'org.example.n': String(i) } }));
  }
  return { subject, referrers };
}

test('the CLI\'s cache port: referrers by the API from one upstream, by the tag schema from the other; skopeo reads them through it', { skip: skipUnless(['docker-registry', 'skopeo']) }, async (t) => {
  const dir = await tempDir('rc-e2e-referrers-');
  let cli: RegcacheProcess | undefined;
  t.after(async () => {
    await cli?.stop();
    await dir.cleanup();
  });
  const withApi = await startRegcache({ referrersPageSize: 2 }, t);
  const without = await startDistribution();
  t.after(() => without.stop());
  const a = await seed(withApi.url, 'library/app');
  const b = await seed(without.url, 'team/tool');
  await writeReferrersTag(without.url, 'team/tool', b.subject.digest, b.referrers.map((r) => r.descriptor));
  cli = await startRegcacheProcess(dir.path, ['--upstream', `docker.io=${withApi.url}`, '--upstream', `legacy.test=${without.url}`]);
  const cache = cli.ready.cache;

  const api = await discover(cache, 'app', a.subject.digest);
  assert.equal(api.via, 'api');
  assert.deepEqual(byDigest(api.referrers), byDigest(a.referrers.map((r) => r.descriptor)));
  const signatures = await discover(cache, 'app', a.subject.digest, { artifactType: SIGNATURE });
  assert.deepEqual(byDigest(signatures.referrers), byDigest(a.referrers.filter((r) => r.descriptor.artifactType === SIGNATURE).map((r) => r.descriptor)));

  const fallback = await discover(cache, 'legacy.test/team/tool', b.subject.digest);
  assert.equal(fallback.via, 'tag');
  assert.deepEqual(byDigest(fallback.referrers), byDigest(b.referrers.map((r) => r.descriptor)));

  const skopeo = (ref: string) => run(toolPath('skopeo'), ['--insecure-policy', 'inspect', '--raw', '--tls-verify=false', `docker://${new URL(cache).host}/${ref}`], { env: privateToolEnv(dir.path) });
  const index = JSON.parse((await skopeo(`legacy.test/team/tool:${referrersTag(b.subject.digest)}`)).stdout) as { manifests: Referrer['descriptor'][] };
  assert.deepEqual(byDigest(index.manifests), byDigest(b.referrers.map((r) => r.descriptor)), 'the referrers tag through the cache');
  const first = b.referrers[0]!;
  assert.equal((await skopeo(`legacy.test/team/tool@${first.digest}`)).stdout.trim(), first.manifest.toString('utf8'), 'a referrer manifest through the cache');
});
