// A private containerd for end-to-end tests, and hosts.toml files for `ctr --hosts-dir`.
// Each instance has its own root, state, gRPC/ttrpc sockets, opt dir and containerd namespace
// (which is also the cgroup its containers run in), loads no CRI plugin, and leaves nothing
// running after stop(). startDockerd() runs its dockerd on one of these, so a system
// containerd (as on GitHub's runners) is never shared. Instances abandoned by a killed test
// process are swept away by the next start.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { stringify } from 'smol-toml';
import {
  type ChildHandle,
  type RunOptions,
  type RunResult,
  abandonedTempDirs,
  pidAlive,
  removeTempTree,
  run,
  startProcess,
  stopProcessesUnder,
  tempDir,
  unmountUnder,
  waitForSocket,
} from './proc.js';
import { daemonEnv, toolPath } from './tools.js';

/** A running private containerd. */
export interface Containerd {
  /** Path of the gRPC unix socket (pass as `ctr -a` / dockerd `--containerd`). */
  readonly address: string;
  /** PID of the process started: containerd, or docker-init supervising it (see startProcess). */
  readonly pid: number;
  /** Directory holding everything of this instance. */
  readonly dir: string;
  readonly root: string;
  readonly state: string;
  readonly configFile: string;
  readonly logFile: string;
  /**
   * The containerd namespace ctr() uses unless told otherwise, `regcache-<random>`: unique per
   * instance, and the cgroup `/<namespace>` its containers run in (killed on stop).
   */
  readonly namespace: string;
  /**
   * Flags for `ctr run` that keep its IO FIFOs and runc state in this instance's dir instead of
   * /run/containerd: `ctr(['run', ...c.runFlags, '--rm', image, id, ...cmd])`.
   */
  readonly runFlags: readonly string[];
  /** Runs `ctr -a <address> -n <namespace> ...args`; throws with stderr on nonzero unless allowFail. */
  ctr(args: readonly string[], opts?: CtrOptions): Promise<RunResult>;
  /** Kills running tasks, stops containerd by PID and any shim left, removes its files. Idempotent. */
  stop(): Promise<void>;
}

/** Options for Containerd.ctr. */
export interface CtrOptions extends RunOptions {
  /** containerd namespace for this command (default: the instance's namespace). */
  namespace?: string;
}

/** Options for startContainerd. */
export interface ContainerdOptions {
  /**
   * Put the instance in this existing directory (owned by the caller, not removed on stop).
   * Default: a fresh temp dir that stop() removes.
   */
  dir?: string;
}

/** Temp dir prefixes of the instances startContainerd and startDockerd create. */
const PREFIX = 'rc-ctrd-';
export const DOCKERD_PREFIX = 'rc-dockerd-';
/** File in an instance dir naming its containerd namespace, which is also its cgroup name. */
const NAMESPACE_FILE = 'namespace';

/** Snapshotters that only log errors on a plain ext4/tmpfs host. */
const DISABLED_PLUGINS = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs',
];

/** The config file of an instance rooted at `dir`. */
function containerdConfig(dir: string, address: string): string {
  return stringify({
    version: 2,
    root: join(dir, 'root'),
    state: join(dir, 'state'),
    disabled_plugins: DISABLED_PLUGINS,
    grpc: { address },
    ttrpc: { address: `${address}.ttrpc` },
    plugins: { 'io.containerd.internal.v1.opt': { path: join(dir, 'opt') } },
  });
}

/** Starts a private containerd and waits until its socket accepts connections. */
export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  if (opts.dir === undefined) await sweepAbandonedInstances();
  const owned = opts.dir === undefined ? await tempDir(PREFIX) : undefined;
  const dir = opts.dir ?? owned!.path;
  const address = join(dir, 'containerd.sock');
  if (Buffer.byteLength(`${address}.ttrpc`) >= 108) throw new Error(`unix socket path too long: ${address}`);
  const configFile = join(dir, 'containerd.toml');
  await writeFile(configFile, containerdConfig(dir, address));
  const namespace = `regcache-${randomBytes(4).toString('hex')}`;
  await recordNamespace(dir, namespace);
  let child: ChildHandle | undefined;
  try {
    child = await startProcess(toolPath('containerd'), ['--config', configFile, '--log-level', 'info'], {
      name: 'containerd',
      logFile: join(dir, 'containerd.log'),
      env: daemonEnv(),
      supervise: true, // reaps the shims, which containerd leaves to the nearest subreaper
    });
    await waitForSocket(address, { process: child, what: 'containerd socket' });
  } catch (err) {
    await child?.stop();
    await owned?.cleanup();
    throw err;
  }
  return makeInstance({ child, dir, address, configFile, namespace, cleanup: owned?.cleanup });
}

interface Parts {
  child: ChildHandle;
  dir: string;
  address: string;
  configFile: string;
  namespace: string;
  cleanup: (() => Promise<void>) | undefined;
}

function makeInstance(p: Parts): Containerd {
  const ctr = (args: readonly string[], o: CtrOptions = {}) =>
    run(toolPath('ctr'), ['-a', p.address, '-n', o.namespace ?? p.namespace, ...args], o);
  let stopping: Promise<void> | undefined;
  return {
    address: p.address,
    pid: p.child.pid,
    dir: p.dir,
    root: join(p.dir, 'root'),
    state: join(p.dir, 'state'),
    configFile: p.configFile,
    logFile: p.child.logFile,
    namespace: p.namespace,
    runFlags: ['--fifo-dir', join(p.dir, 'fifo'), '--runc-root', join(p.dir, 'runc')],
    ctr,
    stop: () => (stopping ??= shutdown(p, ctr)),
  };
}

async function shutdown(p: Parts, ctr: Containerd['ctr']): Promise<void> {
  if (!p.child.exitInfo()) await killAllTasks(ctr);
  await p.child.stop();
  await stopProcessesUnder(p.dir); // shims of tasks that would not die
  await unmountUnder(p.dir);
  await killCgroup(p.namespace);
  await p.cleanup?.();
}

/** SIGKILLs and deletes every task in every namespace of this containerd. */
async function killAllTasks(ctr: Containerd['ctr']): Promise<void> {
  const ls = await ctr(['namespaces', 'ls', '-q'], { allowFail: true, timeoutMs: 10_000 });
  const namespaces = ls.stdout.split('\n').filter(Boolean);
  for (const ns of namespaces) {
    const tasks = await ctr(['tasks', 'ls', '-q'], { namespace: ns, allowFail: true, timeoutMs: 10_000 });
    for (const id of tasks.stdout.split('\n').filter(Boolean)) {
      await ctr(['tasks', 'kill', '-a', '-s', 'SIGKILL', id], { namespace: ns, allowFail: true, timeoutMs: 10_000 });
      await ctr(['tasks', 'delete', '-f', id], { namespace: ns, allowFail: true, timeoutMs: 10_000 });
    }
  }
}

/** Records in `dir` which cgroup its containers live in, for sweepAbandonedInstances. */
export async function recordNamespace(dir: string, namespace: string): Promise<void> {
  await writeFile(join(dir, NAMESPACE_FILE), namespace);
}

/**
 * Cleans up after test processes that died without stopping their daemons (SIGKILL, a runner
 * timeout): for each abandoned dockerd/containerd temp dir, kills the processes of its cgroup
 * (containers), stops processes under the dir (daemons, shims), unmounts and removes it.
 * startContainerd and startDockerd call it; instances of live processes are left alone.
 */
export async function sweepAbandonedInstances(): Promise<void> {
  for (const prefix of [DOCKERD_PREFIX, PREFIX]) {
    for (const dir of await abandonedTempDirs(prefix)) {
      const recorded = (await readFile(join(dir, NAMESPACE_FILE), 'utf8').catch(() => '')).trim();
      const ns = /^regcache-[0-9a-f]+$/.test(recorded) ? recorded : undefined;
      if (ns) await killCgroup(ns);
      await removeTempTree(dir);
      if (ns) await killCgroup(ns);
    }
  }
}

/** PIDs in the cgroup `/<name>` and below, in every hierarchy. */
async function cgroupPids(name: string): Promise<number[]> {
  const pids = new Set<number>();
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (e.isDirectory()) await walk(join(dir, e.name));
      else if (e.name === 'cgroup.procs') {
        const text = await readFile(join(dir, e.name), 'utf8').catch(() => '');
        for (const line of text.split('\n')) if (line) pids.add(Number(line));
      }
    }
  };
  for (const root of await cgroupRoots()) await walk(join(root, name));
  return [...pids];
}

/**
 * SIGKILLs every process in the cgroup `/<name>` (containers of a dockerd --cgroup-parent or
 * of a containerd namespace), waits until they are gone, then removes the cgroups. Only takes
 * the names these helpers generate (`regcache-<hex>`).
 */
export async function killCgroup(name: string): Promise<void> {
  if (!/^regcache-[0-9a-f]+$/.test(name)) throw new Error(`refusing to kill cgroup ${JSON.stringify(name)}: not one of ours`);
  for (let round = 0; round < 50; round++) {
    const pids = (await cgroupPids(name)).filter(pidAlive);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await sleep(50);
  }
  await removeCgroup(name);
}

/** The cgroup v2 root and each v1 hierarchy under /sys/fs/cgroup. */
async function cgroupRoots(): Promise<string[]> {
  const hierarchies = await readdir('/sys/fs/cgroup', { withFileTypes: true }).catch(() => []);
  return ['/sys/fs/cgroup', ...hierarchies.filter((d) => d.isDirectory()).map((d) => join('/sys/fs/cgroup', d.name))];
}

/**
 * Removes the cgroup `/<name>` and its child cgroups (which must hold no process) that runc
 * created for a containerd namespace or a dockerd --cgroup-parent (BuildKit adds `buildkit/`
 * below it), under cgroup v2 and under each v1 hierarchy. Best effort.
 */
export async function removeCgroup(name: string): Promise<void> {
  for (const root of await cgroupRoots()) await removeCgroupTree(join(root, name));
}

async function removeCgroupTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => undefined);
  if (entries === undefined) return;
  for (const e of entries) if (e.isDirectory()) await removeCgroupTree(join(dir, e.name));
  await rmdir(dir).catch(() => undefined);
}

/** Options for writeHostsToml. */
export interface HostsTomlOptions {
  /** Upstream tried after the mirror (`server = ...`); omitted: containerd's default for the host. */
  server?: string;
  /** Capabilities of the mirror; default ["pull", "resolve"]. */
  capabilities?: readonly ('pull' | 'resolve' | 'push')[];
  /** Do not verify the mirror's TLS certificate. */
  skipVerify?: boolean;
  /** Extra request headers containerd sends to the mirror (`[host."<url>".header]`). */
  header?: Record<string, string>;
}

/**
 * Writes `<dir>/<registryHost>/hosts.toml` so that `ctr images pull --hosts-dir <dir>` resolves
 * and pulls `registryHost` (e.g. "docker.io" or "127.0.0.1:5000") through `mirrorUrl`
 * (e.g. "http://127.0.0.1:5001"; containerd appends `?ns=<registryHost>`). Returns the file path.
 */
export async function writeHostsToml(dir: string, registryHost: string, mirrorUrl: string, opts: HostsTomlOptions = {}): Promise<string> {
  const host: Record<string, unknown> = { capabilities: [...(opts.capabilities ?? ['pull', 'resolve'])] };
  if (opts.skipVerify) host.skip_verify = true;
  if (opts.header) host.header = { ...opts.header };
  const doc: Record<string, unknown> = { host: { [mirrorUrl]: host } };
  if (opts.server !== undefined) doc.server = opts.server;
  const hostDir = join(dir, registryHost);
  await mkdir(hostDir, { recursive: true });
  const file = join(hostDir, 'hosts.toml');
  await writeFile(file, stringify(doc));
  return file;
}
