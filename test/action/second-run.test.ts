// A second job on the same storage directory (what the Actions cache carries from run to run)
// but a fresh docker daemon (a fresh data-root: docker really pulls again) gets every blob from
// regcache's disk: the upstream's access log shows no blob GET, and the summary says so.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ActionsJob, type SeededUpstream, type StepResult, node24Binary, startSeededUpstream, startTestHost } from '../helpers/actions-runner.js';
import { tempDir } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';
import { assertWellFormed, parseSummary } from '../helpers/summary-markdown.js';
import { formatBytes } from '../../src/action/summary/index.js';
import type { StatsSnapshot } from '../../src/stats/index.js';

const skip = skipUnless(['dockerd', 'containerd', 'docker', 'docker-registry', 'busybox'], { root: true });

interface RunResult {
  main: StepResult;
  post: StepResult;
  /** Blob GETs the upstream saw during this run. */
  blobGets: number;
  manifestGets: number;
  upstreamRequests: number;
}

/** One simulated job on a fresh dockerd: main, `docker pull`, post. */
async function simulatedJob(t: TestContext, jobDir: string, node: string, upstream: SeededUpstream, storage: string): Promise<RunResult> {
  const host = await startTestHost();
  t.after(() => host.dockerd.stop());
  const hostsDir = join(jobDir, 'certs.d');
  await mkdir(hostsDir, { recursive: true });
  const job = new ActionsJob(jobDir, {
    node,
    inputs: { ...host.inputs, upstreams: `docker.io=${upstream.registry.url}`, 'registry-port': '0', 'cache-port': '0', 'containerd-hosts-dir': hostsDir, storage },
    env: host.env,
  });
  t.after(() => job.stopLeftoverServer());
  const seen = (await upstream.requests()).length;
  const main = await job.main();
  assert.equal(main.code, 0, main.stdout + main.stderr);
  assert.deepEqual(main.warnings, [], main.stdout);
  await host.dockerd.docker(['pull', upstream.image]);
  const post = await job.post();
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(post.warnings, [], post.stdout);
  await host.dockerd.stop();
  const during = (await upstream.requests()).slice(seen).filter((e) => e.path.startsWith(`/v2/${upstream.repository}/`));
  return {
    main,
    post,
    blobGets: during.filter((e) => e.method === 'GET' && e.path.includes('/blobs/')).length,
    manifestGets: during.filter((e) => e.method === 'GET' && e.path.includes('/manifests/')).length,
    upstreamRequests: (await upstream.requests()).length - seen,
  };
}

/** The summary's row for an image (image, tags, digest, bytes from, size, from upstream), checked well formed. */
function imageRow(summary: string, repository: string): string[] {
  assertWellFormed(summary);
  const row = parseSummary(summary).tables[0]?.rows.find((r) => r[0] === repository.replace(/^library\//, ''));
  assert.ok(row, `summary has a row for ${repository}:\n${summary}`);
  return row;
}

test('second run on a fresh docker data-root and the same storage: zero upstream blob GETs', { skip, timeout: 120_000 }, async (t) => {
  const node = node24Binary(t);
  if (!node) return;
  const dir = await tempDir('rc-action-', t);
  const upstream = await startSeededUpstream(join(dir.path, 'layout'));
  t.after(() => upstream.registry.stop());
  const storage = join(dir.path, 'storage');

  const first = await simulatedJob(t, join(dir.path, 'job1'), node, upstream, storage);
  assert.equal(first.blobGets, upstream.blobs.length, 'the first run fetched every blob upstream');
  const cold = imageRow(first.post.summary, upstream.repository);
  assert.equal(cold[3], 'upstream', `a cold job: bytes from upstream only: ${cold.join(' | ')}`);
  const firstStats = JSON.parse(await readFile(first.main.outputs['stats-file']!, 'utf8')) as StatsSnapshot;
  assert.equal(cold[5], formatBytes(firstStats.totals.bytesFetched), 'the From upstream column: the bytes fetched, as the stats file says');

  const second = await simulatedJob(t, join(dir.path, 'job2'), node, upstream, storage);
  assert.equal(second.blobGets, 0, 'the second run fetched no blob upstream');
  const row = imageRow(second.post.summary, upstream.repository);
  assert.equal(row[3], "this runner's disk", `the bytes came from disk: ${row.join(' | ')}`);
  assert.equal(row[4], cold[4], 'the same size');
  assert.equal(row[5], '0 B', 'nothing from upstream');
  const stats = JSON.parse(await readFile(second.main.outputs['stats-file']!, 'utf8')) as StatsSnapshot;
  const repo = Object.entries(stats.repositories).find(([n]) => n.endsWith(upstream.repository))?.[1];
  assert.equal(repo?.blobMisses, 0);
  assert.equal(repo?.blobHits, upstream.blobs.length);
  assert.equal(stats.totals.bytesFetched, 0);
  const upstreamRequests = Object.values(stats.upstreams).reduce((a, u) => a + Object.values(u.requests).reduce((x, y) => x + y, 0), 0);
  assert.equal(upstreamRequests, second.upstreamRequests, 'requests sent upstream: as the access log says');
  const counted = Object.values(stats.upstreams).reduce((a, u) => a + u.countedManifestGets, 0);
  assert.equal(counted, second.manifestGets, 'counted manifest GETs: as the access log says');
});
