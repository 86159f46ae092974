// Opening a storage root: its directories, the startup scan of tmp/ and stale uploads, and
// the lock that gives one owner (process and Storage instance) per directory, with the locks
// of older versions (a bare pid). The lease and the owner record: lock.test.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { lstat, mkdir, readFile, readdir, readlink, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { StorageLockedError, openStorage } from '../../src/storage/index.js';
import { tempDir } from './fixtures.js';

/** A child process that stays alive until the test ends. */
function liveProcess(t: TestContext): number {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  t.after(() => {
    child.kill('SIGKILL');
  });
  return child.pid!;
}

/** The pid the lock of `dir` names: the first field of the symlink's target, or (older versions) the file's text. */
async function lockOwner(dir: string): Promise<string> {
  return (await readlink(join(dir, 'lock')).catch(() => readFile(join(dir, 'lock'), 'utf8'))).split(' ')[0]!;
}

/** Puts a lock naming `pid` into `dir`, as a server of an older version does. */
function lockAs(dir: string, pid: number): Promise<void> {
  return symlink(String(pid), join(dir, 'lock'));
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => child.once('exit', r));
  return child.pid!;
}

test('openStorage creates the layout and names its process in the lock', async (t) => {
  const dir = await tempDir(t);
  const storage = await openStorage(join(dir, 'new', 'root'));
  t.after(() => storage.close());
  for (const d of ['blobs', 'uploads', 'repositories', 'tmp']) assert.deepEqual(await readdir(join(dir, 'new', 'root', d)), []);
  assert.equal(await lockOwner(join(dir, 'new', 'root')), String(process.pid));
});

test('the startup scan empties tmp/ of files and directories a crash left', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'tmp', 'leftover-dir'), { recursive: true });
  await writeFile(join(dir, 'tmp', 'leftover-dir', 'x'), 'x');
  await writeFile(join(dir, 'tmp', 'partial-blob'), 'partial');
  const storage = await openStorage(dir);
  t.after(() => storage.close());
  assert.equal(storage.startup.tempFilesRemoved, 2);
  assert.deepEqual(await readdir(join(dir, 'tmp')), []);
});

test('the startup scan purges upload sessions older than uploadMaxAgeMs', async (t) => {
  const dir = await tempDir(t);
  const first = await openStorage(dir);
  const s = await first.uploads.create('repo');
  await first.close();
  await writeFile(join(dir, 'uploads', s.id, 'session.json'), JSON.stringify({ repository: 'repo', startedAt: Date.now() - 10_000 }));
  const tenSecondsAgo = new Date(Date.now() - 10_000);
  await utimes(join(dir, 'uploads', s.id, 'data'), tenSecondsAgo, tenSecondsAgo);
  const second = await openStorage(dir, { uploadMaxAgeMs: 5_000 });
  t.after(() => second.close());
  assert.equal(second.startup.stalePurged, 1);
  assert.deepEqual(await readdir(join(dir, 'uploads')), []);
});

test('a second openStorage of the same directory in this process throws StorageLockedError', async (t) => {
  const dir = await tempDir(t);
  const first = await openStorage(dir);
  t.after(() => first.close());
  await assert.rejects(openStorage(dir), (err: unknown) => err instanceof StorageLockedError && err.pid === process.pid);
  // The first owner keeps its lock.
  assert.equal(await lockOwner(dir), String(process.pid));
});

test('a directory locked by another live process (an older version\'s lock) throws StorageLockedError naming it', async (t) => {
  const dir = await tempDir(t);
  const pid = liveProcess(t);
  await lockAs(dir, pid);
  await assert.rejects(openStorage(dir), (err: unknown) => {
    assert.ok(err instanceof StorageLockedError);
    assert.equal(err.pid, pid);
    assert.match(err.message, new RegExp(`in use by process ${pid} \\(the lock of an older regcache, which names only a PID\\), which is running: stop that server, or delete ${dir}/lock if no regcache uses this storage$`));
    return true;
  });
  assert.equal(await lockOwner(dir), String(pid));
});

test('an older version\'s lock left by a dead process is taken over', async (t) => {
  const dir = await tempDir(t);
  await lockAs(dir, await deadPid());
  const storage = await openStorage(dir);
  t.after(() => storage.close());
  assert.equal(await lockOwner(dir), String(process.pid));
});

test('a lock naming this pid that no open Storage holds (pid reuse after a crash) is taken over', async (t) => {
  const dir = await tempDir(t);
  await lockAs(dir, process.pid);
  const storage = await openStorage(dir);
  t.after(() => storage.close());
  assert.equal(await lockOwner(dir), String(process.pid));
});

test('a lock file of an older version (a regular file holding the pid) is honoured', async (t) => {
  const dir = await tempDir(t);
  const pid = liveProcess(t);
  await writeFile(join(dir, 'lock'), String(pid));
  await assert.rejects(openStorage(dir), (err: unknown) => err instanceof StorageLockedError && err.pid === pid);
  assert.equal(await readFile(join(dir, 'lock'), 'utf8'), String(pid));
});

test('a garbled lock file is taken over', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'lock'), 'not a pid');
  const storage = await openStorage(dir);
  t.after(() => storage.close());
  assert.equal(await lockOwner(dir), String(process.pid));
});

test('close releases the lock so that the directory can be opened again', async (t) => {
  const dir = await tempDir(t);
  const first = await openStorage(dir);
  await first.close();
  await assert.rejects(lstat(join(dir, 'lock')), { code: 'ENOENT' });
  const second = await openStorage(dir);
  await second.close();
  await second.close();
});

test('closing leaves a lock that another process took over alone', async (t) => {
  const dir = await tempDir(t);
  const storage = await openStorage(dir);
  const pid = liveProcess(t);
  await unlink(join(dir, 'lock'));
  await lockAs(dir, pid);
  await storage.close();
  assert.equal(await lockOwner(dir), String(pid));
});

test('two concurrent openStorage calls in this process: exactly one wins', async (t) => {
  const dir = await tempDir(t);
  const results = await Promise.allSettled([openStorage(dir), openStorage(dir), openStorage(dir)]);
  const won = results.filter((r) => r.status === 'fulfilled');
  assert.equal(won.length, 1);
  for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof StorageLockedError);
  await (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof openStorage>>>).value.close();
});

test('closing an old Storage again does not release the lock of a newer one', async (t) => {
  const dir = await tempDir(t);
  const old = await openStorage(dir);
  await old.close();
  const current = await openStorage(dir);
  t.after(() => current.close());
  await old.close();
  assert.equal(await lockOwner(dir), String(process.pid));
  await assert.rejects(openStorage(dir), StorageLockedError);
});
