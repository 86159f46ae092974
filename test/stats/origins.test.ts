// Where content came from, as the Stats class records it: a blob restored from the Actions cache
// stays the Actions cache's however often it is served; a manifest the server fetched is not a
// hit when docker asks for it again by digest, while one on disk from before is; pushes mark
// their content as pushed here; rate-limit headers parse into numbers, and a malformed one into
// nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Stats, parseRateLimit, formatWindow, toPrometheus } from '../../src/stats/index.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;

test('a restored blob is the Actions cache\'s on every serve; one found on disk is the disk\'s', () => {
  const s = new Stats();
  s.blobServed('docker.io/library/a', D('1'), 100, 'persist');
  s.bytesServed('docker.io/library/a', D('1'), 100);
  s.blobServed('docker.io/library/b', D('1'), 100, 'local');
  s.bytesServed('docker.io/library/b', D('1'), 100);
  s.blobServed('docker.io/library/b', D('2'), 50, 'local');
  s.bytesServed('docker.io/library/b', D('2'), 50);
  const snap = s.snapshot();
  assert.deepEqual(snap.repositories['docker.io/library/b']!.bytesServedByOrigin, { upstream: 0, actionsCache: 100, disk: 50, pushed: 0 });
  assert.deepEqual(snap.repositories['docker.io/library/b']!.blobsByOrigin, { upstream: 0, actionsCache: 1, disk: 1, pushed: 0 });
  assert.deepEqual(snap.totals.sizeByOrigin, { upstream: 0, actionsCache: 100, disk: 50, pushed: 0 }, 'a blob two images share counted once in the totals');
  assert.equal(snap.totals.bytesServed, 250, 'but served bytes are what went out');
});

test("the index's manifests are the Actions cache's; a manifest found on disk by digest is a hit; one fetched upstream is a repeat", () => {
  const s = new Stats();
  s.fromActionsCache([D('a')]);
  s.manifestServed('docker.io/library/a', 'v1', D('a'), 'local', 10);
  s.manifestServed('docker.io/library/a', D('a'), D('a'), 'local', 10);
  s.manifestServed('docker.io/library/b', D('b'), D('b'), 'local', 20);
  s.fromUpstream(D('c'));
  s.manifestServed('docker.io/library/c', 'v1', D('c'), 'upstream', 30);
  s.manifestServed('docker.io/library/c', D('c'), D('c'), 'local', 30);
  const r = s.snapshot().repositories;
  assert.deepEqual([r['docker.io/library/a']!.manifestHits, r['docker.io/library/a']!.manifestRepeats], [2, 0]);
  assert.equal(r['docker.io/library/a']!.sizeByOrigin.actionsCache, 10);
  assert.deepEqual([r['docker.io/library/b']!.manifestHits, r['docker.io/library/b']!.sizeByOrigin.disk], [1, 20]);
  assert.deepEqual([r['docker.io/library/c']!.manifestMisses, r['docker.io/library/c']!.manifestHits, r['docker.io/library/c']!.manifestRepeats], [1, 0, 1]);
  assert.match(toPrometheus(s.snapshot()), /^regcache_manifest_requests_total\{repository="docker.io\/library\/c",source="repeat"\} 1$/m);
});

test('pushes: tags and digests per repository, bytes, and their content marked as pushed here', () => {
  const s = new Stats();
  s.blobPushed('team/app', D('3'), 1000);
  s.manifestPushed('team/app', 'v1', D('4'), 200);
  s.manifestPushed('team/app', D('4'), D('4'), 200);
  const p = s.snapshot().pushes['team/app']!;
  assert.deepEqual([p.tags, p.digests, p.manifests, p.blobs, p.bytes], [['v1'], [D('4')], 2, 1, 1400]);
  assert.equal(s.originOf(D('3')), 'pushed');
  assert.equal(s.originOf(D('5')), 'disk');
});

test('rate-limit headers: Docker Hub\'s form parsed, a missing window or limit tolerated, garbage refused', () => {
  assert.deepEqual(parseRateLimit('100;w=21600', '93;w=21600'), { remaining: 93, limit: 100, windowSeconds: 21600 });
  assert.deepEqual(parseRateLimit(undefined, '7'), { remaining: 7, limit: undefined, windowSeconds: undefined });
  assert.equal(parseRateLimit('100', 'lots'), undefined);
  assert.deepEqual([formatWindow(21600), formatWindow(3600), formatWindow(5400), formatWindow(60), formatWindow(45)], ['6 h', '1 h', '1.5 h', '1 min', '45 s']);
  const s = new Stats();
  s.rateLimit('docker.io', '100;w=21600', '93;w=21600');
  const metrics = toPrometheus(s.snapshot());
  assert.match(metrics, /^regcache_upstream_ratelimit_remaining\{upstream="docker.io"\} 93$/m);
  assert.match(metrics, /^regcache_upstream_ratelimit_limit\{upstream="docker.io"\} 100$/m);
});
