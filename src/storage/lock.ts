// The storage lock: one server process owns a storage directory at a time, which is what lets
// the metadata caches stay coherent. A process ID alone cannot say who owns a directory: in a
// container every server is PID 1 of its own PID namespace, a PID is reused after its process
// died, and another machine's processes cannot be seen at all (a shared volume). So the lock
// is a lease with an owner record:
//
// - The lock is a symbolic link `<root>/lock` whose target is the owner record
//   `<pid> <start time> <boot id> <pid namespace> <lease ms> <host>`: the owner's PID as its
//   own /proc sees it, its start time in clock ticks after boot (/proc/<pid>/stat), the first 12
//   hex digits of the kernel's boot id, the inode of its PID namespace, its lease period, and
//   its host name (cut to fit). Creating a symbolic link is atomic and fails when it exists, and a target this short
//   (at most 59 bytes) lives in the inode itself, so the lock can be taken on a file system
//   without a free data block (a full disk, from which the server must still serve what it has).
// - The holder renews the lease: it sets the link's mtime every third of the lease period
//   (default 15 s, REGCACHE_LOCK_LEASE_MS), as proper-lockfile does; an mtime also works on
//   network file systems, where no lock call does.
// - Another process that finds the lock decides, in this order:
//   1. the owner is provably dead (same boot and PID namespace, and its PID is gone, a zombie,
//      or a process with another start time): the lock is taken over at once;
//   2. the owner provably runs (same boot and PID namespace, same PID and start time): refused;
//   3. otherwise (another PID namespace, another machine) the lease decides: the waiter
//      watches the mtime until the lease would expire, the expiry computed from the mtime
//      when the owner shares our clock (same boot), else a whole lease period from now (clocks
//      of two machines may differ). A renewal seen meanwhile refuses at once; a lease that ran
//      out is taken over. So a server killed in one container is followed by the next within
//      one lease period, and `docker run --restart` recovers instead of looping on an error.
// - A lock of an older version (a bare PID, as a symlink target or a regular file) is honoured
//   while that PID runs (and is not this process), as those versions did.
// - Two processes taking over the same dead lock at once would both unlink and create; a second
//   link `<root>/lock.takeover`, taken the same way and held only for the check and the unlink,
//   makes the takeover a compare-and-swap.
// - The holder checks at each renewal that the lock still names it; if another process took it
//   (this one was stopped or stalled longer than a lease period), `onLost` is told.
//
// A PID cannot tell two owners inside one process apart, so this process also remembers which
// locks it holds.
import { readFileSync, readlinkSync, unlinkSync } from 'node:fs';
import { lstat, lutimes, readFile, readlink, symlink, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StorageLockedError, StorageLockLostError } from './errors.js';

/** The lease period unless told otherwise (option, or REGCACHE_LOCK_LEASE_MS): 15 s. */
export const DEFAULT_LOCK_LEASE_MS = 15_000;

/** The longest owner record: a symlink target below 60 bytes stays in an ext4 inode. */
const MAX_RECORD_LENGTH = 59;

/** Lock files held by this process (a lock naming this process that is not here is left from a previous life). */
const held = new Set<string>();

/** Who holds a lock, as its record says. `legacy`: an older version's lock naming only a PID. */
export interface LockOwner {
  pid: number;
  /** Start time in clock ticks after boot (0: unknown). */
  startTime: number;
  /** First 12 hex digits of the kernel boot id ('-': unknown). */
  boot: string;
  /** Inode of the owner's PID namespace (0: unknown). */
  pidns: number;
  /** The owner's lease period (0: unknown, an older version's lock). */
  leaseMs: number;
  host: string;
  legacy?: boolean;
}

/** What a waiter is told when it waits for a lease to run out. */
export interface LockWait {
  owner: LockOwner;
  /** How long ago (by the owner's mtime and this clock) the lease was last renewed; undefined when the clocks may differ. */
  renewedAgoMs: number | undefined;
  /** How long the waiter waits at most. */
  waitMs: number;
}

/** Options of {@link acquireLock}. */
export interface LockOptions {
  /** Lease period. Default: REGCACHE_LOCK_LEASE_MS, else {@link DEFAULT_LOCK_LEASE_MS}. */
  leaseMs?: number;
  /** Told when the lock is held by an owner that may be dead, before waiting for its lease to run out. */
  onWait?: (wait: LockWait) => void;
  /** Told when a renewal finds that another process took the lock over. */
  onLost?: (err: StorageLockLostError) => void;
}

/** A held lock. */
export interface HeldLock {
  /** The record this process wrote. */
  readonly owner: LockOwner;
  /** Stops renewing and removes the lock if it still names this process. Idempotent. */
  release(): Promise<void>;
  /** The same, synchronously: for a process about to exit at once. */
  releaseSync(): void;
}

/** The lease period from REGCACHE_LOCK_LEASE_MS, else the default. */
export function defaultLeaseMs(): number {
  const env = Number(process.env.REGCACHE_LOCK_LEASE_MS);
  return Number.isFinite(env) && env >= 100 ? env : DEFAULT_LOCK_LEASE_MS;
}

// ---- the owner record ----

function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** State and start time of `pid` from /proc/<pid>/stat ("pid (comm) state ppid ..."; comm may hold spaces and parentheses). */
function procStat(pid: number | 'self'): { state: string; startTime: number } | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the comm: state is field 3 of stat(5), starttime field 22.
  return { state: fields[0] ?? '', startTime: Number(fields[19]) };
}

let self: Omit<LockOwner, 'leaseMs'> | undefined;

/**
 * This process's record. Where /proc is not this process's own (a PID namespace without its
 * own /proc mount), or missing (not Linux), the namespace is unknown and no other process
 * will judge this one dead by its PID.
 */
function selfOwner(): Omit<LockOwner, 'leaseMs'> {
  if (self) return self;
  const boot = (readProc('/proc/sys/kernel/random/boot_id') ?? '').replace(/-/g, '').trim().slice(0, 12);
  const ns = /\[(\d+)\]/.exec((() => { try { return readlinkSync('/proc/self/ns/pid'); } catch { return ''; } })())?.[1];
  const procIsOurs = (() => { try { return readlinkSync('/proc/self') === String(process.pid); } catch { return false; } })();
  const stat = procStat('self');
  const known = procIsOurs && /^[0-9a-f]{12}$/.test(boot) && ns !== undefined && stat !== undefined && Number.isSafeInteger(stat.startTime);
  self = {
    pid: process.pid,
    startTime: known ? stat!.startTime : 0,
    boot: known ? boot : '-',
    pidns: known ? Number(ns) : 0,
    host: hostname().replace(/[^A-Za-z0-9._-]/g, '_') || '-',
  };
  return self;
}

/** The lock's target for `o`: fields separated by spaces, the host name cut to fit. */
export function formatOwner(o: LockOwner): string {
  const head = `${o.pid} ${o.startTime} ${o.boot} ${o.pidns} ${o.leaseMs} `;
  return head + o.host.slice(0, Math.max(1, MAX_RECORD_LENGTH - head.length));
}

/** Reads a lock's target or text: a record, an older version's bare PID, or undefined (garbled). */
export function parseOwner(text: string): LockOwner | undefined {
  const t = text.trim();
  if (/^\d+$/.test(t)) return { pid: Number(t), startTime: 0, boot: '-', pidns: 0, leaseMs: 0, host: '-', legacy: true };
  const m = /^(\d+) (\d+) ([0-9a-f]{12}|-) (\d+) (\d+) (\S+)$/.exec(t);
  if (!m) return undefined;
  return { pid: Number(m[1]), startTime: Number(m[2]), boot: m[3]!, pidns: Number(m[4]), leaseMs: Number(m[5]), host: m[6]! };
}

function sameProcess(a: Omit<LockOwner, 'leaseMs'>, b: Omit<LockOwner, 'leaseMs'>): boolean {
  return a.pid === b.pid && a.startTime === b.startTime && a.boot === b.boot && a.pidns === b.pidns && a.host === b.host;
}

/** True when `o` lives in this process's PID namespace on this boot, where its PID can be checked. */
function checkable(o: LockOwner): boolean {
  const me = selfOwner();
  return !o.legacy && me.pidns !== 0 && o.pidns === me.pidns && o.boot === me.boot;
}

function pidRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procStat(pid);
  return stat === undefined ? process.platform !== 'linux' : stat.state !== 'Z' && stat.state !== 'X';
}

type Verdict = 'dead' | 'alive' | 'unknown';

/** What can be proven about an owner from here. */
function judge(o: LockOwner | undefined): Verdict {
  if (!o) return 'dead'; // garbled: no owner to wait for
  const me = selfOwner();
  if (o.legacy) {
    if (o.pid === me.pid) return 'dead'; // this process holds nothing here (checked before)
    return pidRuns(o.pid) ? 'alive' : 'dead';
  }
  if (sameProcess(o, me)) return 'dead'; // left by this process, which no longer holds it
  if (!checkable(o)) return 'unknown';
  const stat = procStat(o.pid);
  if (!stat || stat.state === 'Z' || stat.state === 'X' || stat.startTime !== o.startTime) return 'dead';
  return 'alive';
}

/** The holder in words, for messages. */
export function describeOwner(o: LockOwner): string {
  if (o.legacy) return `process ${o.pid} (the lock of an older regcache, which names only a PID)`;
  const me = selfOwner();
  if (sameProcess(o, me)) return `process ${o.pid} (this process)`;
  if (checkable(o)) return `process ${o.pid} on host ${o.host}`;
  const machine = o.boot !== '-' && o.boot === me.boot ? 'this machine, ' : '';
  return `process ${o.pid} on host ${o.host} (${machine}PID namespace ${o.pidns || 'unknown'})`;
}

// ---- taking the lock ----

interface Seen {
  target: string;
  owner: LockOwner | undefined;
  mtimeMs: number;
}

/** The lock as it is now, or undefined when there is none. */
async function inspect(path: string): Promise<Seen | undefined> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return undefined;
  const target = await readlink(path).catch(() => readFile(path, 'utf8')).catch(() => undefined);
  if (target === undefined) return undefined;
  return { target, owner: parseOwner(target), mtimeMs: st.mtimeMs };
}

/** Takes the lock at `path` for this process; throws StorageLockedError if another process holds it. */
export async function acquireLock(path: string, opts: LockOptions = {}): Promise<HeldLock> {
  const key = resolve(path);
  const leaseMs = opts.leaseMs ?? defaultLeaseMs();
  const me: LockOwner = { ...selfOwner(), leaseMs };
  if (held.has(key)) throw new StorageLockedError(path, me.pid, describeOwner(me), 'another Storage of this process holds it');
  held.add(key);
  try {
    await takeLock(path, me, opts);
    return holdLock(path, key, me, opts);
  } catch (err) {
    held.delete(key);
    throw err;
  }
}

async function takeLock(path: string, me: LockOwner, opts: LockOptions): Promise<void> {
  const record = formatOwner(me);
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      await symlink(record, path);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const seen = await inspect(path);
    if (!seen) continue;
    // The holder's lease when it is longer: it promised to renew within a third of that.
    const leaseMs = Math.max(me.leaseMs, seen.owner?.leaseMs ?? 0);
    const verdict = judge(seen.owner);
    if (verdict === 'alive') throw lockedError(path, seen, leaseMs, 'alive');
    if (verdict === 'unknown' && (await waitOut(path, seen, leaseMs, opts)) === 'changed') continue;
    await takeOver(path, seen, me);
  }
  const seen = await inspect(path);
  throw lockedError(path, seen ?? { target: '', owner: undefined, mtimeMs: Date.now() }, me.leaseMs, 'busy');
}

function lockedError(path: string, seen: Seen, leaseMs: number, why: 'alive' | 'renewing' | 'busy'): StorageLockedError {
  const owner = seen.owner;
  const pid = owner?.pid ?? -1;
  const who = owner ? describeOwner(owner) : 'another process';
  const ago = Math.max(0, Math.round((Date.now() - seen.mtimeMs) / 1000));
  const state = why === 'renewing' ? `, which renews its lease (last ${ago} s ago)` : why === 'alive' ? ', which is running' : '';
  const rule = owner?.legacy
    ? `stop that server, or delete ${path} if no regcache uses this storage`
    : `stop that server or choose another --storage; a lock whose holder is gone is taken over once it was not renewed for ${Math.round(leaseMs / 1000)} s (at once when the holder is provably dead); delete ${path} by hand only if no server uses this storage`;
  return new StorageLockedError(path, pid, `${who}${state}`, rule);
}

/**
 * Watches a lock whose owner cannot be checked until its lease runs out: 'expired' (take it
 * over), 'changed' (another owner or none: look again); a renewal throws StorageLockedError.
 */
async function waitOut(path: string, seen: Seen, leaseMs: number, opts: LockOptions): Promise<'expired' | 'changed'> {
  const sameClock = seen.owner !== undefined && seen.owner.boot !== '-' && seen.owner.boot === selfOwner().boot;
  const renewedAgoMs = sameClock ? Math.max(0, Date.now() - seen.mtimeMs) : undefined;
  const waitMs = renewedAgoMs !== undefined ? Math.max(0, leaseMs - renewedAgoMs) : leaseMs;
  if (waitMs === 0) return 'expired';
  opts.onWait?.({ owner: seen.owner!, renewedAgoMs, waitMs });
  const pollMs = Math.min(1000, Math.max(20, Math.floor(leaseMs / 30)));
  const start = performance.now();
  for (;;) {
    await sleep(Math.min(pollMs, Math.max(1, waitMs - (performance.now() - start))));
    const now = await inspect(path);
    if (!now || now.target !== seen.target) return 'changed';
    if (now.mtimeMs !== seen.mtimeMs) throw lockedError(path, now, leaseMs, 'renewing');
    if (performance.now() - start >= waitMs) return 'expired';
  }
}

/** Removes the lock `seen` if it is still exactly that lock, under the takeover guard. */
async function takeOver(path: string, seen: Seen, me: LockOwner): Promise<void> {
  const guard = `${path}.takeover`;
  const record = formatOwner(me);
  try {
    await symlink(record, guard);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // Another process is taking over (for milliseconds); a guard older than two lease periods was left by a crash.
    const g = await inspect(guard);
    if (g && (judge(g.owner) === 'dead' || Date.now() - g.mtimeMs > 2 * me.leaseMs)) await unlinkIf(guard, g.target);
    await sleep(10 + Math.random() * 40);
    return;
  }
  try {
    const now = await inspect(path);
    if (now && now.target === seen.target && now.mtimeMs === seen.mtimeMs) await unlink(path).catch(() => {});
  } finally {
    await unlinkIf(guard, record);
  }
}

async function unlinkIf(path: string, target: string): Promise<void> {
  const now = await readlink(path).catch(() => undefined);
  if (now === target) await unlink(path).catch(() => {});
}

// ---- holding it ----

function holdLock(path: string, key: string, owner: LockOwner, opts: LockOptions): HeldLock {
  const record = formatOwner(owner);
  let released = false;
  let renewing: Promise<void> = Promise.resolve();
  const renew = async () => {
    const target = await readlink(path).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '' : undefined));
    if (released || target === undefined) return; // a transient failure: try again next time
    if (target !== record) {
      stop();
      held.delete(key);
      const seen = await inspect(path);
      opts.onLost?.(new StorageLockLostError(path, seen?.owner ? describeOwner(seen.owner) : 'nobody'));
      return;
    }
    const now = new Date();
    await lutimes(path, now, now).catch(() => {});
  };
  const timer = setInterval(() => {
    renewing = renewing.then(renew, renew);
  }, Math.max(30, Math.floor(owner.leaseMs / 3)));
  timer.unref();
  const stop = () => {
    released = true;
    clearInterval(timer);
  };
  return {
    owner,
    async release() {
      if (released) return;
      stop();
      await renewing.catch(() => {});
      await unlinkIf(path, record);
      held.delete(key);
    },
    releaseSync() {
      if (released) return;
      stop();
      try {
        if (readlinkSync(path) === record) unlinkSync(path);
      } catch {
        // gone already
      }
      held.delete(key);
    },
  };
}
