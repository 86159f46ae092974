// Pure parts of persistence: pack keys, index merging, grouping of new blobs, save policy.
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { emptyIndex, groupNewBlobs, indexKey, indexPrefix, mergeIndex, packKey, shouldSave } from '../../src/persist/index.js';
import { INDEX_FILE, INDEX_PATH, PACK_PATH } from '../../src/persist/keys.js';

const d = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

test('a pack key depends on the set of digests, not their order', () => {
  assert.equal(packKey('rc', [d(1), d(2)]), packKey('rc', [d(2), d(1)]));
  assert.notEqual(packKey('rc', [d(1), d(2)]), packKey('rc', [d(1), d(3)]));
  assert.match(packKey('rc', [d(1)]), /^rc-pack-[0-9a-f]{40}$/);
});

test('a pack key is stable across versions: the first 40 hex of the sha256 of the sorted digests, one per line', () => {
  // Packs saved by earlier runs are found by this key: changing how it is made loses them all.
  const expected = `rc-pack-${createHash('sha256').update(`${d(1)}\n${d(2)}`).digest('hex').slice(0, 40)}`;
  assert.equal(packKey('rc', [d(2), d(1)]), expected);
});

test('the path strings of the entries are fixed: an entry\'s version derives from them, so changing one loses every saved entry', () => {
  assert.deepEqual([PACK_PATH, INDEX_PATH, INDEX_FILE], ['regcache-pack', 'regcache-index', 'index.json']);
});

test('merging goes on from the smallest groups as they are after each merge, and a merged group\'s digests are sorted', () => {
  const sizes = new Map<string, number>([[d(2), 100], [d(1), 200], [d(3), 250], [d(4), 260], [d(5), 1000]]);
  const groups = groupNewBlobs({ a: [d(1)], b: [d(2)], c: [d(3)], e: [d(4)], f: [d(5)] }, new Set(), sizes, 3);
  // 100 + 200 = 300; then the two smallest are 250 and 260 (not the new 300).
  assert.deepEqual(groups.map((g) => [g.digests, g.size]).sort((x, y) => (x[1] as number) - (y[1] as number)), [
    [[d(1), d(2)], 300],
    [[d(3), d(4)], 510],
    [[d(5)], 1000],
  ]);
});

test('groups first seen at the same time (or never) keep their order: the larger first', () => {
  const sizes = new Map([1, 2, 3].map((n) => [d(n), n * 100]));
  const groups = groupNewBlobs({ a: [d(1)], b: [d(2)], c: [d(3)] }, new Set(), sizes, 8, new Map([[d(1), 5]]));
  assert.deepEqual(groups.map((g) => g.digests), [[d(1)], [d(3)], [d(2)]]);
});

test('a pack key steps over the keys to avoid, the same way every time', () => {
  const base = packKey('rc', [d(1)]);
  const second = packKey('rc', [d(1)], new Set([base]));
  assert.notEqual(second, base);
  assert.match(second, /^rc-pack-[0-9a-f]{40}$/);
  assert.equal(packKey('rc', [d(1)], new Set([base])), second, 'deterministic: legs that avoid the same keys agree');
  const third = packKey('rc', [d(1)], new Set([base, second]));
  assert.ok(third !== base && third !== second, 'steps over every avoided key');
  assert.equal(packKey('rc', [d(1)], new Set(['rc-pack-unrelated'])), base, 'a key not in the way changes nothing');
});

test('an index key outside Actions falls back to the time, attempt 1 and job "job"; a job id is made safe for a key', () => {
  const before = Date.now();
  const m = /^rc-index-(\d+)-1-job-[0-9a-f]{12}$/.exec(indexKey('rc', {}));
  assert.ok(m, indexKey('rc', {}));
  assert.ok(Number(m[1]) >= before && Number(m[1]) <= Date.now());
  assert.match(indexKey('rc', { GITHUB_RUN_ID: '7', GITHUB_RUN_ATTEMPT: '1', GITHUB_JOB: 'build / linux:x64' }), /^rc-index-7-1-build___linux_x64-[0-9a-f]{12}$/);
  assert.match(indexKey('rc', { GITHUB_RUN_ID: '7', GITHUB_JOB: 'a.b_c-D9' }), /^rc-index-7-1-a\.b_c-D9-/);
  const env = { GITHUB_RUN_ID: '7', GITHUB_JOB: 'j' };
  assert.equal(indexKey('rc', env), indexKey('rc', env, ''), 'no matrix is the empty matrix');
  assert.equal(indexKey('rc', env).slice(-12), createHash('sha256').update('').digest('hex').slice(0, 12));
});

test('index keys are unique per run, attempt, job and matrix, under one restore prefix', () => {
  const env = { GITHUB_RUN_ID: '42', GITHUB_RUN_ATTEMPT: '2', GITHUB_JOB: 'build' };
  const a = indexKey('rc', env, '{"os":"a"}');
  const b = indexKey('rc', env, '{"os":"b"}');
  assert.notEqual(a, b);
  assert.ok(a.startsWith(indexPrefix('rc')) && b.startsWith(indexPrefix('rc')));
  assert.match(a, /^rc-index-42-2-build-[0-9a-f]{12}$/);
});

test('merging indexes unions packs, manifests and blobs, and the newer tag wins', () => {
  const a = emptyIndex();
  a.tags['docker.io/library/alpine'] = { '3': d(10), edge: d(11) };
  a.packs['rc-pack-a'] = { digests: [d(1)], size: 1 };
  a.blobs['docker.io/library/alpine'] = [d(1)];
  const b = emptyIndex();
  b.tags['docker.io/library/alpine'] = { '3': d(12) };
  b.packs['rc-pack-b'] = { digests: [d(2)], size: 2 };
  b.blobs['docker.io/library/alpine'] = [d(2), d(1)];
  const m = mergeIndex(a, b);
  assert.deepEqual(m.tags['docker.io/library/alpine'], { '3': d(12), edge: d(11) });
  assert.deepEqual(Object.keys(m.packs).sort(), ['rc-pack-a', 'rc-pack-b']);
  assert.deepEqual(m.blobs['docker.io/library/alpine'], [d(1), d(2)]);
});

test('new blobs are grouped per image, known ones left out, a blob in one group only', () => {
  const sizes = new Map([d(1), d(2), d(3), d(4)].map((x, i) => [x, (i + 1) * 10]));
  const groups = groupNewBlobs({ 'docker.io/a': [d(1), d(2)], 'docker.io/b': [d(2), d(3), d(4)] }, new Set([d(4)]), sizes, 8);
  assert.deepEqual(groups.map((g) => g.digests).sort(), [[d(1), d(2)], [d(3)]]);
});

test('beyond the entry bound, the smallest groups are merged', () => {
  const sizes = new Map([1, 2, 3, 4].map((n) => [d(n), n * 100]));
  sizes.set(d(4), 1000);
  const byRepo = { a: [d(1)], b: [d(2)], c: [d(3)], e: [d(4)] };
  const sets = (groups: Array<{ digests: string[]; size: number }>) => groups.map((g) => `${g.digests.join('+')}=${g.size}`).sort();
  // Four groups of 100, 200, 300 and 1000 bytes into three: the two smallest become one.
  assert.deepEqual(sets(groupNewBlobs(byRepo, new Set(), sizes, 3)), sets([
    { digests: [d(1), d(2)], size: 300 },
    { digests: [d(3)], size: 300 },
    { digests: [d(4)], size: 1000 },
  ]));
  // Into two: then the two smallest of 300, 300 and 1000; the largest stays alone.
  assert.deepEqual(sets(groupNewBlobs(byRepo, new Set(), sizes, 2)), sets([
    { digests: [d(1), d(2), d(3)], size: 600 },
    { digests: [d(4)], size: 1000 },
  ]));
  // Into one (and a bound below one is one): everything.
  for (const bound of [1, 0]) {
    assert.deepEqual(sets(groupNewBlobs(byRepo, new Set(), sizes, bound)), sets([{ digests: [d(1), d(2), d(3), d(4)], size: 1600 }]));
  }
});

test('a blob is grouped with the first image in name order (whatever the order the images are listed in), digests sorted, blobs without a size left out, no empty group', () => {
  const sizes = new Map([1, 2, 3].map((n) => [d(n), n * 10]));
  const groups = groupNewBlobs({ 'docker.io/b': [d(3), d(1), d(2)], 'docker.io/a': [d(2), d(9)], 'docker.io/c': [d(1)] }, new Set(), sizes, 8);
  assert.deepEqual(groups.map((g) => [g.digests, g.size]).sort(), [[[d(1), d(3)], 40], [[d(2)], 20]]);
});

test('groups come in the order their first blob entered the store (the order the next prefetch restores them)', () => {
  const sizes = new Map([1, 2, 3, 4, 5].map((n) => [d(n), n * 100]));
  const firstSeen = new Map([[d(1), 300], [d(2), 100], [d(3), 200], [d(4), 400], [d(5), 50]]);
  const groups = groupNewBlobs({ a: [d(1)], b: [d(2), d(4)], c: [d(3)], e: [d(5)] }, new Set(), sizes, 8, firstSeen);
  assert.deepEqual(groups.map((g) => g.digests), [[d(5)], [d(2), d(4)], [d(3)], [d(1)]]);
  // A group none of whose blobs has a first-seen time comes last.
  const unseen = groupNewBlobs({ a: [d(1)], b: [d(2)], z: [d(3)] }, new Set(), sizes, 8, new Map([[d(1), 300], [d(2), 100]]));
  assert.deepEqual(unseen.map((g) => g.digests), [[d(2)], [d(1)], [d(3)]]);
  const unseenFirst = groupNewBlobs({ a: [d(3)], b: [d(2)], z: [d(1)] }, new Set(), sizes, 8, new Map([[d(1), 300], [d(2), 100]]));
  assert.deepEqual(unseenFirst.map((g) => g.digests), [[d(2)], [d(1)], [d(3)]]);
});

test('save: auto saves on pushes to the default branch only', () => {
  const push = { GITHUB_EVENT_NAME: 'push', GITHUB_REF: 'refs/heads/main' };
  assert.equal(shouldSave('auto', push, 'main'), true);
  assert.equal(shouldSave('auto', { ...push, GITHUB_REF: 'refs/heads/feature' }, 'main'), false);
  assert.equal(shouldSave('auto', { GITHUB_EVENT_NAME: 'pull_request', GITHUB_REF: 'refs/pull/1/merge' }, 'main'), false);
  assert.equal(shouldSave('true', { GITHUB_EVENT_NAME: 'pull_request' }, 'main'), true);
  assert.equal(shouldSave('false', push, 'main'), false);
});
