// Byte counts that must be exact, from the server's counters to the summary: two jobs on one
// storage (a runner that keeps its disk) pull through a real regcache from a distribution
// upstream named docker.io, as docker does (manifest by tag, again by digest, then blobs).
// The stats JSON, /metrics and the summary's table and headline must give the bytes
// the images hold, each attributed to where it came from, and agree with the upstream's
// access log: the first job's bytes all from upstream, the second job's from this runner's disk
// for the image it had and from upstream for the new one. (The chart needs three sources: it
// is checked in two-jobs.test.ts.)
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { renderJobSummary, formatBytes, shortDigest } from '../../../src/action/summary/index.js';
import { PROBE_REPOSITORY } from '../../../src/proxy/index.js';
import type { StatsSnapshot } from '../../../src/stats/index.js';
import { sizedAccessLog, startDistribution, type Distribution } from '../../helpers/distribution.js';
import { tempDir } from '../../helpers/proc.js';
import { skipUnless } from '../../helpers/tools.js';
import { ACCEPT_ALL_MANIFESTS, fetchBytes, seedImage, type TestImage } from '../../helpers/upstream-images.js';
import { assertWellFormed, parseSummary } from '../../helpers/summary-markdown.js';
import { cleanup, getText, startCache } from '../../proxy/support.js';

const skip = skipUnless(['docker-registry']);

/** Pulls as docker does: the manifest by tag, again by digest, then every blob; returns the bytes received. */
async function dockerLikePull(cacheUrl: string, name: string, tag: string, image: TestImage): Promise<number> {
  let received = 0;
  for (const ref of [tag, image.digest]) {
    const m = await fetchBytes(`${cacheUrl}/v2/${name}/manifests/${ref}`, { headers: { accept: ACCEPT_ALL_MANIFESTS } });
    assert.equal(m.status, 200);
    received += m.body.byteLength;
  }
  for (const b of image.blobs) {
    const r = await fetchBytes(`${cacheUrl}/v2/${name}/blobs/${b.digest}`);
    assert.equal(r.status, 200);
    received += r.body.byteLength;
  }
  return received;
}

const sizeOf = (image: TestImage) => image.manifest.byteLength + image.blobs.reduce((a, b) => a + b.size, 0);
const blobBytes = (image: TestImage) => image.blobs.reduce((a, b) => a + b.size, 0);

/** The /metrics value of a series. */
function series(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `/metrics has ${name}`);
  return Number(line.slice(name.length + 1));
}

/** One job: a server on `storage`, `work`, its stats, metrics and summary. */
async function job(t: TestContext, upstream: Distribution, storage: string, work: (cacheUrl: string) => Promise<void>) {
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], storage, tagTtlMs: 0 });
  const start = (await upstream.accessLog()).length;
  await work(cache.cacheUrl);
  const snapshot = (await (await fetch(`${cache.cacheUrl}/_regcache/stats`)).json()) as StatsSnapshot;
  const metrics = (await getText(`${cache.cacheUrl}/metrics`)).text;
  const log = (await sizedAccessLog(upstream)).slice(start);
  await cache.server.close();
  const hidden = Object.keys(snapshot.repositories).filter((n) => n.endsWith(`/${PROBE_REPOSITORY}`));
  const markdown = renderJobSummary({ stats: snapshot, hidden });
  assertWellFormed(markdown);
  return { snapshot, metrics, log, markdown, parsed: parseSummary(markdown) };
}

test('exact bytes: served and fetched in stats, /metrics and the summary, attributed to upstream then to disk', { skip, timeout: 60_000 }, async (t) => {
  const dir = await tempDir('rc-summary-bytes-', t);
  const upstream = cleanup(t, await startDistribution());
  const app = await seedImage(upstream.url, 'library/app', 'v1', { layers: 2, layerSize: 40_000 });
  const other = await seedImage(upstream.url, 'library/other', 'v1', { layers: 1, layerSize: 300_000 });
  const storage = join(dir.path, 'storage');
  const appName = 'docker.io/library/app';

  // Job 1: everything from upstream.
  let received1 = 0;
  const first = await job(t, upstream, storage, async (url) => void (received1 = await dockerLikePull(url, 'app', 'v1', app)));
  const served1 = 2 * app.manifest.byteLength + blobBytes(app);
  assert.equal(received1, served1);
  const r1 = first.snapshot.repositories[appName]!;
  assert.equal(r1.bytesServed, served1, 'bytes served: the manifest twice (tag, digest) and each blob once');
  assert.deepEqual(r1.bytesServedByOrigin, { upstream: served1, actionsCache: 0, disk: 0, pushed: 0 });
  assert.deepEqual(r1.sizeByOrigin, { upstream: sizeOf(app), actionsCache: 0, disk: 0, pushed: 0 });
  const upstreamBytes = first.log.filter((e) => e.method === 'GET' && e.status === 200).reduce((a, e) => a + (e.bytes ?? 0), 0);
  assert.equal(r1.bytesFetched, sizeOf(app), 'the manifest and each blob fetched once');
  assert.equal(r1.bytesFetched, upstreamBytes, 'as the upstream logged them');
  assert.equal(first.log.filter((e) => e.method === 'GET' && e.path.includes('/blobs/')).length, app.blobs.length, 'each blob fetched upstream once');
  assert.equal(series(first.metrics, `regcache_bytes_served_total{repository="${appName}"}`), served1);
  assert.equal(series(first.metrics, `regcache_bytes_served_by_origin_total{repository="${appName}",origin="upstream"}`), served1);
  assert.equal(series(first.metrics, `regcache_bytes_served_by_origin_total{repository="${appName}",origin="disk"}`), 0);
  assert.equal(series(first.metrics, `regcache_bytes_fetched_total{repository="${appName}"}`), sizeOf(app));
  assert.deepEqual(first.parsed.tables[0]!.rows, [['app', 'v1', shortDigest(app.digest), 'upstream', formatBytes(sizeOf(app)), formatBytes(sizeOf(app))]]);
  assert.equal(first.parsed.headline, '1 image pulled, none from cache · Docker Hub: 1 pull counted');
  assert.equal(first.parsed.pie, undefined, 'one source: no chart');

  // Job 2 on the same disk: app from the disk, other from upstream.
  const second = await job(t, upstream, storage, async (url) => {
    await dockerLikePull(url, 'app', 'v1', app);
    await dockerLikePull(url, 'other', 'v1', other);
  });
  assert.deepEqual(second.log.filter((e) => e.method === 'GET' && e.path.includes('/blobs/')).map((e) => e.path.split('/').pop()).sort(), other.blobs.map((b) => b.digest).sort(), 'only the new image was fetched');
  const r2 = second.snapshot.repositories[appName]!;
  assert.deepEqual(r2.bytesServedByOrigin, { upstream: 0, actionsCache: 0, disk: served1, pushed: 0 });
  assert.equal(r2.bytesFetched, 0);
  assert.equal(series(second.metrics, `regcache_bytes_served_by_origin_total{repository="${appName}",origin="disk"}`), served1);
  const rows = second.parsed.tables[0]!.rows;
  assert.deepEqual(rows, [
    ['app', 'v1', shortDigest(app.digest), "this runner's disk", formatBytes(sizeOf(app)), '0 B'],
    ['other', 'v1', shortDigest(other.digest), 'upstream', formatBytes(sizeOf(other)), formatBytes(sizeOf(other))],
  ]);
  assert.equal(second.parsed.headline, `2 images pulled, 1 from cache (${formatBytes(sizeOf(app))} not downloaded) · Docker Hub: 1 pull avoided, 1 counted`);
  assert.equal(second.parsed.pie, undefined, 'two sources: the headline and the table say it, no chart');
});
