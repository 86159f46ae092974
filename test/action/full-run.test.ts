// The Action end to end, once on Node 24 (what action.yml runs) and once on Node 20: the bundled
// main and post run as the GitHub runner runs them, against a private dockerd whose daemon.json
// and pid file main is pointed at, and a real upstream (distribution) holding a busybox image.
// main must start regcache, add the cache to registry-mirrors keeping every other key, prove the
// mirror, and write hosts.toml; a `docker pull` must then go through the cache (the upstream's
// access log and regcache's statistics agree); post must stop the server, leave daemon.json
// byte-identical, remove what main wrote, and report numbers the access log confirms.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ActionsJob, DIST_DIR, PRESEEDED_DAEMON_JSON, type SeededUpstream, type StepResult, node20Binary, node24Binary, startSeededUpstream, startTestHost } from '../helpers/actions-runner.js';
import type { AccessLogEntry } from '../helpers/distribution.js';
import { pidAlive, run, tempDir, waitFor } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';
import { assertWellFormed, parseSummary } from '../helpers/summary-markdown.js';
import { count, formatBytes, shortDigest } from '../../src/action/summary/index.js';

const skip = skipUnless(['dockerd', 'containerd', 'docker', 'docker-registry', 'busybox'], { root: true });

/** The part of the live statistics the test reads. */
interface LiveStats {
  repositories: Record<string, { blobMisses: number; manifestMisses: number; references: string[] }>;
}

/** The upstream's requests for the seeded repository, by kind. */
function upstreamRequests(log: AccessLogEntry[], up: SeededUpstream) {
  const repo = log.filter((e) => e.path.startsWith(`/v2/${up.repository}/`));
  return {
    all: log,
    blobGets: repo.filter((e) => e.method === 'GET' && e.path.includes('/blobs/')),
    manifestGets: repo.filter((e) => e.method === 'GET' && e.path.includes('/manifests/')),
  };
}


function assertClean(step: StepResult, what: string): void {
  const detail = `\nstdout:\n${step.stdout}\nstderr:\n${step.stderr}`;
  assert.equal(step.code, 0, `${what} exits 0${detail}`);
  assert.deepEqual(step.errors, [], `${what}: no ::error::${detail}`);
  assert.deepEqual(step.warnings, [], `${what}: no ::warning:: (the mirror proof passed)${detail}`);
}

async function fullRun(t: TestContext, node: string): Promise<void> {
  const dir = await tempDir('rc-action-', t);
  const upstream = await startSeededUpstream(join(dir.path, 'layout'));
  t.after(() => upstream.registry.stop());
  const host = await startTestHost();
  t.after(() => host.dockerd.stop());
  const hostsDir = join(dir.path, 'certs.d');
  await mkdir(hostsDir);
  const job = new ActionsJob(join(dir.path, 'job'), {
    node,
    inputs: {
      ...host.inputs,
      upstreams: `docker.io=${upstream.registry.url}`,
      'registry-port': '0',
      'cache-port': '0',
      'containerd-hosts-dir': hostsDir,
    },
    env: host.env,
  });
  t.after(() => job.stopLeftoverServer());

  // main
  const main = await job.main();
  assertClean(main, 'main');
  const { outputs } = main;
  for (const k of ['registry', 'cache', 'registry-url', 'cache-url', 'buildkitd-config', 'stats-url', 'stats-file']) assert.ok(outputs[k], `output ${k} is set`);
  assert.equal(outputs['cache-hit'], 'false', 'no Actions cache in this job: cache-hit is false, never empty');
  assert.equal(outputs['cache-matched-key'], '');
  const cacheUrl = outputs['cache-url']!;
  assert.equal(new URL(cacheUrl).hostname, '127.0.0.1');
  assert.equal(outputs.cache, new URL(cacheUrl).host);
  assert.notEqual(new URL(cacheUrl).port, new URL(outputs['registry-url']!).port);
  const state = JSON.parse(main.state.regcache!) as { pid: number };
  assert.ok(pidAlive(state.pid), 'the server outlives main');

  const daemonJson = JSON.parse(await readFile(host.dockerd.configFile, 'utf8')) as Record<string, unknown>;
  assert.deepEqual(daemonJson['registry-mirrors'], [cacheUrl]);
  const before = JSON.parse(host.daemonJsonBefore.toString('utf8')) as Record<string, unknown>;
  for (const [k, v] of Object.entries(before)) assert.deepEqual(daemonJson[k], v, `daemon.json keeps ${k}`);
  for (const [k, v] of Object.entries(PRESEEDED_DAEMON_JSON)) assert.deepEqual(daemonJson[k], v, `daemon.json keeps ${k}`);
  const mirrors = await host.dockerd.docker(['info', '--format', '{{json .RegistryConfig.Mirrors}}']);
  assert.deepEqual(JSON.parse(mirrors.stdout), [`${cacheUrl}/`], 'dockerd reloaded daemon.json');
  const hostsToml = join(hostsDir, 'docker.io', 'hosts.toml');
  assert.match(await readFile(hostsToml, 'utf8'), new RegExp(`\\[host\\."${cacheUrl}"\\]`));
  assert.deepEqual(upstreamRequests(await upstream.requests(), upstream).all, [], 'the mirror proof asked nothing upstream');

  // a pull in the job goes through the cache
  await host.dockerd.docker(['pull', upstream.image]);
  const log = upstreamRequests(await upstream.requests(), upstream);
  assert.deepEqual(log.blobGets.map((e) => e.path.split('/').pop()).sort(), [...upstream.blobs].sort(), 'each blob fetched upstream once');
  assert.ok(log.manifestGets.length >= 1, 'the manifest came from upstream');
  assert.equal(outputs['stats-url'], `${cacheUrl}/_regcache/stats`);
  const live = (await (await fetch(outputs['stats-url']!)).json()) as LiveStats;
  const repoStats = Object.entries(live.repositories).find(([n]) => n.endsWith(upstream.repository))?.[1];
  assert.ok(repoStats, `the cache served ${upstream.repository}: ${JSON.stringify(live)}`);
  assert.equal(repoStats.blobMisses, upstream.blobs.length);
  assert.ok(repoStats.references.includes(upstream.tag));
  // A later step reads the statistics before post: the file kept current, and `regcache stats`.
  const pulled = (s: LiveStats) => Object.entries(s.repositories).find(([n]) => n.endsWith(upstream.repository))?.[1].blobMisses === upstream.blobs.length;
  await waitFor(async () => pulled(JSON.parse(await readFile(outputs['stats-file']!, 'utf8').catch(() => '{"repositories":{}}')) as LiveStats), {
    what: 'the stats file to show the pull during the job',
    timeoutMs: 10_000,
  });
  const onDemand = join(dir.path, 'on-demand-stats.json');
  await run(node, [join(DIST_DIR, 'cli.js'), 'stats', '--url', cacheUrl, '--out', onDemand]);
  assert.ok(pulled(JSON.parse(await readFile(onDemand, 'utf8')) as LiveStats), '`regcache stats --out` wrote the live statistics');

  // post
  const post = await job.post();
  assertClean(post, 'post');
  assert.equal(pidAlive(state.pid), false, 'post stopped the server');
  assert.ok((await readFile(host.dockerd.configFile)).equals(host.daemonJsonBefore), 'daemon.json is byte-identical to before main');
  // SIGHUP is asynchronous: dockerd applies it moments after post's signal
  await waitFor(async () => JSON.parse((await host.dockerd.docker(['info', '--format', '{{json .RegistryConfig.Mirrors}}'])).stdout).length === 0, {
    what: 'dockerd to drop the mirror after post reloaded it',
    timeoutMs: 10_000,
  });
  assert.equal(existsSync(hostsToml), false, 'hosts.toml removed');
  assert.deepEqual(await readdir(hostsDir), [], 'the hosts dir is as main found it');

  // the report agrees with the upstream's access log
  const final = upstreamRequests(await upstream.requests(), upstream);
  const s = post.summary;
  assertWellFormed(s);
  const parsed = parseSummary(s);
  const row = parsed.tables[0]?.rows.find((r) => r[0] === upstream.repository.replace(/^library\//, ''));
  assert.ok(row, `summary has a row for ${upstream.repository}:\n${s}`);
  const [, tags, digest, from, size, fromUpstream] = row;
  assert.ok(tags!.split(' ').includes(upstream.tag), `row names the tag: ${row.join(' | ')}`);
  assert.equal(digest, shortDigest(upstream.layout.manifestDigest), 'row has the short digest');
  assert.equal(from, 'upstream', "a cold job: every byte from upstream, none from disk (docker's by-digest manifest request is no disk hit)");
  assert.equal(parsed.headline, `1 image pulled, none from cache · Docker Hub: ${count(final.manifestGets.length, 'pull')} counted`);
  assert.ok(!s.includes('mirror-check'), 'the mirror probe is not reported');
  const hub = parsed.tables.find((t) => t.header[0] === 'Upstream')?.rows.find((r) => r[0] === 'docker.io');
  assert.ok(hub, `the upstreams section names docker.io:\n${s}`);
  assert.equal(hub[1], String(final.all.length), 'requests sent upstream: as the access log says');
  assert.equal(hub[3], `${final.manifestGets.length} counted, 0 avoided`, 'manifest GETs: as the access log says');
  assert.equal(parsed.items.docker?.startsWith('pointed at the cache'), true, `the setup says docker was pointed at the cache: ${parsed.items.docker}`);
  assert.deepEqual(post.outputs, {}, 'post sets no outputs (no step runs after it to read them)');
  const fetched = (await Promise.all(upstream.blobs.map((d) => readFile(join(upstream.layout.dir, 'blobs', 'sha256', d.slice(7)))))).reduce((a, b) => a + b.length, 0);
  const manifestBytes = (await readFile(join(upstream.layout.dir, 'blobs', 'sha256', upstream.layout.manifestDigest.slice(7)))).length;
  const stats = JSON.parse(await readFile(outputs['stats-file']!, 'utf8')) as { repositories: Record<string, { blobMisses: number; bytesFetched: number }> };
  const fileStats = Object.entries(stats.repositories).find(([n]) => n.endsWith(upstream.repository))?.[1];
  assert.equal(fileStats?.blobMisses, final.blobGets.length, 'the stats file has the pull');
  const bytesFetched = fileStats?.bytesFetched ?? 0;
  assert.ok(bytesFetched >= fetched && bytesFetched <= fetched + manifestBytes, `bytes fetched ${bytesFetched} is what the upstream sent (${fetched} in blobs)`);
  assert.equal(fromUpstream, formatBytes(bytesFetched), 'the From upstream column: the bytes fetched');
  assert.equal(size, formatBytes(fetched + manifestBytes), 'the Size column: the manifest and blobs, once each');
  t.diagnostic(`main ${main.durationMs} ms, post ${post.durationMs} ms`);
}

test('full run on Node 24: main configures docker, a pull goes through the cache, post restores and reports', { skip, timeout: 120_000 }, async (t) => {
  const node = node24Binary(t);
  if (node) await fullRun(t, node);
});

test('full run on Node 20: main configures docker, a pull goes through the cache, post restores and reports', { skip, timeout: 120_000 }, async (t) => {
  const node = node20Binary(t);
  if (node) await fullRun(t, node);
});
