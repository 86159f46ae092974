// The storage lock as a lease with an owner record (src/storage/lock.ts): what the record says,
// that the holder renews it, which owners are taken over at once (provably dead), which refuse
// at once (provably running, or seen renewing), which are waited out (an owner in another PID
// namespace or on another machine that stopped renewing), and a holder told that it lost the
// lock. Owners other than this process are written by hand, as the records their servers write;
// servers (dist/cli.js) started together race for a dead holder's lock.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { lstat, lutimes, mkdir, readlink, symlink, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { type LockWait, type StorageLockLostError, StorageLockedError, openStorage } from '../../src/storage/index.js';
import { tempDir } from './fixtures.js';
import { type ServeHandle, startServe, stopServe } from '../helpers/crash.js';

const LEASE_MS = 900;

/** This machine's boot id, as the record holds it (12 hex digits). */
const BOOT = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').replace(/-/g, '').trim().slice(0, 12);
/** This process's PID namespace (the inode of /proc/self/ns/pid). */
const PIDNS = Number(/\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1]);

/** Start time of `pid` in clock ticks after boot (field 22 of /proc/<pid>/stat). */
function startTime(pid: number | 'self'): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

/** A record as a server writes it. */
function record(o: { pid: number; start: number; boot?: string; pidns?: number; lease?: number; host?: string }): string {
  return `${o.pid} ${o.start} ${o.boot ?? BOOT} ${o.pidns ?? PIDNS} ${o.lease ?? LEASE_MS} ${o.host ?? 'elsewhere'}`;
}

/** A child process that stays alive until the test ends. */
function liveProcess(t: TestContext): number {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  t.after(() => {
    child.kill('SIGKILL');
  });
  return child.pid!;
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => child.once('exit', r));
  return child.pid!;
}

/** Sets the lock's mtime `agoMs` in the past. */
async function age(dir: string, agoMs: number): Promise<void> {
  const then = new Date(Date.now() - agoMs);
  await lutimes(join(dir, 'lock'), then, then);
}

async function open(t: TestContext, dir: string, waits: LockWait[] = [], onLost?: (err: StorageLockLostError) => void) {
  const storage = await openStorage(dir, { lock: { leaseMs: LEASE_MS, onWait: (w) => waits.push(w), ...(onLost ? { onLost } : {}) } });
  t.after(() => storage.close());
  return storage;
}

test('the lock names this process: pid, start time, boot id, PID namespace, lease and host, in at most 59 bytes', async (t) => {
  const dir = await tempDir(t);
  await open(t, dir);
  const target = await readlink(join(dir, 'lock'));
  const expected = `${process.pid} ${startTime('self')} ${BOOT} ${PIDNS} ${LEASE_MS} `;
  assert.ok(target.startsWith(expected), `${target} starts with ${expected}`);
  assert.ok(hostname().startsWith(target.slice(expected.length)), `the host name (cut) ends ${target}`);
  assert.ok(Buffer.byteLength(target) <= 59, `${target.length} bytes: an ext4 inode holds at most 59`);
});

test('the holder renews its lease: the lock\'s mtime moves while it runs', async (t) => {
  const dir = await tempDir(t);
  await open(t, dir);
  await age(dir, 60_000);
  const before = (await lstat(join(dir, 'lock'))).mtimeMs;
  for (let i = 0; (await lstat(join(dir, 'lock'))).mtimeMs === before; i++) {
    assert.ok(i < 100, 'the lease was not renewed within 10 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok((await lstat(join(dir, 'lock'))).mtimeMs > Date.now() - 10_000);
});

test('a lock of a running process in this PID namespace refuses at once, naming it and what to do', async (t) => {
  const dir = await tempDir(t);
  const pid = liveProcess(t);
  await symlink(record({ pid, start: startTime(pid), host: hostname().slice(0, 8) }), join(dir, 'lock'));
  await age(dir, 60_000); // even a stale lease: the owner provably runs
  const waits: LockWait[] = [];
  await assert.rejects(open(t, dir, waits), (err: unknown) => {
    assert.ok(err instanceof StorageLockedError);
    assert.equal(err.pid, pid);
    assert.match(err.message, new RegExp(`^storage ${dir} is in use by process ${pid} on host ${hostname().slice(0, 8)}, which is running: stop that server or choose another --storage;.* delete ${dir}/lock by hand only if no server uses this storage$`));
    return true;
  });
  assert.deepEqual(waits, []);
});

test('a lock whose PID now belongs to another process (other start time) is taken over at once', async (t) => {
  const dir = await tempDir(t);
  const pid = liveProcess(t);
  await symlink(record({ pid, start: startTime(pid) - 1 }), join(dir, 'lock'));
  const waits: LockWait[] = [];
  await open(t, dir, waits);
  assert.match(await readlink(join(dir, 'lock')), new RegExp(`^${process.pid} `));
  assert.deepEqual(waits, []);
});

test('a lock of a dead process in this PID namespace is taken over at once, however fresh its lease', async (t) => {
  const dir = await tempDir(t);
  await symlink(record({ pid: await deadPid(), start: 1 }), join(dir, 'lock'));
  const waits: LockWait[] = [];
  await open(t, dir, waits);
  assert.match(await readlink(join(dir, 'lock')), new RegExp(`^${process.pid} `));
  assert.deepEqual(waits, []);
});

test('a lock from another PID namespace that keeps being renewed refuses, naming the holder', async (t) => {
  const dir = await tempDir(t);
  await symlink(record({ pid: 1, start: 5, pidns: PIDNS + 1, host: 'c0ffee' }), join(dir, 'lock'));
  // The holder renews every third of its lease, as a server does.
  const renewer = setInterval(() => void age(dir, 0).catch(() => {}), LEASE_MS / 3);
  t.after(() => clearInterval(renewer));
  const waits: LockWait[] = [];
  await assert.rejects(open(t, dir, waits), (err: unknown) => {
    assert.ok(err instanceof StorageLockedError);
    assert.equal(err.pid, 1);
    assert.match(err.message, new RegExp(`is in use by process 1 on host c0ffee \\(this machine, PID namespace ${PIDNS + 1}\\), which renews its lease`));
    return true;
  });
  assert.equal(waits.length, 1, 'it waited to see whether the lease is renewed');
  assert.match(await readlink(join(dir, 'lock')), /^1 5 /);
});

test('a lock from another PID namespace that is not renewed is waited out, then taken over', async (t) => {
  const dir = await tempDir(t);
  await symlink(record({ pid: 1, start: 5, pidns: PIDNS + 1 }), join(dir, 'lock'));
  const waits: LockWait[] = [];
  const started = performance.now();
  await open(t, dir, waits);
  const waited = performance.now() - started;
  assert.match(await readlink(join(dir, 'lock')), new RegExp(`^${process.pid} `));
  assert.equal(waits.length, 1);
  const w = waits[0]!;
  assert.equal(w.owner.pid, 1);
  assert.ok(w.renewedAgoMs !== undefined && w.renewedAgoMs < LEASE_MS, 'same boot: the age of the lease is known');
  assert.ok(w.waitMs > 0 && w.waitMs <= LEASE_MS);
  assert.ok(waited >= w.waitMs - 50, `took it over after ${waited} ms, before the lease ran out (${w.waitMs} ms)`);
});

test('a lock from another PID namespace on this machine whose lease ran out is taken over at once', async (t) => {
  const dir = await tempDir(t);
  await symlink(record({ pid: 1, start: 5, pidns: PIDNS + 1 }), join(dir, 'lock'));
  await age(dir, 10 * LEASE_MS);
  const waits: LockWait[] = [];
  await open(t, dir, waits);
  assert.match(await readlink(join(dir, 'lock')), new RegExp(`^${process.pid} `));
  assert.deepEqual(waits, []);
});

test('a lock from another machine is waited out for a whole lease period, whatever its mtime says (clocks differ)', async (t) => {
  const dir = await tempDir(t);
  await symlink(record({ pid: process.pid, start: startTime('self'), boot: 'abcdef012345' }), join(dir, 'lock'));
  await age(dir, 3_600_000);
  const waits: LockWait[] = [];
  await open(t, dir, waits);
  assert.equal(waits.length, 1);
  assert.equal(waits[0]!.renewedAgoMs, undefined);
  assert.equal(waits[0]!.waitMs, LEASE_MS);
  assert.match(await readlink(join(dir, 'lock')), new RegExp(`^${process.pid} ${startTime('self')} ${BOOT} `));
});

test('the holder\'s longer lease is waited out, not the waiter\'s own', async (t) => {
  const dir = await tempDir(t);
  await symlink(record({ pid: 1, start: 5, pidns: PIDNS + 1, lease: 3 * LEASE_MS }), join(dir, 'lock'));
  await age(dir, 2 * LEASE_MS);
  const waits: LockWait[] = [];
  await open(t, dir, waits);
  assert.equal(waits.length, 1, 'a lease of 3 periods renewed 2 periods ago has not run out');
  assert.ok(waits[0]!.waitMs <= LEASE_MS + 50);
});

test('a holder whose lock another process took over is told so, and leaves that lock alone on close', async (t) => {
  const dir = await tempDir(t);
  let lost: StorageLockLostError | undefined;
  const storage = await openStorage(dir, { lock: { leaseMs: LEASE_MS, onLost: (err) => (lost = err) } });
  const other = record({ pid: 1, start: 5, pidns: PIDNS + 1, host: 'newowner' });
  await unlink(join(dir, 'lock'));
  await symlink(other, join(dir, 'lock'));
  for (let i = 0; !lost; i++) {
    assert.ok(i < 100, 'the holder was not told within 10 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(lost.message, /taken over by process 1 on host newowner/);
  await storage.close();
  assert.equal(await readlink(join(dir, 'lock')), other);
});

test('servers started together on a storage whose holder died: exactly one takes it over, the others are refused naming it', { timeout: 90_000 }, async (t) => {
  const servers: ServeHandle[] = [];
  t.after(async () => {
    for (const s of servers) await stopServe(s).catch(() => {});
  });
  const dir = await tempDir(t);
  const storage = join(dir, 'storage');
  await mkdir(storage);
  await symlink(record({ pid: await deadPid(), start: 1 }), join(storage, 'lock'));
  const results = await Promise.allSettled([1, 2, 3].map(() => startServe({ storage, dir, env: { REGCACHE_LOCK_LEASE_MS: '3000' } })));
  for (const r of results) if (r.status === 'fulfilled') servers.push(r.value);
  assert.equal(servers.length, 1, `one server started: ${results.map((r) => r.status).join(', ')}`);
  const winner = servers[0]!;
  assert.match(await readlink(join(storage, 'lock')), new RegExp(`^${winner.pid} `));
  for (const r of results) if (r.status === 'rejected') assert.match((r.reason as Error).message, new RegExp(`is in use by process ${winner.pid} on host \\S+, which is running`));
});
