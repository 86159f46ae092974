// @actions/cache calls each in a child process of their own (src/persist/library-call.ts),
// against the service stand-in: two saves at once each archive their own directory (no chdir,
// nothing shared), and a save's outcome is told from the service's answers to the call
// (src/persist/library-outcome.ts): 409 is an existing entry (or one another job is uploading,
// which a lookup tells apart), 429 a rate limit with the Retry-After the service sent, a reset
// connection or 503s a failure the breaker hears. Lookups through the library (GHES's path) tell
// a miss from a failure, and one past its budget has its process killed. The children's printed
// lines go to this process's stdout, which nothing reads.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { type ActionsCacheService, type ActionsCacheServiceOptions, type RunnerEnvOptions, TWIRP_PREFIX, startActionsCacheService } from '../helpers/actions-cache-service.js';
import { tempDir } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';
import { ActionsCache } from '../../src/persist/index.js';
import { PACK_PATH } from '../../src/persist/keys.js';
import { compressionMethod, entryVersion } from '../../src/persist/entry-download.js';
import { keyOf, twirpCalls } from './support.js';

const skip = skipUnless(['zstd']);

/** A service, this process's environment pointing at it (the children inherit it), and a scratch dir. */
async function world(t: TestContext, o: ActionsCacheServiceOptions = {}): Promise<{ svc: ActionsCacheService; dir: string; job: (r?: RunnerEnvOptions) => void }> {
  const dir = (await tempDir('rc-libcall-', t)).path;
  const svc = await startActionsCacheService(o);
  t.after(() => svc.stop());
  const saved = { ...process.env };
  const job = (r: RunnerEnvOptions = {}) => Object.assign(process.env, svc.env({ ...r, runnerTemp: join(dir, 'runner-temp') }));
  job();
  t.after(() => {
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  });
  return { svc, dir, job };
}

/** A staging directory holding PACK_PATH with `files` (name -> bytes). */
async function workspace(dir: string, name: string, files: Record<string, Buffer>): Promise<string> {
  const ws = join(dir, name);
  await mkdir(join(ws, PACK_PATH), { recursive: true });
  for (const [file, data] of Object.entries(files)) await writeFile(join(ws, PACK_PATH, file), data);
  return ws;
}

/** The files of entry `key` as our reader streams them (path inside the entry -> bytes). */
async function entryFiles(cache: ActionsCache, dir: string, key: string): Promise<Record<string, Buffer>> {
  const files: Record<string, Buffer> = {};
  const r = await cache.restoreEntry(PACK_PATH, key, [], async (f) => {
    const chunks: Uint8Array[] = [];
    for await (const c of f.body) chunks.push(c);
    files[f.path] = Buffer.concat(chunks);
  }, { staging: join(dir, 'staging') });
  assert.equal(r.outcome, 'restored', `entry ${key} restores`);
  return files;
}

/** Pids of this process's children running the cache worker (Linux /proc). */
async function workerChildren(): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const [stat, cmdline] = await Promise.all([readFile(`/proc/${name}/stat`, 'utf8').catch(() => ''), readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')]);
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === process.pid && cmdline.includes('cache-worker')) pids.push(Number(name));
  }
  return pids;
}

/** The most calls the service was answering at one moment. */
function mostAtOnce(calls: ReturnType<typeof twirpCalls>): number {
  const edges = calls.flatMap((c) => [{ at: c.at, d: 1 }, { at: c.at + c.ms, d: -1 }]).sort((a, b) => a.at - b.at || a.d - b.d);
  let now = 0;
  let most = 0;
  for (const e of edges) most = Math.max(most, (now += e.d));
  return most;
}

test('two saves at once: each archives its own directory, neither changes this process\'s directory', { skip, timeout: 120_000 }, async (t) => {
  const { svc, dir } = await world(t);
  const a = { 'sha256-aa': randomBytes(48 * 1024), 'only-in-a': randomBytes(1024) };
  const b = { 'sha256-bb': randomBytes(32 * 1024) };
  const [wsA, wsB] = [await workspace(dir, 'a', a), await workspace(dir, 'b', b)];
  // Slow reservations: both saves are in the service at the same moment (one at a time, the
  // second would reserve only after the first had finished).
  svc.setLatency(1_500, ['CreateCacheEntry']);
  const cache = new ActionsCache();
  const cwd = process.cwd();

  const results = await Promise.all([cache.save(wsA, PACK_PATH, 'pack-a'), cache.save(wsB, PACK_PATH, 'pack-b')]);

  assert.deepEqual(results, [{ outcome: 'saved' }, { outcome: 'saved' }]);
  assert.equal(process.cwd(), cwd);
  assert.equal(process.env.GITHUB_WORKSPACE, undefined, 'this process\'s environment names no workspace');
  const creates = twirpCalls(svc.records().requests, 'CreateCacheEntry');
  assert.deepEqual(creates.map(keyOf).sort(), ['pack-a', 'pack-b']);
  assert.equal(mostAtOnce(creates), 2, 'both reservations were being answered at once');
  svc.setLatency(0);
  const named = (files: Record<string, Buffer>) => Object.fromEntries(Object.entries(files).map(([n, d]) => [`${PACK_PATH}/${n}`, d]));
  assert.deepEqual(await entryFiles(cache, dir, 'pack-a'), named(a), 'pack-a holds a\'s directory, and only it');
  assert.deepEqual(await entryFiles(cache, dir, 'pack-b'), named(b), 'pack-b holds b\'s directory, and only it');
});

test('a save\'s outcome from the service\'s answers: 409 exists or contended, 429 rate-limited with its Retry-After, 200 declined; no call when the cache mode forbids writes', { skip, timeout: 120_000 }, async (t) => {
  const { svc, dir, job } = await world(t, { createsPerMinute: 3 });
  const cache = new ActionsCache();
  const ws = await workspace(dir, 'ws', { 'sha256-cc': randomBytes(8 * 1024) });
  const statuses = (key: string) => twirpCalls(svc.records().requests, 'CreateCacheEntry').filter((r) => keyOf(r) === key).map((r) => r.status);

  assert.deepEqual(await cache.save(ws, PACK_PATH, 'taken'), { outcome: 'saved' });
  assert.deepEqual(await cache.save(ws, PACK_PATH, 'taken'), { outcome: 'exists' }, 'the key is taken, and a lookup finds the entry');
  assert.deepEqual(statuses('taken'), [200, 409]);

  // Another job reserved this key and is still uploading: 409 too, but no entry to find yet.
  const version = entryVersion(PACK_PATH, await compressionMethod());
  const reserved = await fetch(new URL(`${TWIRP_PREFIX}CreateCacheEntry`, svc.url), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${svc.token}` },
    body: JSON.stringify({ key: 'uploading', version }),
  });
  assert.equal(reserved.status, 200);
  assert.deepEqual(await cache.save(ws, PACK_PATH, 'uploading'), { outcome: 'refused' }, 'contended: refused without a rate limit');
  assert.deepEqual(statuses('uploading'), [200, 409]);

  // The third creation of the minute fills the window: the next is refused for the rate limit.
  assert.deepEqual(await cache.save(ws, PACK_PATH, 'third'), { outcome: 'saved' });
  const limited = await cache.save(ws, PACK_PATH, 'one-too-many');
  const [answer] = twirpCalls(svc.records().requests, 'CreateCacheEntry').filter((r) => keyOf(r) === 'one-too-many');
  assert.equal(answer?.status, 429);
  assert.ok(answer.retryAfter !== undefined && answer.retryAfter > 0);
  assert.deepEqual(limited, { outcome: 'refused', rateLimited: true, retryAfterMs: answer.retryAfter * 1000 }, 'the Retry-After the service sent');
  assert.equal(cache.breaker.state, 'closed', 'a service that answers is no failing service');

  // A read-only token: the service answers 200 {ok: false, "cache write denied"}; the body is
  // not read (the library discards it): taken as a refused reservation, told by a lookup.
  job({ readOnly: true });
  assert.deepEqual(await cache.save(ws, PACK_PATH, 'denied'), { outcome: 'refused' });
  assert.deepEqual(statuses('denied'), [200]);
  assert.equal(svc.records().entries.filter((e) => e.key === 'denied').length, 0);

  // A runner whose cache mode forbids writes: the service is not asked, the breaker not told.
  job({ cacheMode: 'read' });
  assert.deepEqual(await cache.save(ws, PACK_PATH, 'read-only-mode'), { outcome: 'failed' });
  assert.deepEqual(statuses('read-only-mode'), []);
  assert.equal(cache.breaker.state, 'closed');
});

test('a save against a failing service: a reset connection is one failure, 503s (retried) open the breaker', { skip, timeout: 120_000 }, async (t) => {
  const { svc, dir } = await world(t);
  const cache = new ActionsCache();
  const ws = await workspace(dir, 'ws', { 'sha256-dd': randomBytes(8 * 1024) });

  svc.setDown('reset');
  assert.deepEqual(await cache.save(ws, PACK_PATH, 'reset'), { outcome: 'failed' });
  assert.equal(cache.breaker.state, 'closed', 'one failure counts, the breaker stays closed');
  assert.ok(cache.breaker.allow());

  svc.setDown('unavailable');
  assert.deepEqual(await cache.save(ws, PACK_PATH, 'unavailable'), { outcome: 'failed' });
  const answers = twirpCalls(svc.records().requests, 'CreateCacheEntry').filter((r) => keyOf(r) === 'unavailable');
  assert.ok(answers.length > 1 && answers.every((r) => r.status === 503), `the library retried the 503s: ${answers.map((r) => r.status).join(', ')}`);
  assert.equal(cache.breaker.state, 'open', 'a retried failure opens the breaker at once');
  svc.setDown(false);
  assert.deepEqual(await cache.save(ws, PACK_PATH, 'after'), { outcome: 'failed' }, 'no call while the breaker is open');
  assert.equal(twirpCalls(svc.records().requests, 'CreateCacheEntry').filter((r) => keyOf(r) === 'after').length, 0);
});

test('lookups through the library (as on GHES): a miss the service answered, a reset, and a lookup past its budget killed', { skip, timeout: 120_000 }, async (t) => {
  const { svc, dir } = await world(t);
  const budgetMs = 3_000;
  const cache = new ActionsCache({ throughLibrary: true, lookupBudgetMs: budgetMs });
  const ws = await workspace(dir, 'ws', { 'sha256-ee': randomBytes(8 * 1024) });
  assert.deepEqual(await cache.save(ws, PACK_PATH, 'there'), { outcome: 'saved' });

  assert.deepEqual(await cache.lookup(PACK_PATH, 'there'), { outcome: 'restored', key: 'there' });
  assert.deepEqual(await cache.lookup(PACK_PATH, 'not-there'), { outcome: 'missing' });
  assert.equal(cache.breaker.state, 'closed');

  svc.setDown('reset');
  assert.deepEqual(await cache.lookup(PACK_PATH, 'there'), { outcome: 'unavailable' }, 'no answer: unavailable, not missing');
  assert.equal(cache.breaker.state, 'closed', 'one failure counts, the breaker stays closed');

  // The service answers after the budget: the call's process is killed, the breaker opens.
  svc.setDown(false);
  svc.setLatency(20_000, ['GetCacheEntryDownloadURL']);
  const t0 = Date.now();
  assert.deepEqual(await cache.lookup(PACK_PATH, 'there'), { outcome: 'unavailable' });
  const ms = Date.now() - t0;
  assert.ok(ms >= budgetMs && ms < budgetMs + 5_000, `${ms} ms: the budget, not the service's answer`);
  assert.equal(cache.breaker.state, 'open');
  assert.deepEqual(await workerChildren(), [], 'no worker left running');
});
