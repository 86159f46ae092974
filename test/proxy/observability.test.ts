// What the cache tells about itself: upstream credentials (canary strings) and the bearer
// tokens bought with them never appear in the stats JSON, /metrics, error bodies, the stats
// file or the server's own debug log (the CLI process, whose output goes to a file); the
// Prometheus text parses line by line and agrees with the JSON; the stats file is written on
// close with counters that agree with the upstream's access log (and kept current before).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { startDistribution } from '../helpers/distribution.js';
import { freePort } from '../helpers/proc.js';
import { startProcess, waitFor, type ChildHandle } from '../helpers/proc.js';
import { startTokenIssuer } from '../helpers/token-issuer.js';
import { pullImage, seedImage } from '../helpers/upstream-images.js';
import { skipUnless } from '../helpers/tools.js';
import type { StatsSnapshot } from '../../src/stats/index.js';
import { cleanup, getJson, getText, logWindow, startCache, startGate, type AfterHook } from './support.js';

const skip = skipUnless(['docker-registry']);
const DIST_CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

async function tempDir(t: AfterHook, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** `node dist/cli.js serve` with `args`, output to `<dir>/regcache.log`; stopped after the test. */
async function startCli(t: AfterHook, dir: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ cacheUrl: string; child: ChildHandle }> {
  const readyFile = join(dir, 'ready.json');
  const child = await startProcess(process.execPath, [
    DIST_CLI, 'serve', '--registry-addr', '127.0.0.1:0', '--cache-addr', '127.0.0.1:0', '--storage', join(dir, 'storage'), '--ready-file', readyFile, ...args,
  ], { name: 'regcache', logFile: join(dir, 'regcache.log'), env });
  t.after(async () => {
    await child.stop(10_000);
  });
  const ready = await waitFor(async () => JSON.parse(await readFile(readyFile, 'utf8')) as { cache: string }, { process: child, what: 'the ready file', timeoutMs: 20_000 });
  return { cacheUrl: ready.cache, child };
}

/** One response as text: status line, headers and body. */
async function transcript(method: 'GET' | 'HEAD', url: string): Promise<{ status: number; text: string }> {
  const res = await request(url, { method, headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  const body = await res.body.text();
  return { status: res.statusCode, text: `${res.statusCode} ${JSON.stringify(res.headers)}\n${body}` };
}

test('credentials never appear in stats, /metrics, error bodies, the stats file or the debug log', { skip: skip || (!existsSync(DIST_CLI) && 'dist/cli.js is missing: npm run build') }, async (t) => {
  const canary = (tag: string) => `canary-${tag}-${randomBytes(6).toString('hex')}`;
  const secrets = { hub: canary('hub'), ghcr: canary('ghcr'), quay: canary('quay'), gcr: canary('gcr') };
  const issuer = cleanup(t, await startTokenIssuer({ users: { robot: secrets.ghcr } }));
  const tokenUpstream = cleanup(t, await startDistribution({ token: issuer.distribution }));
  const basicUpstream = cleanup(t, await startDistribution({ htpasswd: { user: 'ci', password: secrets.hub } }));
  const hubImage = await seedImage(basicUpstream.url, 'acme/app', 'v1', { authorization: `Basic ${Buffer.from(`ci:${secrets.hub}`).toString('base64')}` });
  const ghcrImage = await seedImage(tokenUpstream.url, 'acme/app', 'v1', { authorization: issuer.pushAuthorization('acme/app') });
  const deadPort = await freePort();

  const dir = await tempDir(t, 'regcache-proxy-canary-');
  const dockerConfig = join(dir, 'docker-config');
  await mkdir(dockerConfig);
  // gcr.io's credentials come from a docker config.json, as `docker login` writes it.
  await writeFile(join(dockerConfig, 'config.json'), JSON.stringify({ auths: { 'gcr.io': { auth: Buffer.from(`ci:${secrets.gcr}`).toString('base64') } } }));
  const statsFile = join(dir, 'stats.json');
  const { cacheUrl, child } = await startCli(t, dir, [
    '--log-level', 'debug',
    '--tag-ttl', '0s',
    '--stats-file', statsFile,
    '--upstream', `docker.io=${basicUpstream.url}`,
    '--upstream', `ghcr.io=${tokenUpstream.url}`,
    '--upstream', `quay.io=${tokenUpstream.url}`,
    '--upstream', `gcr.io=http://127.0.0.1:${deadPort}`,
    '--upstream-auth', `docker.io=ci:${secrets.hub}`,
    '--upstream-auth', `ghcr.io=robot:${secrets.ghcr}`,
    '--upstream-auth', `quay.io=robot:${secrets.quay}`,
  ], { ...process.env, DOCKER_CONFIG: dockerConfig, REGCACHE_UPSTREAM_AUTH: '' });

  // Successful pulls with credentials, twice (the second revalidates with the cached auth).
  for (let i = 0; i < 2; i++) {
    assert.equal((await pullImage({ base: cacheUrl, name: 'acme/app' }, 'v1')).digest, hubImage.digest);
    assert.equal((await pullImage({ base: cacheUrl, name: 'ghcr.io/acme/app' }, 'v1')).digest, ghcrImage.digest);
  }
  assert.equal(issuer.requests().filter((r) => r.status === 200 && r.account === 'robot').length, 1);
  // Failures with credentials involved: refused token, dead upstream, unknown things.
  const answers = [
    await transcript('GET', `${cacheUrl}/v2/quay.io/acme/app/manifests/v1`),
    await transcript('GET', `${cacheUrl}/v2/gcr.io/acme/app/manifests/v1`),
    await transcript('GET', `${cacheUrl}/v2/gcr.io/acme/app/blobs/sha256:${'1'.repeat(64)}`),
    await transcript('GET', `${cacheUrl}/v2/acme/app/manifests/nope`),
    await transcript('GET', `${cacheUrl}/v2/acme/missing/manifests/v1`),
    await transcript('GET', `${cacheUrl}/v2/ghcr.io/acme/app/blobs/sha256:${'0'.repeat(64)}`),
    await transcript('HEAD', `${cacheUrl}/v2/quay.io/acme/app/manifests/v1`),
  ];
  assert.deepEqual(answers.map((a) => a.status), [403, 503, 503, 404, 404, 404, 403], answers.map((a) => a.text).join('\n'));
  const stats = await getText(`${cacheUrl}/_regcache/stats`);
  const metrics = await getText(`${cacheUrl}/metrics`);
  assert.equal(stats.status, 200);
  assert.equal(metrics.status, 200);
  const exit = await child.stop(10_000);
  assert.equal(exit.code, 0, child.log());
  const statsFromFile = await readFile(statsFile, 'utf8');
  const log = await readFile(child.logFile, 'utf8');
  assert.match(log, /"level":40.*upstream gcr\.io unavailable/, 'the outage was logged as a warning (so the log had the chance to leak)');
  assert.match(log, /"level":20.*"msg":"request failed"/, 'the failures were logged with their causes at debug (so the log had the chance to leak)');
  assert.match(log, /"level":30.*"status":403.*"msg":"request"/, 'the refusals are in the request log (so the log had the chance to leak)');
  assert.match(log, /"level":20|"level":30/, 'debug/info lines were written');

  const basic = (user: string, password: string) => Buffer.from(`${user}:${password}`).toString('base64');
  const needles: Array<[string, string]> = [
    ...Object.entries(secrets).map(([k, v]) => [`password of ${k}`, v] as [string, string]),
    ['basic header of docker.io', basic('ci', secrets.hub)],
    ['basic header of ghcr.io', basic('robot', secrets.ghcr)],
    ['basic header of quay.io', basic('robot', secrets.quay)],
    ['basic header of gcr.io', basic('ci', secrets.gcr)],
    ...issuer.issued().map((tok, i) => [`bearer token ${i}`, tok.split('.')[2]!] as [string, string]),
  ];
  assert.ok(issuer.issued().length >= 1);
  const haystacks: Array<[string, string]> = [
    ['stats JSON', stats.text],
    ['/metrics', metrics.text],
    ['stats file', statsFromFile],
    ['server log', log],
    ...answers.map((a, i) => [`error answer ${i}`, a.text] as [string, string]),
  ];
  for (const [where, text] of haystacks) {
    for (const [what, needle] of needles) assert.ok(!text.includes(needle), `${what} appears in the ${where}`);
  }
});

/** One sample line of the Prometheus text format: name, optional labels, value. */
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (-?(?:\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|NaN|[+-]Inf)$/;

function parsePrometheus(text: string): Map<string, number> {
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  const types = new Map<string, string>();
  const series = new Map<string, number>();
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
      assert.ok(m, `comment line: ${line}`);
      if (m[1] === 'TYPE') {
        assert.match(m[3]!, /^(counter|gauge|histogram|summary|untyped)$/);
        assert.ok(!types.has(m[2]!), `one TYPE per metric: ${m[2]}`);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    const m = SAMPLE.exec(line);
    assert.ok(m, `sample line is name{labels} value: ${JSON.stringify(line)}`);
    assert.ok(types.has(m[1]!), `TYPE declared before ${m[1]}`);
    const key = `${m[1]}{${m[2] ?? ''}}`;
    assert.ok(!series.has(key), `duplicate series ${key}`);
    series.set(key, Number(m[3]));
  }
  return series;
}

test('Prometheus text at /metrics parses line by line and agrees with the JSON', { skip }, async (t) => {
  const issuer = cleanup(t, await startTokenIssuer());
  const upstream = cleanup(t, await startDistribution({ token: issuer.distribution }));
  const gate = cleanup(t, await startGate(upstream.url));
  gate.responseHeaders = { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '76;w=21600' };
  const ghcr = cleanup(t, await startDistribution());
  await seedImage(upstream.url, 'library/alpine', '3', { authorization: issuer.pushAuthorization('library/alpine') });
  await seedImage(ghcr.url, 'owner/"quoted"-no', 'v1').catch(() => undefined); // invalid name: distribution refuses it
  await seedImage(ghcr.url, 'owner/img', 'v1');
  const cache = await startCache(t, { upstreams: [`docker.io=${gate.url}`, `ghcr.io=${ghcr.url}`], tagTtlMs: 0 });
  await pullImage({ base: cache.cacheUrl, name: 'alpine' }, '3');
  await pullImage({ base: cache.cacheUrl, name: 'alpine' }, '3');
  await pullImage({ base: cache.cacheUrl, name: 'ghcr.io/owner/img' }, 'v1');
  await request(`${cache.cacheUrl}/v2/alpine/manifests/missing`).then((r) => r.body.dump());

  const res = await getText(`${cache.cacheUrl}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.contentType, /^text\/plain; version=0\.0\.4/);
  const series = parsePrometheus(res.text);
  const json = await getJson<StatsSnapshot>(`${cache.cacheUrl}/_regcache/stats`);
  const hub = json.upstreams['docker.io']!;
  assert.equal(series.get('regcache_upstream_counted_manifest_gets_total{upstream="docker.io"}'), hub.countedManifestGets);
  assert.equal(hub.countedManifestGets, 1);
  assert.equal(series.get('regcache_upstream_manifest_gets_avoided_total{upstream="docker.io"}'), hub.manifestGetsAvoided);
  assert.equal(series.get('regcache_upstream_ratelimit_remaining{upstream="docker.io"}'), 76);
  assert.deepEqual(hub.rateLimit && { limit: hub.rateLimit.limit, remaining: hub.rateLimit.remaining }, { limit: '100;w=21600', remaining: '76;w=21600' });
  assert.equal(series.get('regcache_blob_requests_total{repository="docker.io/library/alpine",source="upstream"}'), json.repositories['docker.io/library/alpine']!.blobMisses);
  assert.equal(series.get('regcache_manifest_requests_total{repository="ghcr.io/owner/img",source="upstream"}'), 1);
  assert.ok([...series.keys()].some((k) => k.startsWith('regcache_upstream_requests_total{upstream="docker.io (token)"')), [...series.keys()].join('\n'));
  assert.equal(series.get('regcache_requests_total{}'), json.totals.requests - 1, 'the JSON request itself came after /metrics');
});

test('the stats file is kept current while running and final on close, with counters that agree with the upstream access log', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution());
  const image = await seedImage(upstream.url, 'library/app', 'v1', { layers: 2 });
  const dir = await tempDir(t, 'regcache-proxy-statsfile-');
  const statsFile = join(dir, 'stats.json');
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], statsFile, tagTtlMs: 0 });
  const window = await logWindow(upstream);
  await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1');
  await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1');
  await request(`${cache.cacheUrl}/v2/app/manifests/missing`).then((r) => r.body.dump());
  // Kept current: a step of the job can read it before the server stops.
  const live = await waitFor(
    async () => {
      const text = await readFile(statsFile, 'utf8').catch(() => '');
      const snap = text ? (JSON.parse(text) as StatsSnapshot) : undefined;
      return snap?.repositories['docker.io/library/app']?.blobHits === image.blobs.length ? snap : undefined;
    },
    { what: 'the stats file to show both pulls while the server runs', timeoutMs: 10_000 },
  );
  assert.equal(live.totals.blobMisses, image.blobs.length);
  await cache.close();

  const s = JSON.parse(await readFile(statsFile, 'utf8')) as StatsSnapshot;
  const entries = await window.entries();
  const byMethodStatus: Record<string, number> = {};
  for (const e of entries) byMethodStatus[`${e.method} ${e.status}`] = (byMethodStatus[`${e.method} ${e.status}`] ?? 0) + 1;
  assert.deepEqual(s.upstreams['docker.io']!.requests, byMethodStatus, 'upstream requests by method and status, as the upstream logged them');
  assert.equal(s.upstreams['docker.io']!.countedManifestGets, 1, 'v1 once (the 404 of missing is not a counted pull)');
  const repo = s.repositories['docker.io/library/app']!;
  assert.deepEqual([repo.manifestMisses, repo.manifestHits, repo.manifestRevalidated], [1, 1, 1]);
  assert.deepEqual([repo.blobMisses, repo.blobHits], [image.blobs.length, image.blobs.length]);
  const size = image.blobs.reduce((n, b) => n + b.size, 0);
  assert.equal(repo.bytesFetched, image.manifest.byteLength + size, 'the manifest and the blobs, once');
  assert.ok(repo.bytesServed >= 2 * size, `bytesServed ${repo.bytesServed}`);
  assert.deepEqual(repo.references, ['v1']);
  assert.equal(s.totals.blobMisses, image.blobs.length);
  assert.ok(s.takenAtMs >= s.startedAtMs);
});
