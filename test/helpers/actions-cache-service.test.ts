// Tests of the Actions cache service stand-in: the real @actions/cache client, run in a child
// process with the environment the runner gives a job, saves and restores through it (bytes in
// azurite), and the service rules hold (immutable keys, version matching, newest-first prefix
// restore, branch scopes, 429 beyond the creation rate, LRU eviction past the quota, JSON errors).
// The finer matching and scope rules are checked with direct Twirp calls.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type ActionsCacheService,
  type BlobRequestRecord,
  type RunnerEnvOptions,
  startActionsCacheService,
  TWIRP_PREFIX,
  type TwirpRequestRecord,
  tokenScopes,
  decodeJwtPayload,
  routeAzureBlobHostsToLoopback,
} from './actions-cache-service.js';
import { pidAlive, tempDir } from './proc.js';

const CACHE_LIB_URL = import.meta.resolve('@actions/cache');

/** The client step: one saveCache or restoreCache call, its result on a marker line. */
const CLIENT = `
const cache = await import(process.env.REGCACHE_TEST_CACHE_LIB);
const op = JSON.parse(process.argv[1]);
const t0 = Date.now();
let result = null, error;
try {
  if (op.op === 'save') result = await cache.saveCache(op.paths, op.key);
  else result = (await cache.restoreCache(op.paths, op.key, op.restoreKeys, { lookupOnly: !!op.lookupOnly })) ?? null;
} catch (e) {
  error = { name: e.name, message: e.message };
}
process.stdout.write('\\n@@RESULT ' + JSON.stringify({ result, error, ms: Date.now() - t0 }) + '\\n');
process.exit(0);
`;

interface ClientRun {
  result: string | number | null;
  error?: { name: string; message: string };
  /** Time of the save/restore call itself. */
  ms: number;
  warnings: string[];
  errors: string[];
  /** Plain output lines (core.info), without workflow commands. */
  infos: string[];
}

function unescape(s: string): string {
  return s.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%');
}

type Op =
  | { op: 'save'; paths: string[]; key: string }
  | { op: 'restore'; paths: string[]; key: string; restoreKeys?: string[]; lookupOnly?: boolean };

/** Runs one client call as a job step would: its own process, the runner's environment. */
function client(svc: ActionsCacheService, workspace: string, op: Op, job: RunnerEnvOptions = {}): Promise<ClientRun> {
  const env = { ...svc.processEnv({ ...job, workspace }), REGCACHE_TEST_CACHE_LIB: CACHE_LIB_URL };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CLIENT, JSON.stringify(op)], {
      cwd: workspace,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const marker = out.split('\n').find((l) => l.startsWith('@@RESULT '));
      if (!marker) {
        reject(new Error(`client exited ${code} without a result\n--- stdout ---\n${out}\n--- stderr ---\n${err}`));
        return;
      }
      const run = JSON.parse(marker.slice('@@RESULT '.length)) as ClientRun;
      run.warnings = [];
      run.errors = [];
      run.infos = [];
      for (const line of out.split('\n')) {
        if (line.startsWith('::warning::')) run.warnings.push(unescape(line.slice(11)));
        else if (line.startsWith('::error::')) run.errors.push(unescape(line.slice(9)));
        else if (line.startsWith('::') || line.startsWith('@@RESULT ') || line === '') continue;
        else run.infos.push(line);
      }
      resolve(run);
    });
  });
}

/** A fresh workspace with `files` (relative path -> content) written under it. */
async function workspace(t: { after(fn: () => Promise<void>): void }, files: Record<string, string | Buffer> = {}): Promise<string> {
  const dir = await tempDir('regcache-acs-ws-', t);
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(join(dir.path, rel, '..'), { recursive: true });
    await writeFile(join(dir.path, rel), content);
  }
  return dir.path;
}

/** Files under dir (relative path -> content), skipping the temp dir's owner marker. */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.name === '.owner-pid') continue;
    const full = join(entry.parentPath ?? entry.path, entry.name);
    out[full.slice(dir.length + 1)] = (await readFile(full)).toString('base64');
  }
  return out;
}

/** One Twirp call, as the client makes it (token null: no Authorization header). */
async function twirp(svc: ActionsCacheService, method: string, body: unknown, token: string | null = svc.token, init: RequestInit = {}) {
  const res = await fetch(new URL(`${TWIRP_PREFIX}${method}`, svc.url), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: JSON.parse(text) as Record<string, unknown> };
}

/** Creates, uploads and finalizes an entry through the protocol (no client, no tar). */
async function putEntry(svc: ActionsCacheService, key: string, version: string, token = svc.token, bytes = Buffer.from(key)): Promise<void> {
  const created = await twirp(svc, 'CreateCacheEntry', { key, version }, token);
  assert.equal(created.status, 200, JSON.stringify(created.json));
  assert.equal(created.json.ok, true, JSON.stringify(created.json));
  const put = await fetch(String(created.json.signed_upload_url), {
    method: 'PUT',
    headers: { 'x-ms-blob-type': 'BlockBlob', 'Content-Type': 'application/octet-stream' },
    body: bytes,
  });
  assert.equal(put.status, 201, await put.text());
  const fin = await twirp(svc, 'FinalizeCacheEntryUpload', { key, version, size_bytes: String(bytes.length) }, token);
  assert.equal(fin.json.ok, true, JSON.stringify(fin.json));
}

async function lookup(svc: ActionsCacheService, key: string, restoreKeys: string[], version: string, token = svc.token) {
  const r = await twirp(svc, 'GetCacheEntryDownloadURL', { key, restore_keys: restoreKeys, version }, token);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json.ok ? String(r.json.matched_key) : undefined;
}

function twirpCalls(svc: ActionsCacheService, since = 0): TwirpRequestRecord[] {
  return svc.records().requests.slice(since).filter((r): r is TwirpRequestRecord => r.kind === 'twirp');
}

function blobCalls(svc: ActionsCacheService, since = 0): BlobRequestRecord[] {
  return svc.records().requests.slice(since).filter((r): r is BlobRequestRecord => r.kind === 'blob');
}

const RESERVE_REFUSED = /^Failed to save: Unable to reserve cache with key .+, another job may be creating this cache\.$/;

describe('the real @actions/cache client against the stand-in', () => {
  let svc: ActionsCacheService;
  before(async () => {
    svc = await startActionsCacheService();
  });
  after(async () => {
    const pid = svc?.azurite.pid;
    await svc?.stop();
    if (pid) assert.equal(pidAlive(pid), false, 'azurite stopped');
  });

  test('the environment is the runner\'s: v2 service, results URL with its slash, a JWT with cache scopes', () => {
    const env = svc.env('feature');
    assert.equal(env.ACTIONS_CACHE_SERVICE_V2, 'True');
    assert.match(env.ACTIONS_RESULTS_URL!, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(env.GITHUB_REF, 'refs/heads/feature');
    assert.equal(env.GITHUB_SERVER_URL, 'https://github.com', 'not GHES, or the client falls back to v1');
    const claims = decodeJwtPayload(env.ACTIONS_RUNTIME_TOKEN!);
    assert.equal(typeof claims?.ac, 'string', 'ac is a JSON string, as in the runner\'s token');
    assert.deepEqual(tokenScopes(env.ACTIONS_RUNTIME_TOKEN!), [
      { Scope: 'refs/heads/feature', Permission: 3 },
      { Scope: 'refs/heads/main', Permission: 1 },
    ]);
    assert.deepEqual(tokenScopes(svc.token), [{ Scope: 'refs/heads/main', Permission: 3 }]);
  });

  test('saveCache of a directory, restoreCache into a fresh workspace: same bytes, through azurite', async (t) => {
    const files = { 'data/a.bin': randomBytes(300_000), 'data/sub/b.txt': 'hello\n'.repeat(1000), 'data/empty': '' };
    const ws1 = await workspace(t, files);
    const since = svc.records().requests.length;
    const saved = await client(svc, ws1, { op: 'save', paths: ['data'], key: 'dir-1' });
    assert.equal(saved.error, undefined);
    assert.equal(typeof saved.result, 'number');
    assert.ok((saved.result as number) > 0);
    assert.deepEqual(saved.warnings, []);
    const calls = twirpCalls(svc, since);
    assert.deepEqual(calls.map((c) => `${c.method} ${c.status}`), ['CreateCacheEntry 200', 'FinalizeCacheEntryUpload 200']);
    const create = calls[0]!.request as Record<string, unknown>;
    assert.deepEqual(Object.keys(create).sort(), ['key', 'version']);
    assert.match(String(create.version), /^[0-9a-f]{64}$/);
    const fin = calls[1]!.request as Record<string, unknown>;
    assert.equal(typeof fin.size_bytes, 'string', 'int64 travels as a JSON string');
    assert.deepEqual(calls[1]!.response, { ok: true, entry_id: String(saved.result), message: '' });
    const puts = blobCalls(svc, since);
    assert.deepEqual(puts.map((b) => `${b.op} ${b.status}`), ['PutBlob 201']);
    const entry = svc.records().entries.find((e) => e.key === 'dir-1')!;
    assert.equal(entry.state, 'finalized');
    assert.equal(entry.scope, 'refs/heads/main');
    assert.equal(entry.sizeBytes, Number(fin.size_bytes));
    assert.equal(puts[0]!.bytesIn, entry.sizeBytes);

    const ws2 = await workspace(t);
    const restored = await client(svc, ws2, { op: 'restore', paths: ['data'], key: 'dir-1' });
    assert.equal(restored.result, 'dir-1');
    assert.ok(restored.infos.includes('Cache hit for: dir-1'), restored.infos.join('\n'));
    assert.deepEqual(await tree(ws2), await tree(ws1));
  });

  test('a second saveCache of the same key: -1, the info line, no exception, no warning', async (t) => {
    const ws = await workspace(t, { 'data/x': 'one' });
    assert.ok((await client(svc, ws, { op: 'save', paths: ['data'], key: 'twice' })).result as number > 0);
    await writeFile(join(ws, 'data/x'), 'two');
    const since = svc.records().requests.length;
    const again = await client(svc, ws, { op: 'save', paths: ['data'], key: 'twice' });
    assert.equal(again.result, -1);
    assert.equal(again.error, undefined);
    assert.deepEqual(again.warnings, []);
    assert.ok(again.infos.some((l) => RESERVE_REFUSED.test(l)), again.infos.join('\n'));
    const calls = twirpCalls(svc, since);
    assert.deepEqual(calls.map((c) => [c.method, c.status, c.code]), [['CreateCacheEntry', 409, 'already_exists']]);
    assert.deepEqual(blobCalls(svc, since), [], 'nothing uploaded');
    const ws2 = await workspace(t);
    assert.equal((await client(svc, ws2, { op: 'restore', paths: ['data'], key: 'twice' })).result, 'twice');
    assert.equal(await readFile(join(ws2, 'data/x'), 'utf8'), 'one', 'the entry is immutable');
  });

  test('lookupOnly: the matched key, no download, nothing written', async (t) => {
    const ws = await workspace(t, { 'data/x': 'look' });
    await client(svc, ws, { op: 'save', paths: ['data'], key: 'lookup-1' });
    const fresh = await workspace(t);
    const since = svc.records().requests.length;
    const r = await client(svc, fresh, { op: 'restore', paths: ['data'], key: 'lookup-', restoreKeys: [], lookupOnly: true });
    assert.equal(r.result, 'lookup-1', 'the primary key matches as a prefix too');
    assert.ok(r.infos.includes('Lookup only - skipping download'));
    assert.deepEqual(twirpCalls(svc, since).map((c) => c.method), ['GetCacheEntryDownloadURL']);
    assert.deepEqual(blobCalls(svc, since), []);
    assert.deepEqual(await tree(fresh), {});
  });

  test('a restore key as a prefix picks the newest entry', async (t) => {
    for (const n of [1, 2, 3]) {
      const ws = await workspace(t, { 'data/n': String(n) });
      await client(svc, ws, { op: 'save', paths: ['data'], key: `pfx-${n}` });
    }
    const ws = await workspace(t);
    const r = await client(svc, ws, { op: 'restore', paths: ['data'], key: 'other-key', restoreKeys: ['nothing-', 'pfx-'] });
    assert.equal(r.result, 'pfx-3');
    assert.ok(r.infos.includes('Cache hit for restore-key: pfx-3'));
    assert.equal(await readFile(join(ws, 'data/n'), 'utf8'), '3');
  });

  test('other paths make another version: a miss, without a warning', async (t) => {
    const ws = await workspace(t, { 'data/x': 'v', 'other/x': 'w' });
    await client(svc, ws, { op: 'save', paths: ['data'], key: 'versioned' });
    const r = await client(svc, await workspace(t), { op: 'restore', paths: ['other'], key: 'versioned' });
    assert.equal(r.result, null);
    assert.deepEqual(r.warnings, []);
    const last = twirpCalls(svc).at(-1)!;
    assert.deepEqual(last.response, { ok: false, signed_download_url: '', matched_key: '' });
    const entry = svc.records().entries.find((e) => e.key === 'versioned')!;
    assert.notEqual((last.request as { version: string }).version, entry.version);
  });

  test('a feature branch restores the default branch\'s entry; the default branch does not see the feature\'s', async (t) => {
    const ws = await workspace(t, { 'data/x': 'main' });
    await client(svc, ws, { op: 'save', paths: ['data'], key: 'scoped-main' });
    const wsf = await workspace(t, { 'data/x': 'feature' });
    const savedOnFeature = await client(svc, wsf, { op: 'save', paths: ['data'], key: 'scoped-feature' }, { ref: 'feature' });
    assert.ok((savedOnFeature.result as number) > 0);
    assert.equal(svc.records().entries.find((e) => e.key === 'scoped-feature')?.scope, 'refs/heads/feature');

    const onFeature = await workspace(t);
    assert.equal((await client(svc, onFeature, { op: 'restore', paths: ['data'], key: 'scoped-main' }, { ref: 'feature' })).result, 'scoped-main');
    assert.equal(await readFile(join(onFeature, 'data/x'), 'utf8'), 'main');
    const onMain = await client(svc, await workspace(t), { op: 'restore', paths: ['data'], key: 'scoped-feature' });
    assert.equal(onMain.result, null);
    const onOther = await client(svc, await workspace(t), { op: 'restore', paths: ['data'], key: 'scoped-feature' }, { ref: 'other' });
    assert.equal(onOther.result, null, 'nor does another branch');
  });

  test('a read-only token: saveCache warns "cache write denied" and returns -1', async (t) => {
    const ws = await workspace(t, { 'data/x': 'ro' });
    const r = await client(svc, ws, { op: 'save', paths: ['data'], key: 'read-only' }, { ref: 'refs/pull/9/merge', readOnly: true });
    assert.equal(r.result, -1);
    assert.equal(r.warnings.length, 1, r.warnings.join('\n'));
    assert.match(r.warnings[0]!, /^Failed to save: Unable to reserve cache with key read-only\. More details: cache write denied: /);
  });

  test('a tampered entry: restoreCache fails in tar and returns undefined with a warning', async (t) => {
    const ws = await workspace(t, { 'data/a.bin': randomBytes(200_000) });
    await client(svc, ws, { op: 'save', paths: ['data'], key: 'tampered' });
    const before = svc.records().entries.find((e) => e.key === 'tampered')!;
    const tampered = await svc.tamper('tampered');
    assert.equal(tampered.tampered, true);
    assert.equal(tampered.sizeBytes, before.sizeBytes);
    const r = await client(svc, await workspace(t), { op: 'restore', paths: ['data'], key: 'tampered' });
    assert.equal(r.result, null);
    assert.equal(r.warnings.length, 1, r.warnings.join('\n'));
    assert.match(r.warnings[0]!, /^Failed to restore: .*tar.* failed with exit code/s);
  });

  test('service down: restoreCache returns undefined with a warning at once; saveCache -1', async (t) => {
    const ws = await workspace(t, { 'data/x': 'down' });
    await client(svc, ws, { op: 'save', paths: ['data'], key: 'while-down' });
    svc.setDown(true);
    const since = svc.records().requests.length;
    try {
      const r = await client(svc, await workspace(t), { op: 'restore', paths: ['data'], key: 'while-down' });
      assert.equal(r.result, null);
      assert.equal(r.warnings.length, 1);
      assert.match(r.warnings[0]!, /^Failed to restore: Failed to GetCacheEntryDownloadURL: Unable to make request: ECONNRESET/);
      assert.ok(r.ms < 2_000, `took ${r.ms} ms`);
      const s = await client(svc, ws, { op: 'save', paths: ['data'], key: 'saved-while-down' });
      assert.equal(s.result, -1);
      assert.ok(s.infos.some((l) => RESERVE_REFUSED.test(l)), s.infos.join('\n'));
      assert.ok(s.ms < 2_000, `took ${s.ms} ms`);
      const attempts = twirpCalls(svc, since).map((c) => [c.method, c.outcome]);
      assert.deepEqual(attempts, [['GetCacheEntryDownloadURL', 'reset'], ['CreateCacheEntry', 'reset']], 'one attempt each, no retries');
    } finally {
      svc.setDown(false);
    }
    assert.equal((await client(svc, await workspace(t), { op: 'restore', paths: ['data'], key: 'while-down' })).result, 'while-down');
  });
});

describe('service rules, with direct Twirp calls', () => {
  let svc: ActionsCacheService;
  before(async () => {
    svc = await startActionsCacheService({ defaultBranch: 'trunk' });
  });
  after(() => svc?.stop());

  test('matching: exact key, key as prefix, then each restore key exact then prefix, newest first, same version only', async () => {
    for (const key of ['app-1', 'app-10', 'app-2']) await putEntry(svc, key, 'v1');
    assert.equal(await lookup(svc, 'app-1', [], 'v1'), 'app-1', 'exact beats a newer prefix match');
    assert.equal(await lookup(svc, 'app-', [], 'v1'), 'app-2', 'the key as a prefix: newest');
    assert.equal(await lookup(svc, 'zzz', ['app-1'], 'v1'), 'app-1');
    assert.equal(await lookup(svc, 'zzz', ['nope', 'app'], 'v1'), 'app-2');
    assert.equal(await lookup(svc, 'app-1', [], 'v2'), undefined);
    assert.equal(await lookup(svc, 'ap', ['app-10'], 'v1'), 'app-2', 'the key as a prefix comes before the restore keys');
  });

  test('scopes: the own ref first (whole sequence), then the default branch; PRs see their base; writes go to the own ref', async () => {
    const feature = svc.tokenFor('feature');
    await putEntry(svc, 'app-3', 'v1', feature);
    assert.equal(await lookup(svc, 'app-1', ['app-'], 'v1', feature), 'app-3', "the feature's prefix match wins over the default branch's exact key");
    assert.equal(await lookup(svc, 'app-1', [], 'v1', feature), 'app-1');
    assert.equal(await lookup(svc, 'app-3', [], 'v1'), undefined, 'the default branch does not see the feature');
    const releaseToken = svc.tokenFor('release');
    await putEntry(svc, 'rel-1', 'v1', releaseToken);
    const pr = svc.tokenFor({ ref: 'refs/pull/7/merge', baseRef: 'release' });
    assert.deepEqual(tokenScopes(pr), [
      { Scope: 'refs/pull/7/merge', Permission: 3 },
      { Scope: 'refs/heads/release', Permission: 1 },
      { Scope: 'refs/heads/trunk', Permission: 1 },
    ]);
    assert.equal(await lookup(svc, 'rel-1', [], 'v1', pr), 'rel-1');
    assert.equal(await lookup(svc, 'app-2', [], 'v1', pr), 'app-2');
    await putEntry(svc, 'pr-only', 'v1', pr);
    assert.equal(svc.records().entries.find((e) => e.key === 'pr-only')?.scope, 'refs/pull/7/merge');
    assert.equal(await lookup(svc, 'pr-only', [], 'v1', releaseToken), undefined);
    // the same key and version may exist once per scope
    await putEntry(svc, 'app-3', 'v1', svc.token);
  });

  test('immutable keys: 409 already_exists while the first upload is still pending, and after', async () => {
    const a = await twirp(svc, 'CreateCacheEntry', { key: 'pending', version: 'v1' });
    assert.equal(a.json.ok, true);
    const b = await twirp(svc, 'CreateCacheEntry', { key: 'pending', version: 'v1' });
    assert.equal(b.status, 409);
    assert.deepEqual(b.json, { code: 'already_exists', msg: 'cache entry with the same key, version, and scope already exists' });
    assert.equal(await lookup(svc, 'pending', [], 'v1'), undefined, 'not finalized: not found');
    const other = await twirp(svc, 'CreateCacheEntry', { key: 'pending', version: 'v2' });
    assert.equal(other.json.ok, true, 'another version is another entry');
    const notUploaded = await twirp(svc, 'FinalizeCacheEntryUpload', { key: 'pending', version: 'v1', size_bytes: '1' });
    assert.equal(notUploaded.status, 412);
    const unknown = await twirp(svc, 'FinalizeCacheEntryUpload', { key: 'never-created', version: 'v1', size_bytes: '1' });
    assert.deepEqual([unknown.status, unknown.json.code], [404, 'not_found']);
  });

  test('errors are Twirp JSON: no token, unknown token, bad route, wrong content type, bad body', async () => {
    const noToken = await twirp(svc, 'GetCacheEntryDownloadURL', { key: 'k', version: 'v' }, null);
    assert.deepEqual([noToken.status, noToken.json.code], [401, 'unauthenticated']);
    const forged = await twirp(svc, 'GetCacheEntryDownloadURL', { key: 'k', version: 'v' }, 'a.b.c');
    assert.deepEqual([forged.status, forged.json.code], [401, 'unauthenticated']);
    const route = await twirp(svc, 'DeleteCacheEntry', { key: 'k' });
    assert.deepEqual([route.status, route.json.code], [404, 'bad_route']);
    const proto = await twirp(svc, 'CreateCacheEntry', 'x', svc.token, { headers: { 'Content-Type': 'application/protobuf', Authorization: `Bearer ${svc.token}` } });
    assert.deepEqual([proto.status, proto.json.code], [400, 'malformed']);
    const notJson = await twirp(svc, 'CreateCacheEntry', '{nope');
    assert.deepEqual([notJson.status, notJson.json.code], [400, 'malformed']);
    const noKey = await twirp(svc, 'CreateCacheEntry', { version: 'v' });
    assert.deepEqual([noKey.status, noKey.json.code], [400, 'invalid_argument']);
    const comma = await twirp(svc, 'GetCacheEntryDownloadURL', { key: 'a,b', version: 'v' });
    assert.deepEqual([comma.status, comma.json.code], [400, 'invalid_argument']);
    for (const r of [noToken, forged, route, proto, notJson, noKey, comma]) {
      assert.equal(r.headers.get('content-type'), 'application/json');
      assert.equal(typeof r.json.msg, 'string');
    }
  });

  test('evict(): the entry is gone and its blob deleted (an old signed URL answers 404)', async () => {
    await putEntry(svc, 'to-evict', 'v1');
    const r = await twirp(svc, 'GetCacheEntryDownloadURL', { key: 'to-evict', version: 'v1' });
    const url = String(r.json.signed_download_url);
    assert.equal((await fetch(url)).status, 200);
    const evicted = await svc.evict('to-evict');
    assert.deepEqual(evicted.map((e) => [e.key, e.state, e.evictedBy]), [['to-evict', 'evicted', 'manual']]);
    assert.equal(await lookup(svc, 'to-evict', [], 'v1'), undefined);
    assert.equal((await fetch(url)).status, 404);
  });

  test('latency is added to every Twirp answer', async () => {
    svc.setLatency(300);
    try {
      const t0 = Date.now();
      await lookup(svc, 'nothing', [], 'v1');
      assert.ok(Date.now() - t0 >= 290);
    } finally {
      svc.setLatency(0);
    }
  });
});

describe('creation rate limit', () => {
  let svc: ActionsCacheService;
  before(async () => {
    svc = await startActionsCacheService({ createsPerMinute: 2 });
  });
  after(() => svc?.stop());

  test('beyond the limit: 429 with Retry-After; saveCache warns and returns -1; lookups still work', async (t) => {
    const ws = await workspace(t, { 'data/x': 'rate' });
    assert.ok((await client(svc, ws, { op: 'save', paths: ['data'], key: 'rate-1' })).result as number > 0);
    assert.ok((await client(svc, ws, { op: 'save', paths: ['data'], key: 'rate-2' })).result as number > 0);
    const since = svc.records().requests.length;
    const third = await client(svc, ws, { op: 'save', paths: ['data'], key: 'rate-3' });
    assert.equal(third.result, -1);
    assert.equal(third.error, undefined);
    assert.equal(third.warnings.length, 1, third.warnings.join('\n'));
    assert.match(third.warnings[0]!, /^You've hit a rate limit, your rate limit will reset in \d+ seconds$/);
    assert.ok(third.infos.some((l) => RESERVE_REFUSED.test(l)), third.infos.join('\n'));
    const calls = twirpCalls(svc, since);
    assert.equal(calls.length, 1, 'not retried');
    assert.equal(calls[0]!.status, 429);
    assert.deepEqual(calls[0]!.response, { code: 'resource_exhausted', msg: 'rate limit exceeded' });
    assert.ok(calls[0]!.retryAfter! >= 1 && calls[0]!.retryAfter! <= 60);
    const direct = await twirp(svc, 'CreateCacheEntry', { key: 'rate-4', version: 'v' });
    assert.equal(direct.status, 429);
    assert.match(direct.headers.get('retry-after') ?? '', /^\d+$/);
    const restored = await client(svc, await workspace(t), { op: 'restore', paths: ['data'], key: 'rate-2' });
    assert.equal(restored.result, 'rate-2');
  });
});

describe('quota', () => {
  let svc: ActionsCacheService;
  // random content: the archives are about as large as the files
  const SIZE = 100_000;
  before(async () => {
    svc = await startActionsCacheService({ quotaBytes: Math.floor(SIZE * 2.5) });
  });
  after(() => svc?.stop());

  test('past the quota the least recently used entry is evicted whole', async (t) => {
    const save = async (key: string) => {
      const ws = await workspace(t, { 'data/x': randomBytes(SIZE) });
      assert.ok((await client(svc, ws, { op: 'save', paths: ['data'], key })).result as number > 0);
    };
    const has = async (key: string) => (await client(svc, await workspace(t), { op: 'restore', paths: ['data'], key, lookupOnly: true })).result === key;
    await save('q-1');
    await save('q-2');
    assert.ok(await has('q-1'), 'a lookup makes q-1 recently used');
    await save('q-3');
    const states = Object.fromEntries(svc.records().entries.map((e) => [e.key, `${e.state}${e.evictedBy ? `:${e.evictedBy}` : ''}`]));
    assert.deepEqual(states, { 'q-1': 'finalized', 'q-2': 'evicted:quota', 'q-3': 'finalized' });
    assert.equal(await has('q-2'), false);
    assert.ok(await has('q-1'));
    assert.ok(await has('q-3'));
  });
});

describe("blobHost 'azure': the client's Azure SDK download path", () => {
  let svc: ActionsCacheService;
  before(async () => {
    svc = await startActionsCacheService({ blobHost: 'azure' });
  });
  after(() => svc?.stop());

  test('signed URLs name *.blob.core.windows.net; the restore is HEAD + ranged GETs; same bytes', async (t) => {
    assert.match(svc.blobEndpoint, /^http:\/\/devstoreaccount1\.blob\.core\.windows\.net:\d+$/);
    const ws = await workspace(t, { 'data/a.bin': randomBytes(5 * 1024 * 1024), 'data/b.txt': 'b' });
    assert.ok((await client(svc, ws, { op: 'save', paths: ['data'], key: 'sdk' })).result as number > 0);
    const since = svc.records().requests.length;
    const ws2 = await workspace(t);
    assert.equal((await client(svc, ws2, { op: 'restore', paths: ['data'], key: 'sdk' })).result, 'sdk');
    assert.deepEqual(await tree(ws2), await tree(ws));
    const blobs = blobCalls(svc, since);
    assert.equal(blobs[0]?.op, 'GetBlobProperties');
    const gets = blobs.slice(1);
    assert.ok(gets.length >= 2, `ranged GETs of 4 MiB: ${JSON.stringify(gets)}`);
    for (const g of gets) {
      assert.equal(g.op, 'GetBlob');
      assert.match(g.range ?? '', /^bytes=\d+-\d+$/);
      assert.equal(g.status, 206);
    }
  });

  test('routeAzureBlobHostsToLoopback() lets this process reach the blob host too', async () => {
    const undo = await routeAzureBlobHostsToLoopback();
    const since = svc.records().requests.length;
    try {
      const res = await fetch(`${svc.blobEndpoint}/actions-cache/no-such-blob`);
      await res.arrayBuffer();
      assert.ok(res.status >= 400 && res.status < 500, `azurite answered ${res.status}`);
    } finally {
      undo();
    }
    assert.deepEqual(blobCalls(svc, since).map((b) => [b.op, b.blob]), [['GetBlob', 'actions-cache/no-such-blob']]);
  });
});
