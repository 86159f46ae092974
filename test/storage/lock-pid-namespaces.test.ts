// The storage lock across PID namespaces, as in containers: `regcache serve` (dist/cli.js) run
// under `unshare -p -f --mount-proc`, where it is PID 1 of a namespace of its own with its own
// /proc, next to servers on the host. A second server on a held storage is refused, naming the
// holder; after `kill -9` of a server that was PID 1, a server started in a new namespace, and
// one on the host, both take the storage over within one lease period (there used to be no
// way out: "in use by process 1" forever, PID 1 being always alive). Root only (unshare).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { request } from 'undici';
import { type ServeHandle, kill9, sha256, startServe, stopServe } from '../helpers/crash.js';
import { pushBlob } from '../helpers/fault-proxy.js';
import { childPids, tempDir } from '../helpers/proc.js';
import { skipUnless, toolPath } from '../helpers/tools.js';

/** Short for the test, long enough for a loaded machine to renew in time (every third of it). */
const LEASE_MS = 3_000;
const env = { REGCACHE_LOCK_LEASE_MS: String(LEASE_MS) };

/** The PID namespace of `pid` (the inode of /proc/<pid>/ns/pid). */
async function pidNamespace(pid: number | 'self'): Promise<number> {
  return Number(/\[(\d+)\]/.exec(await readlink(`/proc/${pid}/ns/pid`))![1]);
}

/**
 * Starts a server as PID 1 of a new PID namespace. The handle's pid is the server's pid on the
 * host (the ready file says 1), so that stopping or killing it never reaches the host's PID 1.
 */
async function startInPidNamespace(o: { storage: string; dir: string }): Promise<ServeHandle> {
  const s = await startServe({ ...o, env, logLevel: 'info', wrapper: [toolPath('unshare'), '--pid', '--fork', '--mount-proc', '--kill-child'] });
  assert.equal(s.pid, 1, 'the server is PID 1 of its namespace');
  const [hostPid] = childPids(s.child.pid);
  assert.ok(hostPid, 'unshare has forked the server');
  assert.notEqual(await pidNamespace(hostPid), await pidNamespace('self'));
  return { ...s, pid: hostPid };
}

/** A server on the host. */
function startOnHost(o: { storage: string; dir: string }): Promise<ServeHandle> {
  return startServe({ ...o, env, logLevel: 'info' });
}

/** Stops every server of the test that still runs (registered before the temp dir, so run first). */
function cleanup(t: TestContext, servers: ServeHandle[]): void {
  t.after(async () => {
    for (const s of servers) await stopServe(s).catch(() => {});
  });
}

describe('storage lock across PID namespaces', { skip: skipUnless(['unshare'], { root: true }), concurrency: false }, () => {
  test('a server in another PID namespace on a held storage is refused, naming the holder in its namespace', { timeout: 60_000 }, async (t) => {
    const servers: ServeHandle[] = [];
    cleanup(t, servers);
    const dir = await tempDir('rc-lock-ns-', t);
    const storage = join(dir.path, 'storage');
    const holder = await startInPidNamespace({ storage, dir: dir.path });
    servers.push(holder);
    const ns = await pidNamespace(holder.pid);

    const refused = await startInPidNamespace({ storage, dir: dir.path }).then(
      (s) => (servers.push(s), undefined),
      (err: Error) => err.message,
    );
    assert.ok(refused !== undefined, 'a second server started on the held storage');
    assert.match(refused, /exited \(code 1\)/);
    assert.match(refused, new RegExp(`storage ${storage} is in use by process 1 on host ${hostname().slice(0, 8)}\\S* \\(this machine, PID namespace ${ns}\\), which renews its lease`));
    // The holder serves on.
    assert.equal((await request(`${holder.registry}/v2/`)).statusCode, 200);
  });

  test('a server on the host, next to a holder in a PID namespace, is refused too, and the other way round', { timeout: 60_000 }, async (t) => {
    const servers: ServeHandle[] = [];
    cleanup(t, servers);
    const dir = await tempDir('rc-lock-ns-', t);
    const inNs = await startInPidNamespace({ storage: join(dir.path, 'a'), dir: dir.path });
    servers.push(inNs);
    await assert.rejects(startOnHost({ storage: join(dir.path, 'a'), dir: dir.path }), /is in use by process 1 on host .*, which renews its lease/);

    const onHost = await startOnHost({ storage: join(dir.path, 'b'), dir: dir.path });
    servers.push(onHost);
    await assert.rejects(startInPidNamespace({ storage: join(dir.path, 'b'), dir: dir.path }), new RegExp(`is in use by process ${onHost.pid} on host .*, which renews its lease`));
  });

  test('after kill -9 of a server that is PID 1, a server in a new namespace and then one on the host take the storage over within a lease period', { timeout: 120_000 }, async (t) => {
    const servers: ServeHandle[] = [];
    cleanup(t, servers);
    const dir = await tempDir('rc-lock-ns-', t);
    const storage = join(dir.path, 'storage');
    const blob = randomBytes(64 * 1024);

    const first = await startInPidNamespace({ storage, dir: dir.path });
    servers.push(first);
    const digest = await pushBlob(first.registry, 'ns/kill', blob);
    await kill9(first);
    const logAtKill = (await readFile(first.child.logFile, 'utf8')).length;
    // The next server waits for the dead server's lease to run out (it cannot see the dead
    // namespace), at most one lease period from the last renewal, and says so; at once if it
    // gets there later.
    const second = await startInPidNamespace({ storage, dir: dir.path });
    servers.push(second);
    assertWaitedAtMostALease((await readFile(second.child.logFile, 'utf8')).slice(logAtKill), storage);
    const got = await request(`${second.registry}/v2/ns/kill/blobs/${digest}`);
    assert.equal(sha256(Buffer.from(await got.body.arrayBuffer())), digest);

    await kill9(second);
    const logBefore = (await readFile(second.child.logFile, 'utf8')).length;
    const third = await startOnHost({ storage, dir: dir.path });
    servers.push(third);
    assertWaitedAtMostALease((await readFile(third.child.logFile, 'utf8')).slice(logBefore), storage);
    assert.match(await readlink(join(storage, 'lock')), new RegExp(`^${third.pid} `));
    const again = await request(`${third.registry}/v2/ns/kill/blobs/${digest}`);
    assert.equal(sha256(Buffer.from(await again.body.arrayBuffer())), digest);
  });
});

/**
 * The server waited for the dead holder's lease no longer than the lease period, if at all
 * (when it got to the lock after the lease had run out, it took it over at once).
 */
function assertWaitedAtMostALease(log: string, storage: string): void {
  const waits = [...log.matchAll(new RegExp(`storage ${storage} is locked by process 1 .*; waiting up to ([\\d.]+) s for it to run out`, 'g'))];
  for (const w of waits) assert.ok(Number(w[1]) * 1000 <= LEASE_MS, `waited up to ${w[1]} s, more than the lease period:\n${log}`);
  assert.ok(waits.length <= 1, `one wait at most:\n${log}`);
}
