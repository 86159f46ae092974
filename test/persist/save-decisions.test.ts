// The save's decisions on a real store with a scripted Actions cache (what the service answers
// is chosen per test, waits are recorded instead of slept): the cases the end-to-end scenarios
// cannot stage reliably (a pack another job is uploading at the same moment) or would make
// slow, and the index's "nothing new, no upload" rule whatever the order of the restored JSON.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { digestOf } from '../../src/oci/index.js';
import { openStorage, type Storage } from '../../src/storage/index.js';
import { ActionsCache, exportIndex, packKey, saveNewContent, type PersistIndex, type SaveResult } from '../../src/persist/index.js';
import { readInputs } from '../../src/action/inputs.js';
import { actionInputDefaults, evaluatedDefaults } from '../helpers/actions-runner.js';
import { tempDir } from '../helpers/proc.js';

/** A store whose cache holds `images` repositories of `layers` layers each (linked, as pulls leave them). */
async function store(t: TestContext, images: number, layers: number): Promise<{ storage: Storage; digests: Record<string, string[]> }> {
  const dir = await tempDir('rc-persist-unit-', t);
  const storage = await openStorage(join(dir.path, 'storage'));
  t.after(() => storage.close());
  const digests: Record<string, string[]> = {};
  for (let i = 0; i < images; i++) {
    const repo = `docker.io/library/img-${i}`;
    digests[repo] = [];
    for (let j = 0; j < layers; j++) {
      const data = randomBytes(1024 * (j + 1));
      const d = digestOf(data);
      await storage.blobs.putBytes(d, data, { repositories: storage.cacheRepositories, name: repo });
      digests[repo].push(d.value);
    }
  }
  return { storage, digests };
}

interface Call {
  op: 'exists' | 'save';
  key: string;
}

/** An ActionsCache whose answers the test scripts. */
function scripted(o: { exists?: (key: string, n: number) => boolean | undefined; save?: (key: string, n: number) => SaveResult }) {
  const calls: Call[] = [];
  const count = (op: Call['op'], key: string) => calls.filter((c) => c.op === op && c.key === key).length;
  const cache = {
    async exists(key: string) {
      calls.push({ op: 'exists', key });
      return o.exists ? o.exists(key, count('exists', key)) : false;
    },
    async save(_ws: string, _path: string, key: string) {
      calls.push({ op: 'save', key });
      return o.save ? o.save(key, count('save', key)) : { outcome: 'saved' };
    },
  } as unknown as ActionsCache;
  return { cache, calls };
}

const base = { prefix: 'rc', env: { GITHUB_RUN_ID: '7', GITHUB_RUN_ATTEMPT: '1', GITHUB_JOB: 'build' }, matrix: 'null', maxSaveBytes: 1 << 30, maxPacks: 8, budgetMs: 120_000 };

/** A shuffled deep copy (object keys in reverse order): the same index, other JSON. */
function reordered<T>(v: T): T {
  if (Array.isArray(v)) return v.map(reordered) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reordered(x)])) as T;
  return v;
}

test('nothing new: no pack and no index uploaded, whatever the order of the restored JSON', async (t) => {
  const { storage, digests } = await store(t, 3, 2);
  const restored: PersistIndex = await exportIndex(storage);
  for (const ds of Object.values(digests)) restored.packs[packKey('rc', ds)] = { digests: ds, size: 1 };
  const { cache, calls } = scripted({});
  const report = await saveNewContent({ ...base, storage, cache, restored: reordered(restored) });
  assert.deepEqual(calls, [], 'no lookup, no upload');
  assert.equal(report.index, 'unchanged');
});

test('a pack another job is uploading right now (refused, not rate-limited) is looked up again and indexed', async (t) => {
  const { storage, digests } = await store(t, 1, 3);
  const key = packKey('rc', Object.values(digests)[0]!);
  const waits: number[] = [];
  const { cache, calls } = scripted({
    exists: (k, n) => k === key && n >= 2, // not there before the save; finalized by the first lookup after the backoff
    save: (k) => (k === key ? { outcome: 'refused' } : { outcome: 'saved' }),
  });
  const report = await saveNewContent({ ...base, storage, cache, restored: { version: 1, tags: {}, manifests: {}, blobs: {}, inline: {}, packs: {} }, sleep: async (ms) => void waits.push(ms) });
  assert.equal(report.packsExisting, 1);
  assert.equal(report.packsRefused, 0);
  assert.deepEqual(waits, [2000], 'one backoff before the lookup that found it');
  assert.equal(calls.filter((c) => c.op === 'save' && c.key === key).length, 1, 'never uploaded twice');
  assert.equal(report.index, 'saved');
});

test('a rate limit: no further pack is tried, the index waits for the window the service names', async (t) => {
  const { storage } = await store(t, 4, 1);
  const waits: number[] = [];
  let packsSaved = 0;
  const { cache, calls } = scripted({
    save: (k, n) => {
      if (k.includes('-index-')) return n === 1 ? { outcome: 'refused', rateLimited: true, retryAfterMs: 30_000 } : { outcome: 'saved' };
      if (packsSaved < 2) {
        packsSaved++;
        return { outcome: 'saved' };
      }
      return { outcome: 'refused', rateLimited: true, retryAfterMs: 40_000 };
    },
  });
  const report = await saveNewContent({ ...base, storage, cache, restored: { version: 1, tags: {}, manifests: {}, blobs: {}, inline: {}, packs: {} }, sleep: async (ms) => void waits.push(ms) });
  assert.equal(report.packsSaved, 2);
  assert.equal(report.packsRefused, 2);
  assert.equal(report.packsRateLimited, 2);
  assert.equal(calls.filter((c) => c.op === 'save' && !c.key.includes('-index-')).length, 3, 'two saved, one refused, the fourth not tried');
  assert.deepEqual(waits, [31_000], 'the index waited for the Retry-After the service sent (plus a second)');
  assert.equal(report.index, 'saved');
});

test('a rate limit beyond the budget: the index is reported refused, not "unchanged"', async (t) => {
  const { storage } = await store(t, 1, 1);
  const { cache } = scripted({ save: () => ({ outcome: 'refused', rateLimited: true, retryAfterMs: 60_000 }) });
  const report = await saveNewContent({ ...base, budgetMs: 10_000, storage, cache, restored: { version: 1, tags: {}, manifests: {}, blobs: {}, inline: {}, packs: {} }, sleep: async () => {} });
  assert.equal(report.index, 'refused');
  assert.equal(report.indexKey, undefined);
});

test('a missing or broken pack is dropped from the index and its blobs packed again under another key', async (t) => {
  const { storage, digests } = await store(t, 2, 2);
  const restored: PersistIndex = await exportIndex(storage);
  const [a, b] = Object.values(digests) as [string[], string[]];
  const [keyA, keyB] = [packKey('rc', a), packKey('rc', b)];
  restored.packs[keyA] = { digests: a, size: 1 };
  restored.packs[keyB] = { digests: b, size: 1 };
  const { cache, calls } = scripted({});
  const report = await saveNewContent({ ...base, storage, cache, restored, unusable: [keyA] });
  const uploads = calls.filter((c) => c.op === 'save').map((c) => c.key);
  const again = packKey('rc', a, new Set([keyA]));
  assert.notEqual(again, keyA);
  assert.deepEqual(uploads.filter((k) => !k.includes('-index-')), [again], "a's blobs under a new key; b's pack untouched");
  assert.equal(packKey('rc', [...a].reverse(), new Set([keyA])), again, 'the new key is deterministic: legs that found the same pack broken agree');
  assert.equal(report.packsDropped, 1);
  assert.equal(report.index, 'saved');
});

test('the matrix input: action.yml defaults it to the matrix context, so legs of one run get distinct index keys', () => {
  const defaults = actionInputDefaults();
  assert.equal(defaults.matrix, '${{ toJSON(matrix) }}');
  const leg = (os: string) => readInputs((n) => evaluatedDefaults(defaults, { os })[n] ?? '').matrix;
  assert.notEqual(leg('a'), leg('b'));
  assert.equal(readInputs((n) => evaluatedDefaults(defaults)[n] ?? '').matrix, 'null', 'a job without a matrix');
});

test('max-save-size bounds what one job uploads; what does not fit is reported, not uploaded', async (t) => {
  const { storage } = await store(t, 3, 1); // layers of 1 KiB each
  const { cache, calls } = scripted({});
  const report = await saveNewContent({ ...base, maxSaveBytes: 2048, storage, cache, restored: { version: 1, tags: {}, manifests: {}, blobs: {}, inline: {}, packs: {} } });
  assert.equal(report.packsSaved, 2);
  assert.equal(report.packsSkippedForSize, 1);
  assert.equal(report.bytesSaved, 2048);
  assert.equal(calls.filter((c) => c.op === 'save' && !c.key.includes('-index-')).length, 2);
});
