// The servers under test, each a separate process pinned to one CPU with `taskset -c`:
// regcache (`node <SERVER_NODE_FLAGS> dist/cli.js serve`, as the Action and `npm start` run it,
// both ports on 127.0.0.1:0, address read from its --ready-file) and Debian's distribution registry (`docker-registry serve`, configured
// from bench/distribution.yml on a free loopback port). Every instance lives in its own
// temp dir (storage, config, log), is stopped by its PID (SIGTERM, SIGKILL after a grace
// period) and its temp dir removed. Also reads a server's memory from /proc/<pid>/status.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { SERVER_NODE_FLAGS, hasHeapFlags } from '../src/server/node-flags.js';
import { freePort, tailFile, terminateChild } from '../test/helpers/proc.js';

/** The repository root (bench/..). */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The bundled CLI the benchmark runs; `npm run build` makes it. */
export const REGCACHE_CLI = join(REPO_ROOT, 'dist', 'cli.js');
/** Debian's distribution binary. */
export const DISTRIBUTION_BIN = process.env.REGCACHE_DISTRIBUTION_BIN ?? '/usr/bin/docker-registry';
const DISTRIBUTION_TEMPLATE = join(REPO_ROOT, 'bench', 'distribution.yml');

const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 10_000;

/** A running server under test. */
export interface ServerHandle {
  /** 'regcache' or 'distribution' (or a section's own label). */
  readonly name: string;
  /** Base URL of the registry API, e.g. http://127.0.0.1:41234 (no trailing slash). */
  readonly url: string;
  /** PID of the server process itself (taskset execs it, so the PID is the server's). */
  readonly pid: number;
  /** The instance's temp dir (storage, config, log). */
  readonly dir: string;
  readonly storageDir: string;
  readonly logFile: string;
  /** The CPU list it is pinned to, or undefined when not pinned. */
  readonly cpu: string | undefined;
  /** Stops the process by PID and removes its temp dir; idempotent. */
  stop(): Promise<void>;
}

/** Options shared by both starters. */
export interface StartOptions {
  /** Parent directory for the instance's temp dir. */
  parentDir: string;
  /** `taskset -c` CPU list, e.g. '1'; undefined runs unpinned. */
  cpu?: string;
}

/** Options of {@link startRegcache}. */
export interface RegcacheOptions extends StartOptions {
  /** The node binary; default the one running the benchmark. */
  node?: string;
  /**
   * Extra node flags placed before the script, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/p'];
   * the server's own SERVER_NODE_FLAGS come first unless these size the old generation.
   */
  nodeArgs?: string[];
  /** Extra `regcache serve` flags. */
  serveArgs?: string[];
  /** `--storage` instead of the instance's storage dir (e.g. `s3://bucket/prefix`). */
  storage?: string;
  /** Another bundle to run instead of dist/cli.js (an A/B build of a change). */
  cli?: string;
  /** Extra environment variables, e.g. { UV_THREADPOOL_SIZE: '1' }. */
  env?: Record<string, string>;
  /**
   * Start it as the `regcache` bin does (`dist/cli.js serve` with no node flag: the bin puts the
   * server's own in place, re-executing itself, or on Node 20 running the server as a child).
   * The handle's pid is then the server's, from the ready file.
   */
  bin?: boolean;
  /** The handle's name. Default 'regcache'. */
  name?: string;
}

/** Options of {@link startDistribution}. */
export interface DistributionOptions extends StartOptions {
  /** YAML with extra top-level keys (e.g. a `proxy:` block), put in place of ${EXTRA}. */
  extraConfig?: string;
  /**
   * The storage driver's YAML, indented as keys of `storage:` (e.g. an `s3:` block), put in place
   * of ${DRIVER}; default `filesystem:` in the instance's storage dir.
   */
  driverConfig?: string;
}

/** Children still running, killed by PID should the benchmark die without stopping them. */
const live = new Map<number, ChildProcess>();
process.once('exit', () => {
  for (const pid of live.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

/** The command line that runs `cmd args` pinned to `cpu` (when given). */
export function pinned(cpu: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpu === undefined ? [cmd, args] : ['taskset', ['-c', cpu, cmd, ...args]];
}

/** Starts regcache from dist/cli.js as users do (with the server's node flags) and resolves once its registry port answers GET /v2/. */
export async function startRegcache(opts: RegcacheOptions): Promise<ServerHandle> {
  const cli = opts.cli ?? REGCACHE_CLI;
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\` first`);
  const dir = await mkdtemp(join(opts.parentDir, 'regcache-'));
  const storageDir = join(dir, 'storage');
  const readyFile = join(dir, 'ready.json');
  const logFile = join(dir, 'server.log');
  const nodeArgs = opts.nodeArgs ?? [];
  const args = [
    ...(hasHeapFlags(nodeArgs) || opts.bin ? [] : SERVER_NODE_FLAGS),
    ...nodeArgs,
    cli,
    'serve',
    '--registry-addr', '127.0.0.1:0',
    '--cache-addr', '127.0.0.1:0',
    '--storage', opts.storage ?? storageDir,
    '--log-level', 'error',
    '--ready-file', readyFile,
    ...(opts.serveArgs ?? []),
  ];
  const [cmd, argv] = pinned(opts.cpu, opts.node ?? process.execPath, args);
  const child = await spawnLogged(cmd, argv, logFile, { ...process.env, ...opts.env });
  try {
    const ready = await waitFor(READY_TIMEOUT_MS, child, logFile, async () => {
      if (!existsSync(readyFile)) return undefined;
      return JSON.parse(readFileSync(readyFile, 'utf8')) as { registry: string; pid: number };
    });
    if (ready.pid !== child.pid && !opts.bin) throw new Error(`regcache reports pid ${ready.pid}, spawned ${child.pid}: is taskset exec'ing?`);
    const url = ready.registry.replace(/\/$/, '');
    await waitFor(READY_TIMEOUT_MS, child, logFile, () => answers(url));
    return handle(opts.name ?? 'regcache', child, { url, dir, storageDir, logFile, cpu: opts.cpu, serverPid: ready.pid });
  } catch (err) {
    await terminateChild(child, STOP_GRACE_MS);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Starts distribution on a free port of 127.0.0.1 and resolves once GET /v2/ answers. */
export async function startDistribution(opts: DistributionOptions): Promise<ServerHandle> {
  const dir = await mkdtemp(join(opts.parentDir, 'distribution-'));
  const storageDir = join(dir, 'storage');
  await mkdir(storageDir);
  const template = await readFile(DISTRIBUTION_TEMPLATE, 'utf8');
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const configFile = join(dir, 'config.yml');
    const logFile = join(dir, `server-${attempt}.log`);
    await writeFile(configFile, fillTemplate(template, {
      DRIVER: opts.driverConfig ?? `  filesystem:\n    rootdirectory: ${storageDir}`,
      ADDR: `127.0.0.1:${port}`,
      SECRET: randomBytes(16).toString('hex'),
      EXTRA: opts.extraConfig ?? '',
    }));
    const [cmd, argv] = pinned(opts.cpu, DISTRIBUTION_BIN, ['serve', configFile]);
    const child = await spawnLogged(cmd, argv, logFile, { PATH: process.env.PATH ?? '/usr/bin:/bin' });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitFor(READY_TIMEOUT_MS, child, logFile, () => answers(url));
      return handle('distribution', child, { url, dir, storageDir, logFile, cpu: opts.cpu });
    } catch (err) {
      lastError = err;
      await terminateChild(child, STOP_GRACE_MS);
      // Another process may have taken the port between the probe and distribution's bind.
      if (!(await readFile(logFile, 'utf8').catch(() => '')).includes('address already in use')) break;
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}

/** Replaces every ${KEY} of the template; an unknown placeholder is an error. */
export function fillTemplate(template: string, values: Record<string, string>): string {
  return template.replace(/\$\{([A-Z_]+)\}/g, (_m, key: string) => {
    const v = values[key];
    if (v === undefined) throw new Error(`bench/distribution.yml: no value for \${${key}}`);
    return v;
  });
}

/** Memory of a process from /proc/<pid>/status, in bytes. */
export interface ProcMemory {
  /** Resident set size now. */
  rss: number;
  /** Peak resident set size (since start or the last {@link resetPeakRss}). */
  hwm: number;
}

/** Reads VmRSS and VmHWM of `pid`. */
export function readMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(m[1]) * 1024;
  };
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** The node flags of a running node process (its arguments before the script), from /proc. */
export function nodeFlagsOf(pid: number): string[] {
  const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(1);
  const script = args.findIndex((a) => a.endsWith('.js'));
  return script < 0 ? [] : args.slice(0, script);
}

/** Resets VmHWM of `pid` to its current RSS (`echo 5 > clear_refs`); false when not allowed. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Spawns `cmd` with stdout and stderr appended to `logFile` (never the benchmark's pipes). */
async function spawnLogged(cmd: string, args: string[], logFile: string, env: NodeJS.ProcessEnv): Promise<ChildProcess> {
  const log = await open(logFile, 'a');
  try {
    const child = spawn(cmd, args, { stdio: ['ignore', log.fd, log.fd], env });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    if (child.pid === undefined) throw new Error(`${cmd} has no pid`);
    live.set(child.pid, child);
    child.once('exit', () => live.delete(child.pid!));
    return child;
  } finally {
    await log.close();
  }
}

/** Polls `probe` until it returns a value, failing early when the process exits. */
async function waitFor<T>(timeoutMs: number, child: ChildProcess, logFile: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${child.spawnfile} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${tailFile(logFile, 4096)}`);
    }
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await sleep(25);
  }
  throw new Error(`${child.spawnfile} not ready within ${timeoutMs} ms:\n${tailFile(logFile, 4096)}`);
}

/** True once GET /v2/ answers with any status. */
async function answers(url: string): Promise<true | undefined> {
  const res = await request(`${url}/v2/`, { headersTimeout: 1000, bodyTimeout: 1000 });
  await res.body.dump();
  return true;
}

interface HandleParts {
  url: string;
  dir: string;
  storageDir: string;
  logFile: string;
  cpu: string | undefined;
  /** The server's pid when it is not the child's (the bin on Node 20 runs the server as its child). */
  serverPid?: number;
}

function handle(name: string, child: ChildProcess, parts: HandleParts): ServerHandle {
  let stopping: Promise<void> | undefined;
  return {
    name,
    pid: parts.serverPid ?? child.pid!,
    ...parts,
    stop() {
      stopping ??= (async () => {
        await terminateChild(child, STOP_GRACE_MS);
        // BENCH_KEEP_LOGS=<dir> keeps each server's log (e.g. of --regcache-node-args=--trace-gc).
        const keep = process.env.BENCH_KEEP_LOGS;
        if (keep) await copyFile(parts.logFile, join(keep, `${name}-${child.pid}.log`)).catch(() => {});
        await rm(parts.dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
