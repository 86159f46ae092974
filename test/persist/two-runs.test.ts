// Persistence across runs on fresh runners (issue 5, "Tests"): the real bundled Action (main,
// pulls, post) against a real upstream (distribution) and the Actions cache stand-in, each
// run with its own storage dir, RUNNER_TEMP and workspace (and, with docker, its own dockerd
// and data-root), so that nothing but the Actions cache carries content from run to run.
//   - two runs: the second serves every layer from restored packs, asks the upstream for no
//     blob, and creates no entry at all (nothing new: the index is not uploaded again);
//   - restore under another GITHUB_WORKSPACE and RUNNER_TEMP (entries carry fixed paths);
//   - a pull request run (save: auto) restores but saves nothing, while a push to the default
//     branch (save: auto) saves.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { type Dockerd } from '../helpers/dockerd.js';
import { startTestHost } from '../helpers/actions-runner.js';
import { skipUnless } from '../helpers/tools.js';
import { pushImage, seedImage } from '../helpers/upstream-images.js';
import {
  assertSummaryMatchesRecords,
  blobGets,
  bytesOf,
  createdIndexes,
  createdPacks,
  dockerImage,
  downloadsOf,
  imageRow,
  isPackKey,
  pullThroughCache,
  runJob,
  serverStats,
  twirpCalls,
  persistWorld,
} from './support.js';
import { formatBytes } from '../../src/action/summary/index.js';

const skipDocker = skipUnless(['dockerd', 'containerd', 'docker', 'docker-registry', 'busybox'], { root: true });
const skipHttp = skipUnless(['docker-registry', 'zstd']);

test('two runs on fresh runners: run 2 pulls every layer from restored packs, no upstream blob GET, no new entry', { skip: skipDocker, timeout: 120_000 }, async (t) => {
  const { dir, svc, upstream } = await persistWorld(t);
  const name = `app-${Math.random().toString(36).slice(2, 8)}`;
  const image = await pushImage(upstream.url, `library/${name}`, 'v1', await dockerImage(3));
  const layers = image.layers.length; // busybox + 3: N blobs that must come from packs in run 2

  /** One run: a fresh dockerd (fresh data-root), main, `docker pull`, post. */
  const run = async (n: number) => {
    const host = await startTestHost();
    t.after(() => host.dockerd.stop());
    const jobDir = join(dir.path, `run${n}`);
    const result = await runJob(
      t,
      {
        svc,
        upstream,
        dir: jobDir,
        runner: { runId: 100 + n },
        inputs: { ...host.inputs, 'configure-docker': 'true', 'configure-containerd': 'true', 'containerd-hosts-dir': join(jobDir, 'certs.d'), save: 'true' },
        env: host.env,
      },
      () => host.dockerd.docker(['pull', `${name}:v1`]),
    );
    assert.deepEqual(result.main.warnings, [], `main: no warning (the mirror proof passed)\n${result.main.stdout}`);
    assert.deepEqual(result.post.warnings, [], `post: no warning\n${result.post.stdout}`);
    const id = (await host.dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', `${name}:v1`])).stdout.trim();
    await stopDockerd(host.dockerd);
    return { ...result, id };
  };

  const first = await run(1);
  assert.deepEqual(new Set(blobGets(first.upstream)), new Set(image.blobs.map((b) => b.digest)), 'run 1 fetched every blob upstream');
  const packs1 = createdPacks(first);
  assert.equal(packs1.length, 1, `run 1 saved the image's layers as one pack: ${first.created.map((e) => e.key).join(', ')}`);
  assert.equal(createdIndexes(first).length, 1, 'and one index entry');
  assert.equal(first.created.length, 2, 'and nothing else (no pack for the mirror probe)');
  assert.equal(first.persistence.Saved?.split(' (')[0], '1 new pack');
  assert.match(first.persistence.Saved!, new RegExp(`^1 new pack \\(${formatBytes(bytesOf(image.layers)).replace('.', '\\.')}\\)`), 'the pack holds the layers (the config travels in the index)');
  assertSummaryMatchesRecords(first, svc);
  // The step log: @actions/cache's lines inside the save group, the outcome in one line after it.
  const save = first.post.lines.indexOf('::group::regcache: save to the GitHub Actions cache');
  const saveEnd = first.post.lines.indexOf('::endgroup::', save);
  assert.ok(save >= 0 && saveEnd > save, first.post.stdout);
  assert.ok(first.post.lines.slice(save + 1, saveEnd).some((l) => l && !l.startsWith('regcache:') && !l.startsWith('::')), `the library's lines are in the group:\n${first.post.stdout}`);
  const outside = first.post.lines.slice(0, save).concat(first.post.lines.slice(saveEnd + 1)).filter((l) => l && !l.startsWith('::'));
  for (const l of outside) assert.match(l, /^regcache: /, `outside the group only regcache's own lines:\n${first.post.stdout}`);
  assert.ok(first.post.lines.slice(saveEnd).some((l) => /^regcache: saved 1 new pack \(\d+(\.\d)? (B|KiB|MiB)\) to the Actions cache in \d+\.\d s; index regcache-index-/.test(l)), first.post.stdout);

  const second = await run(2);
  assert.equal(second.id, first.id, 'the same image');
  assert.deepEqual(blobGets(second.upstream), [], 'run 2 asked the upstream for no blob');
  assert.ok(second.upstream.every((e) => e.method === 'HEAD'), `run 2 only revalidated the tag upstream: ${JSON.stringify(second.upstream)}`);
  assert.deepEqual(twirpCalls(second.requests, 'CreateCacheEntry'), [], 'run 2 created no entry: no pack (nothing new) and no index (the union is what it restored)');
  assert.equal(second.persistence['Index entry'], 'unchanged (nothing new: no upload)');
  const downloaded = downloadsOf(second.requests, svc.records().entries);
  assert.deepEqual(downloaded.map((e) => e.key).sort(), [packs1[0]!.key, createdIndexes(first)[0]!.key].sort(), 'run 2 downloaded the index and the one pack, once each');
  const persist = (await serverStats(second)).extras.persist as { packsRestored: number; blobsRestored: number; bytesRestored: number };
  assert.equal(persist.packsRestored, 1);
  assert.equal(persist.blobsRestored, layers, `the ${layers} layers came from the restored pack`);
  assert.equal(second.persistence['Packs restored']?.split(', ')[0], `1 pack (${layers} blobs`);
  const row = imageRow(second.post.summary, `library/${name}`);
  assert.equal(row[3], 'Actions cache', `manifest and config from the index, layers from the pack: all the Actions cache's on a fresh runner: ${row.join(' | ')}`);
  assert.equal(row[5], '0 B', 'nothing from upstream');
  assert.equal(((await serverStats(second)) as unknown as { totals: { bytesFetched: number } }).totals.bytesFetched, 0, 'nothing fetched upstream');
  assert.equal(second.main.outputs['cache-hit'], 'true', 'an index was restored');
  assert.equal(second.main.outputs['cache-matched-key'], createdIndexes(first)[0]!.key);
  assert.equal(first.main.outputs['cache-hit'], 'false', 'run 1 found no index');
  assertSummaryMatchesRecords(second, svc);
});

/** Stops a dockerd and waits for it (a fresh one per run). */
async function stopDockerd(d: Dockerd): Promise<void> {
  await d.stop();
}

test('entries restore under another GITHUB_WORKSPACE and RUNNER_TEMP', { skip: skipHttp, timeout: 60_000 }, async (t) => {
  const { dir, svc, upstream } = await persistWorld(t);
  const image = await seedImage(upstream.url, 'library/elsewhere', 'v1', { layers: 3 });
  const pull = (url: string) => pullThroughCache(url, [{ name: 'library/elsewhere', reference: 'v1', image }]);

  // Two runners whose paths differ in length and depth (as /home/runner/work/r/r and
  // /__w/r/r, or a self-hosted runner's _work dir, do).
  const first = await runJob(t, { svc, upstream, dir: join(dir.path, 'a'), runner: { runId: 1 }, inputs: { save: 'true' } }, pull);
  const second = await runJob(t, { svc, upstream, dir: join(dir.path, 'b', 'self-hosted', 'runner-07', '_work'), runner: { runId: 2 }, inputs: { save: 'true' } }, pull);
  assert.notEqual(first.job.workspace, second.job.workspace);
  assert.notEqual(first.job.runnerTemp, second.job.runnerTemp);

  assert.equal(createdPacks(first).length, 1);
  assert.deepEqual(blobGets(second.upstream), [], 'run 2 fetched no blob upstream');
  const persist = (await serverStats(second)).extras.persist as { blobsRestored: number };
  assert.equal(persist.blobsRestored, image.layers.length);
  // What makes it work: the version (hash of the path strings) is the same on both runners.
  const versions = (run: typeof first, kind: (k: string) => boolean) =>
    new Set(twirpCalls(run.requests, 'GetCacheEntryDownloadURL').concat(twirpCalls(run.requests, 'CreateCacheEntry')).filter((r) => kind((r.request as { key: string }).key)).map((r) => (r.request as { version: string }).version));
  assert.deepEqual(versions(second, isPackKey), versions(first, isPackKey), 'pack entries have one version on both runners');
  assert.equal(versions(first, isPackKey).size, 1);
  assertSummaryMatchesRecords(second, svc);
});

test('save: auto saves a push to the default branch; a pull request run restores and saves nothing', { skip: skipHttp, timeout: 60_000 }, async (t) => {
  const { dir, svc, upstream } = await persistWorld(t);
  const cached = await seedImage(upstream.url, 'library/base', 'v1', { layers: 2 });
  const added = await seedImage(upstream.url, 'library/pr-only', 'v1', { layers: 2 });
  const event = { repository: { default_branch: 'main' } };

  const push = await runJob(t, { svc, upstream, dir: join(dir.path, 'push'), runner: { runId: 1 }, inputs: { save: 'auto' }, event }, (url) =>
    pullThroughCache(url, [{ name: 'library/base', reference: 'v1', image: cached }]),
  );
  assert.equal(createdPacks(push).length, 1, 'a push to the default branch saves (save: auto)');
  assert.equal(createdIndexes(push).length, 1);

  // A pull request: its token reads its own ref and the base branch, and writes its own ref.
  const pr = await runJob(t, { svc, upstream, dir: join(dir.path, 'pr'), runner: { runId: 2, ref: 'refs/pull/7/merge' }, inputs: { save: 'auto' }, event }, (url) =>
    pullThroughCache(url, [
      { name: 'library/base', reference: 'v1', image: cached },
      { name: 'library/pr-only', reference: 'v1', image: added },
    ]),
  );
  assert.deepEqual(new Set(blobGets(pr.upstream)), new Set(added.blobs.map((b) => b.digest)), 'the PR run restored the base image (no blob of it upstream) and fetched only the new image');
  assert.equal((await serverStats(pr)).extras.persist?.blobsRestored, cached.layers.length);
  assert.deepEqual(twirpCalls(pr.requests, 'CreateCacheEntry'), [], 'the PR run created no entry, though it fetched a new image');
  assert.equal(pr.persistence.Saved, 'nothing: `save: auto` does not save on pull requests (set `save: true` to save from them)');
  assert.match(pr.post.summary, /Nothing was saved to the Actions cache: `save: auto` does not save on pull requests/, 'said above the table');
  assert.match(pr.post.stdout, /not saving to the Actions cache/);
  assert.ok(twirpCalls(pr.requests, 'GetCacheEntryDownloadURL').every((r) => r.ref === 'refs/pull/7/merge'), 'the lookups were the PR token\'s');
  assertSummaryMatchesRecords(pr, svc);
});
