// Starting on a disk that is already full: the storage is a 4 MiB tmpfs (root; skipped locally
// without it, failed under CI) holding a blob pushed earlier, then filled to the last byte. A
// restarted server must come up (its lock takes no data block), serve what it has, and refuse
// new writes with the clean 507 envelope; once space is freed, pushes work again.
import assert from 'node:assert/strict';
import { readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { Rng, type ServeHandle, fillUp, freeBytes, mountTmpfs, seedFromEnv, sha256, startServe, stopServe } from '../helpers/crash.js';
import { pushBlob } from '../helpers/fault-proxy.js';
import { tempDir } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';

test('a server restarted on a full disk starts, serves its blobs, answers pushes 507, and takes pushes again once there is room', { skip: skipUnless(['umount'], { root: true }), timeout: 60_000 }, async (t) => {
  const rng = new Rng(seedFromEnv());
  const dir = await tempDir('rc-enospc-start-');
  let server: ServeHandle | undefined;
  t.after(async () => {
    if (server) await stopServe(server).catch(() => {});
    await dir.cleanup();
  });
  const fs = join(dir.path, 'fs');
  await mountTmpfs(fs, 4);
  const storage = join(fs, 'storage');
  const stored = rng.bytes(64 * 1024);

  server = await startServe({ storage, dir: dir.path });
  const digest = await pushBlob(server.registry, 'full/start', stored);
  await stopServe(server);
  server = undefined;
  const filler = join(fs, 'filler');
  await fillUp(filler);
  assert.equal(await freeBytes(fs), 0, 'the disk is full');

  server = await startServe({ storage, dir: dir.path });
  assert.equal((await readlink(join(storage, 'lock'))).split(' ')[0], String(server.pid), 'the lock names the new server');
  const get = await request(`${server.registry}/v2/full/start/blobs/${digest}`);
  assert.equal(get.statusCode, 200);
  assert.equal(sha256(Buffer.from(await get.body.arrayBuffer())), digest);

  const fresh = rng.bytes(8 * 1024);
  const push = await request(`${server.registry}/v2/full/start/blobs/uploads/?digest=${sha256(fresh)}`, { method: 'POST', body: fresh, headers: { 'content-length': String(fresh.byteLength) } });
  const text = await push.body.text();
  assert.equal(push.statusCode, 507, text);
  assert.equal((JSON.parse(text) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE');

  await rm(filler);
  assert.equal(await pushBlob(server.registry, 'full/start', fresh), sha256(fresh));
});
