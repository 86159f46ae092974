// The server's request log with a real client: a `docker pull` through the mirror
// (registry-mirrors) leaves one line per request at `info` in the server log (the CLI process,
// whose output goes to a file, as the Action's server.log), each with method, path, status,
// bytes, time and where the answer came from (upstream on the first pull, this runner's disk
// on the second); the stats file's request count says no request went unlogged. At
// `--log-level warn` the same traffic leaves no request line.
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startSeededUpstream } from '../helpers/actions-runner.js';
import { startDockerd } from '../helpers/dockerd.js';
import { tempDir } from '../helpers/proc.js';
import { startRegcacheProcess } from '../helpers/regcache.js';
import { skipUnless } from '../helpers/tools.js';

const skip = skipUnless(['dockerd', 'containerd', 'docker', 'docker-registry', 'busybox'], { root: true });

interface RequestLine {
  level: number;
  method: string;
  url: string;
  status: number;
  bytes?: number;
  ms: number;
  source?: string;
  msg: string;
}

/** The request lines of a server log (pino JSON, one object per line; other lines skipped). */
function requestLines(log: string): RequestLine[] {
  return log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as RequestLine)
    .filter((l) => l.msg === 'request');
}

test('docker pull through the mirror: every request in the server log at info, with its source', { skip, timeout: 180_000 }, async (t) => {
  const dir = await tempDir('rc-request-log-', t);
  const upstream = await startSeededUpstream(join(dir.path, 'layout'));
  t.after(() => upstream.registry.stop());
  const statsFile = join(dir.path, 'stats.json');
  // --tag-ttl 0: every tag request asks the upstream, so that one made while it is down is served stale.
  const server = await startRegcacheProcess(dir.path, ['--log-level', 'info', '--tag-ttl', '0s', '--upstream', `docker.io=${upstream.registry.url}`, '--stats-file', statsFile]);
  t.after(() => server.stop());
  const dockerd = await startDockerd({ daemonJson: { 'registry-mirrors': [server.ready.cache] } });
  t.after(() => dockerd.stop());

  await dockerd.docker(['pull', upstream.image]);
  const first = requestLines(server.child.log(1024 * 1024));
  await dockerd.docker(['rmi', upstream.image]);
  await dockerd.docker(['pull', upstream.image]);
  const pulls = requestLines(server.child.log(1024 * 1024)).length;
  // The upstream goes away: the cached tag is served stale.
  await upstream.registry.stop();
  const staleAnswer = await fetch(`${server.ready.cache}/v2/${upstream.repository}/manifests/${upstream.tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  await staleAnswer.arrayBuffer();
  assert.equal(staleAnswer.status, 200);
  await server.stop();
  const all = requestLines(await readFile(server.child.logFile, 'utf8'));
  const second = all.slice(first.length, pulls);
  assert.deepEqual(all.slice(pulls).map((l) => [l.status, l.source]), [[200, 'stale']], 'the answer while the upstream was down: stale');

  for (const l of all) {
    assert.equal(l.level, 30, `at info: ${JSON.stringify(l)}`);
    assert.ok(l.method && l.url && l.status > 0 && typeof l.ms === 'number', `method, path, status, ms: ${JSON.stringify(l)}`);
  }
  const blobs = (lines: RequestLine[]) => lines.filter((l) => l.method === 'GET' && l.url.includes('/blobs/'));
  const manifests = (lines: RequestLine[]) => lines.filter((l) => l.url.includes('/manifests/'));
  const sizeOf = async (digest: string) => (await stat(join(upstream.layout.dir, 'blobs', 'sha256', digest.slice('sha256:'.length)))).size;

  // First pull: the manifest and both blobs from upstream, with their sizes.
  assert.ok(manifests(first).some((l) => l.url.endsWith(`/manifests/${upstream.tag}`) && l.status === 200 && l.source === 'upstream'), JSON.stringify(first, null, 1));
  assert.deepEqual(blobs(first).map((l) => l.url.split('/').pop()).sort(), [...upstream.blobs].sort(), 'each blob GET is logged');
  for (const l of blobs(first)) {
    assert.equal(l.status, 200);
    assert.equal(l.source, 'upstream', JSON.stringify(l));
    assert.equal(l.bytes, await sizeOf(l.url.split('/').pop()!), `bytes: ${JSON.stringify(l)}`);
  }
  // Second pull (the image removed from docker, still in the cache): from disk.
  assert.ok(manifests(second).length > 0, JSON.stringify(second, null, 1));
  for (const l of [...manifests(second), ...blobs(second)]) assert.equal(l.source, 'disk', JSON.stringify(l));

  // Nothing went unlogged: the statistics count every cache-port request.
  const stats = JSON.parse(await readFile(statsFile, 'utf8')) as { totals: { requests: number } };
  assert.equal(all.length, stats.totals.requests, `${all.length} request lines, ${stats.totals.requests} requests counted`);
});

test('--log-level warn: no request lines', { skip: skipUnless(['docker-registry']), timeout: 60_000 }, async (t) => {
  const dir = await tempDir('rc-request-log-', t);
  const upstream = await startSeededUpstream(join(dir.path, 'layout'));
  t.after(() => upstream.registry.stop());
  const server = await startRegcacheProcess(dir.path, ['--log-level', 'warn', '--upstream', `docker.io=${upstream.registry.url}`]);
  t.after(() => server.stop());
  const base = server.ready.cache;
  for (const path of ['/v2/', `/v2/${upstream.repository}/manifests/${upstream.tag}`, `/v2/${upstream.repository}/blobs/${upstream.blobs[0]}`, '/v2/library/none/manifests/v1']) {
    const res = await fetch(`${base}${path}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    await res.arrayBuffer();
  }
  await server.stop();
  const log = await readFile(server.child.logFile, 'utf8');
  assert.deepEqual(requestLines(log), [], log);
  assert.ok(!/"level":30/.test(log), `nothing at info: ${log}`);
});
