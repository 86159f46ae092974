// Pure parts of persistence: pack keys, index merging, grouping of new blobs, save policy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { emptyIndex, groupNewBlobs, indexKey, indexPrefix, mergeIndex, packKey, shouldSave } from '../../src/persist/index.js';

const d = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

test('a pack key depends on the set of digests, not their order', () => {
  assert.equal(packKey('rc', [d(1), d(2)]), packKey('rc', [d(2), d(1)]));
  assert.notEqual(packKey('rc', [d(1), d(2)]), packKey('rc', [d(1), d(3)]));
  assert.match(packKey('rc', [d(1)]), /^rc-pack-[0-9a-f]{40}$/);
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

test('groups come in the order their first blob entered the store (the order the next prefetch restores them)', () => {
  const sizes = new Map([1, 2, 3, 4, 5].map((n) => [d(n), n * 100]));
  const firstSeen = new Map([[d(1), 300], [d(2), 100], [d(3), 200], [d(4), 400], [d(5), 50]]);
  const groups = groupNewBlobs({ a: [d(1)], b: [d(2), d(4)], c: [d(3)], e: [d(5)] }, new Set(), sizes, 8, firstSeen);
  assert.deepEqual(groups.map((g) => g.digests), [[d(5)], [d(2), d(4)], [d(3)], [d(1)]]);
});

test('save: auto saves on pushes to the default branch only', () => {
  const push = { GITHUB_EVENT_NAME: 'push', GITHUB_REF: 'refs/heads/main' };
  assert.equal(shouldSave('auto', push, 'main'), true);
  assert.equal(shouldSave('auto', { ...push, GITHUB_REF: 'refs/heads/feature' }, 'main'), false);
  assert.equal(shouldSave('auto', { GITHUB_EVENT_NAME: 'pull_request', GITHUB_REF: 'refs/pull/1/merge' }, 'main'), false);
  assert.equal(shouldSave('true', { GITHUB_EVENT_NAME: 'pull_request' }, 'main'), true);
  assert.equal(shouldSave('false', push, 'main'), false);
});
