// The summary of a cold job and of the warm job after it, as users see them (the README's
// picture is rendered from these two files: docs/summary/cold.md and warm.md). Two jobs of the
// real bundled Action on fresh runners, the real @actions/cache against the Actions cache
// stand-in, two Debian distribution upstreams named docker.io (behind a proxy that adds Docker
// Hub's rate-limit headers) and ghcr.io; the images are pulled as docker pulls (manifest by
// tag, again by digest, then the blobs). The numbers are checked against what the upstreams'
// access logs and the stand-in's records saw, and the markdown against the committed files
// (durations aside). REGCACHE_UPDATE_SUMMARY=1 rewrites the files from this run.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatBytes, shortDigest } from '../../../src/action/summary/index.js';
import { REPO_ROOT } from '../../helpers/actions-runner.js';
import { startDistribution } from '../../helpers/distribution.js';
import { startFaultProxy } from '../../helpers/fault-proxy.js';
import { skipUnless } from '../../helpers/tools.js';
import { ACCEPT_ALL_MANIFESTS, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, fetchBytes, pushImage, sha256, type Blob, type TestImage } from '../../helpers/upstream-images.js';
import { assertWellFormed, parseSummary } from '../../helpers/summary-markdown.js';
import { blobGets, createdPacks, downloadsOf, isPackKey, runJob, startJob, persistWorld, serverStats, assertSummaryMatchesRecords } from '../../persist/support.js';

const skip = skipUnless(['docker-registry', 'zstd']);

/** Where the committed summaries are. */
export const SUMMARY_DIR = join(REPO_ROOT, 'docs', 'summary');

/** Bytes that depend only on `seed` (the committed markdown names digests). */
function seeded(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0, n = 0; i < size; n++) {
    const h = createHash('sha256').update(`${seed}/${n}`).digest();
    i += h.copy(out, i);
  }
  return out;
}

function blobOf(data: Buffer, mediaType: string): Blob {
  return { digest: sha256(data), size: data.byteLength, data, mediaType };
}

/** An image whose digests are the same every run: `layers` sizes in bytes. */
function fixedImage(seed: string, layers: number[]): TestImage {
  const ls = layers.map((size, i) => blobOf(seeded(`${seed}/layer${i}`, size), OCI_LAYER));
  const config = blobOf(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: ls.map((l) => l.digest) } })), OCI_CONFIG);
  const d = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: d(config), layers: ls.map(d) }));
  return { manifest, digest: sha256(manifest), mediaType: OCI_MANIFEST, config, layers: ls, blobs: [config, ...ls] };
}

/** A pull as docker makes it, through the cache port: manifest by tag, by digest, then the blobs. */
async function dockerLikePull(cacheUrl: string, name: string, tag: string, image: TestImage): Promise<void> {
  for (const ref of [tag, image.digest]) {
    const m = await fetchBytes(`${cacheUrl}/v2/${name}/manifests/${ref}`, { headers: { accept: ACCEPT_ALL_MANIFESTS } });
    assert.equal(m.status, 200, `${name}:${ref}: ${m.body.toString('utf8').slice(0, 200)}`);
  }
  for (const b of image.blobs) {
    const r = await fetchBytes(`${cacheUrl}/v2/${name}/blobs/${b.digest}`);
    assert.equal(r.status, 200);
    assert.equal(sha256(r.body), b.digest);
  }
}

/** The markdown with what changes from run to run (durations) made constant. */
export function normalized(md: string): string {
  return md.replace(/\d+\.\d s\b/g, '#.# s').replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT');
}

const sizeOf = (i: TestImage) => i.manifest.byteLength + i.blobs.reduce((a, b) => a + b.size, 0);
const MiB = 1024 * 1024;

test('a cold job then a warm job: headline, table and chart attribute every byte as the upstreams and the Actions cache saw it', { skip, timeout: 240_000 }, async (t) => {
  const { dir, svc, upstream: hub } = await persistWorld(t);
  const ghcr = await startDistribution();
  t.after(() => ghcr.stop());
  const proxy = await startFaultProxy(hub.url, [
    { name: 'ratelimit', match: /\/manifests\//, fault: { kind: 'pass', headers: { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '97;w=21600' } } },
  ]);
  t.after(() => proxy.close());
  const images = {
    python: { name: 'python', path: 'library/python', image: fixedImage('python', [9 * MiB, 3 * MiB, 600_000]) },
    postgres: { name: 'postgres', path: 'library/postgres', image: fixedImage('postgres', [7 * MiB, 1_200_000]) },
    api: { name: 'ghcr.io/acme/api', path: 'acme/api', image: fixedImage('acme-api', [2 * MiB, 300_000]) },
    migrate: { name: 'acme/migrate', path: 'acme/migrate', image: fixedImage('acme-migrate', [5 * MiB]) },
  };
  /** What the warm job builds and pushes to the registry port. */
  const built = fixedImage('acme-app', [3 * MiB, 700_000]);
  for (const i of [images.python, images.postgres, images.migrate]) await pushImage(hub.url, i.path, 'v1', i.image);
  await pushImage(ghcr.url, images.api.path, 'v1', images.api.image);
  const inputs = { save: 'true', upstreams: `docker.io=${proxy.url}\nghcr.io=${ghcr.url}`, prefetch: 'true' };
  const ghcrBefore = (await ghcr.accessLog()).length;

  const cold = await runJob(t, { svc, upstream: hub, dir: join(dir.path, 'cold'), runner: { runId: 1 }, inputs }, async (url) => {
    for (const i of [images.python, images.postgres, images.api]) await dockerLikePull(url, i.name, 'v1', i.image);
  });
  const ghcrCold = (await ghcr.accessLog()).slice(ghcrBefore);
  const warmJob = await startJob(t, { svc, upstream: hub, dir: join(dir.path, 'warm'), runner: { runId: 2 }, inputs });
  for (const i of [images.python, images.postgres, images.api, images.migrate]) await dockerLikePull(warmJob.cacheUrl, i.name, 'v1', i.image);
  const registryHost = new URL(warmJob.main.outputs['registry-url']!).host;
  await pushImage(`http://${registryHost}`, 'acme/app', 'v1', built);
  const warm = await warmJob.finish();
  const ghcrWarm = (await ghcr.accessLog()).slice(ghcrBefore + ghcrCold.length);

  // The cold job: every byte from upstream, as the access logs say; nothing from disk or the Actions cache.
  assertWellFormed(cold.post.summary);
  const c = parseSummary(cold.post.summary);
  const coldImages = [images.api, images.postgres, images.python];
  assert.deepEqual(new Set([...blobGets(cold.upstream), ...blobGets(ghcrCold)]), new Set(coldImages.flatMap((i) => i.image.blobs.map((b) => b.digest))), 'every blob fetched upstream once');
  assert.deepEqual(c.tables[0]!.rows, coldImages.map((i) => [i.name, 'v1', shortDigest(i.image.digest), 'upstream', formatBytes(sizeOf(i.image)), formatBytes(sizeOf(i.image))]));
  const hubGets = cold.upstream.filter((e) => e.method === 'GET' && e.path.includes('/manifests/')).length;
  assert.equal(hubGets, 2, 'one manifest GET per Docker Hub image: the by-digest re-request was answered by the cache');
  assert.equal(c.headline, `3 images pulled, none from cache · Docker Hub: ${hubGets} pulls counted, 97 of 100 left in the 6 h window`);
  assert.equal(c.pie, undefined, 'one source: no chart');
  assertSummaryMatchesRecords(cold, svc);

  // The warm job: the three images from the Actions cache (nothing of them upstream), the new one from upstream.
  assertWellFormed(warm.post.summary);
  const w = parseSummary(warm.post.summary);
  assert.deepEqual(new Set(blobGets(warm.upstream)), new Set(images.migrate.image.blobs.map((b) => b.digest)));
  assert.deepEqual(blobGets(ghcrWarm), [], 'nothing fetched from ghcr.io');
  assert.equal(warm.upstream.filter((e) => e.method === 'GET' && e.path.includes('/manifests/') && !e.path.includes('acme/migrate')).length, 0, 'no counted pull for a cached image');
  const warmImages = [images.migrate, images.api, images.postgres, images.python];
  assert.deepEqual(w.tables[0]!.rows, [
    ...warmImages.map((i) => {
      const fromUpstream = i === images.migrate ? sizeOf(i.image) : 0;
      return [i.name, 'v1', shortDigest(i.image.digest), i === images.migrate ? 'upstream' : 'Actions cache', formatBytes(sizeOf(i.image)), formatBytes(fromUpstream)];
    }),
    [`${registryHost}/acme/app`, 'v1', shortDigest(built.digest), 'pushed here', formatBytes(sizeOf(built)), '0 B'],
  ]);
  assert.equal(w.items['Pushed images'], 'not saved (set `persist-registry: true` to keep them for the next job)');
  const restored = (await serverStats(warm)).extras.persist as { bytesRestored: number; blobsRestored: number };
  const layers = coldImages.flatMap((i) => i.image.layers);
  assert.equal(restored.blobsRestored, layers.length, 'every layer restored from its pack');
  assert.equal(restored.bytesRestored, layers.reduce((a, b) => a + b.size, 0));
  const packs = svc.records().entries.filter((e) => isPackKey(e.key));
  assert.equal(new Set(downloadsOf(warm.requests, packs).map((e) => e.key)).size, createdPacks(cold).length, 'each pack the cold job saved was downloaded');
  const fromCache = coldImages.reduce((a, i) => a + sizeOf(i.image), 0);
  assert.equal(w.headline, `4 images pulled, 3 from cache (${formatBytes(fromCache)} not downloaded) · 1 image pushed · Docker Hub: 2 pulls avoided, 1 counted, 97 of 100 left in the 6 h window`);
  const mib = (n: number) => Number((n / MiB).toFixed(1));
  assert.deepEqual(w.pie, { Upstream: mib(sizeOf(images.migrate.image)), 'Actions cache': mib(fromCache), 'Pushed here': mib(sizeOf(built)) }, 'the chart: upstream, the Actions cache and the push, each its own source');
  assertSummaryMatchesRecords(warm, svc);

  // The committed files (the README's picture) are what this scenario gives.
  for (const [file, md] of [['cold.md', cold.post.summary], ['warm.md', warm.post.summary]] as const) {
    const path = join(SUMMARY_DIR, file);
    if (process.env.REGCACHE_UPDATE_SUMMARY === '1') await writeFile(path, md);
    assert.equal(normalized(md), normalized(await readFile(path, 'utf8')), `${path} is what the scenario renders (REGCACHE_UPDATE_SUMMARY=1 rewrites it, then run scripts/render-summary.mjs)`);
  }
});
