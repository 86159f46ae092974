// Upload session lifetime against the real server process. Sessions idle longer than
// --upload-max-age are purged while the server runs (every --upload-purge-interval) and at
// startup; their ids then answer BLOB_UPLOAD_UNKNOWN and their bytes are gone from disk. Idle
// means idle: a session that keeps receiving chunks outlives the age limit.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { request } from 'undici';
import { Rng, type ServeHandle, kill9, seedFromEnv, sha256, startServe, stopServe } from '../helpers/crash.js';
import { tempDir } from '../helpers/proc.js';

async function call(base: string, method: 'GET' | 'POST' | 'PUT' | 'PATCH', path: string, body?: Buffer, headers: Record<string, string> = {}) {
  const res = await request(path.startsWith('http') ? path : `${base}${path}`, { method, body, headers: { 'content-length': String(body?.byteLength ?? 0), ...headers } });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

function assertUnknown(r: { status: number; text: string }, what: string): void {
  assert.equal(r.status, 404, `${what}: ${r.status} ${r.text}`);
  assert.equal((JSON.parse(r.text) as { errors: Array<{ code: string }> }).errors[0]?.code, 'BLOB_UPLOAD_UNKNOWN', what);
}

test('a session idle past --upload-max-age is purged while the server runs; one that keeps receiving chunks is not', { timeout: 60_000 }, async (t) => {
  const rng = new Rng(seedFromEnv());
  const dir = await tempDir('rc-limits-stale-', t);
  const storage = join(dir.path, 'storage');
  let server: ServeHandle | undefined;
  t.after(async () => {
    if (server) await stopServe(server).catch(() => {});
  });
  server = await startServe({ storage, dir: dir.path, args: ['--upload-max-age', '1500ms', '--upload-purge-interval', '200ms'] });
  const base = server.registry;
  const idle = await call(base, 'POST', '/v2/stale/app/blobs/uploads/');
  const busy = await call(base, 'POST', '/v2/stale/app/blobs/uploads/');
  const idleId = String(idle.headers['docker-upload-uuid']);
  assert.equal((await call(base, 'PATCH', String(idle.headers.location), rng.bytes(1000), { 'content-range': '0-999' })).status, 202);

  // The busy session gets a chunk every 300 ms for 3 s: twice the age limit, never idle that long.
  const data = rng.bytes(10 * 1000);
  for (let i = 0; i < 10; i++) {
    const r = await call(base, 'PATCH', String(busy.headers.location), data.subarray(i * 1000, (i + 1) * 1000), { 'content-range': `${i * 1000}-${(i + 1) * 1000 - 1}` });
    assert.equal(r.status, 202, `chunk ${i} of the busy session: ${r.status} ${r.text}`);
    await sleep(300);
  }
  assertUnknown(await call(base, 'GET', String(idle.headers.location)), 'status of the idle session');
  assertUnknown(await call(base, 'PATCH', String(idle.headers.location), Buffer.from('x')), 'a chunk for the idle session');
  assertUnknown(await call(base, 'PUT', `${String(idle.headers.location)}?digest=${sha256('x')}`), 'completing the idle session');
  assert.equal(existsSync(join(storage, 'uploads', idleId)), false, 'the idle session is gone from disk');
  const put = await call(base, 'PUT', `${String(busy.headers.location)}?digest=${sha256(data)}`);
  assert.equal(put.status, 201, `the busy session completes: ${put.status} ${put.text}`);
});

test('sessions left by a killed server and idle past --upload-max-age are purged at startup', { timeout: 60_000 }, async (t) => {
  const rng = new Rng(seedFromEnv());
  const dir = await tempDir('rc-limits-stale-', t);
  const storage = join(dir.path, 'storage');
  let server: ServeHandle | undefined = await startServe({ storage, dir: dir.path });
  t.after(async () => {
    if (server) await stopServe(server).catch(() => {});
  });
  const s = await call(server.registry, 'POST', '/v2/stale/app/blobs/uploads/');
  const id = String(s.headers['docker-upload-uuid']);
  assert.equal((await call(server.registry, 'PATCH', String(s.headers.location), rng.bytes(4096), { 'content-range': '0-4095' })).status, 202);
  await kill9(server);
  server = undefined;
  assert.ok(existsSync(join(storage, 'uploads', id, 'data')));
  await sleep(1200);
  server = await startServe({ storage, dir: dir.path, args: ['--upload-max-age', '1s', '--upload-purge-interval', '1h'] });
  assert.equal(existsSync(join(storage, 'uploads', id)), false, 'the stale session is gone from disk at startup');
  assertUnknown(await call(server.registry, 'GET', `/v2/stale/app/blobs/uploads/${id}`), 'status of the purged session');
});
