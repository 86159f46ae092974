// Which external programs the end-to-end tests may drive, how to run them without touching
// the user's own state, and what to do when one is missing. Locally a missing tool (or not
// being root) skips the test with a message; under CI (env CI set) it throws instead, so a
// broken CI image fails loudly instead of going green.
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import type { TestContext } from 'node:test';

/** The external programs the harness knows about. */
export type ToolName =
  | 'docker'
  | 'docker-compose'
  | 'docker-init'
  | 'dockerd'
  | 'containerd'
  | 'containerd-shim-runc-v2'
  | 'runc'
  | 'ctr'
  | 'skopeo'
  | 'docker-registry'
  | 'busybox'
  | 'strace'
  | 'zstd'
  | 'openssl'
  | 'umount'
  | 'unshare'
  | 'ceph-mon'
  | 'ceph-osd'
  | 'radosgw'
  | 'radosgw-admin'
  | 'ceph';

/**
 * Absolute paths tried before PATH. The docker client is pinned to Debian's 20.10 client:
 * a newer client elsewhere on PATH (e.g. /usr/local/bin/docker 28.x) wants buildx for builds.
 */
const PREFERRED: Partial<Record<ToolName, readonly string[]>> = {
  docker: ['/usr/bin/docker'],
  busybox: ['/bin/busybox', '/usr/bin/busybox'],
};

/** Also searched for sbin tools (dockerd, runc), which are not on every user's PATH. */
const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

const cache = new Map<ToolName, string | undefined>();

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function lookup(name: ToolName): string | undefined {
  const candidates = [...(PREFERRED[name] ?? [])];
  const dirs = [...(process.env.PATH ?? '').split(delimiter), ...SBIN];
  for (const dir of dirs) if (dir && isAbsolute(dir)) candidates.push(join(dir, name));
  return candidates.find(isExecutable);
}

/** True when running under CI (env CI set to anything but "" / "0" / "false"). */
export function inCI(): boolean {
  const v = process.env.CI;
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

/** True when the process runs as root (dockerd and containerd need it). */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Absolute path of a tool, or undefined when it is not installed. Cached per process. */
export function findTool(name: ToolName): string | undefined {
  if (!cache.has(name)) cache.set(name, lookup(name));
  return cache.get(name);
}

/** True when the tool is installed and executable. */
export function toolAvailable(name: ToolName): boolean {
  return findTool(name) !== undefined;
}

/** Absolute path of a tool; throws when it is missing (use after requireTool/skipUnless). */
export function toolPath(name: ToolName): string {
  const p = findTool(name);
  if (p === undefined) throw new Error(`required tool "${name}" is not installed`);
  return p;
}

/** Why the given tools cannot be used (missing tools, and not root when needsRoot), or undefined. */
export function missingPrerequisites(names: readonly ToolName[], needsRoot = false): string | undefined {
  const missing = names.filter((n) => !toolAvailable(n));
  const reasons: string[] = [];
  if (missing.length > 0) reasons.push(`missing tools: ${missing.join(', ')}`);
  if (needsRoot && !isRoot()) reasons.push('not running as root');
  return reasons.length > 0 ? reasons.join('; ') : undefined;
}

/**
 * Inside a test: true when every tool is installed. Otherwise, under CI it throws; locally it
 * marks the test skipped and returns false, so write `if (!requireTool(t, 'skopeo')) return;`.
 */
export function requireTool(t: TestContext, ...names: ToolName[]): boolean {
  return settle(t, missingPrerequisites(names));
}

/** Like requireTool, for running as root: skips locally, throws under CI. */
export function requireRoot(t: TestContext): boolean {
  return settle(t, missingPrerequisites([], true));
}

/**
 * For node:test's `skip` option on a test or suite: false when every tool is there (and root,
 * if asked for); otherwise a skip reason locally, and under CI it throws, which fails the
 * whole test file with the reason.
 */
export function skipUnless(names: readonly ToolName[], opts: { root?: boolean } = {}): string | false {
  const reason = missingPrerequisites(names, opts.root ?? false);
  if (reason === undefined) return false;
  if (inCI()) throw new Error(`CI is set and a test prerequisite is absent: ${reason}`);
  return reason;
}

function settle(t: TestContext, reason: string | undefined): boolean {
  if (reason === undefined) return true;
  if (inCI()) throw new Error(`CI is set and a test prerequisite is absent: ${reason}`);
  t.skip(reason);
  return false;
}

/** Directories where daemons find runc, containerd-shim-runc-v2 and docker-init. */
const DAEMON_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * Environment for a daemon (dockerd, containerd): this process's environment with sbin dirs
 * on PATH and without variables that would point it at someone else's daemon or systemd.
 */
export function daemonEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) {
    if (/^(DOCKER_|CONTAINERD_|NOTIFY_SOCKET$|LISTEN_)/.test(key)) delete env[key];
  }
  const path = (env.PATH ?? '').split(delimiter).filter(Boolean);
  env.PATH = [...path, ...DAEMON_PATH.filter((d) => !path.includes(d))].join(delimiter);
  return { ...env, ...extra };
}

/**
 * Environment for a client tool whose state must stay in `dir` instead of the user's home or
 * /var/lib: HOME and XDG dirs, DOCKER_CONFIG, skopeo's auth file and its blob-info cache
 * (containers/image keeps that in /var/lib/containers/cache for root unless it believes it
 * runs rootless, hence _CONTAINERS_ROOTLESS_UID). No DOCKER_HOST: add it for the docker CLI.
 */
export function privateToolEnv(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = daemonEnv();
  return {
    ...env,
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, '.config'),
    XDG_DATA_HOME: join(dir, '.local', 'share'),
    XDG_RUNTIME_DIR: dir,
    XDG_CACHE_HOME: join(dir, '.cache'),
    DOCKER_CONFIG: join(dir, '.docker'),
    REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
    _CONTAINERS_ROOTLESS_UID: '1000',
    ...extra,
  };
}
