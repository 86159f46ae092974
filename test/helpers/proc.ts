// Child processes and scratch space for end-to-end tests that drive real software.
// Rules this module enforces: long-running programs log to a file (never the test's pipes),
// are stopped by PID (SIGTERM, then SIGKILL after a timeout) and awaited; scratch space lives
// in private temp dirs that are unmounted and removed on cleanup; ports come from the kernel
// on 127.0.0.1. A process 'exit' hook sends SIGTERM to anything still running, so a crashed
// test file does not leave daemons behind.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findTool } from './tools.js';

/** How a process ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A long-running child process started by startProcess. */
export interface ChildHandle {
  /** Short name used in messages. */
  readonly name: string;
  readonly pid: number;
  /** File that receives the child's stdout and stderr. */
  readonly logFile: string;
  /** Settles when the child has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  /** The exit status once exited, else undefined. */
  exitInfo(): ExitInfo | undefined;
  /** The log so far (last `maxBytes` bytes, default 64 KiB). */
  log(maxBytes?: number): string;
  /** SIGTERM, then SIGKILL after timeoutMs (default 15 s); resolves once it has exited. Idempotent. */
  stop(timeoutMs?: number): Promise<ExitInfo>;
}

/** Options for startProcess. */
export interface StartOptions {
  /** Name used in messages; defaults to the command's base name. */
  name?: string;
  /** Log file path (appended to). Required: daemons must never write to the test's pipes. */
  logFile: string;
  cwd?: string;
  /** Full environment for the child; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * Run the program under docker-init (tini) as `docker-init -s -p SIGTERM -- cmd ...args`
   * when docker-init is installed: a subreaper that reaps the program's orphans (containerd
   * shims would otherwise linger as zombies under a PID 1 that does not reap), forwards the
   * signals sent to the handle's pid, and sends SIGTERM to the program should this process
   * die without stopping it. The handle's pid is then tini's.
   */
  supervise?: boolean;
}

/** Live children, for the process-exit safety net. */
const live = new Map<number, string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pid of live.keys()) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  });
}

/** Reads the last maxBytes of a file as text ('' when it does not exist). */
export function tailFile(path: string, maxBytes = 64 * 1024): string {
  try {
    const buf = readFileSync(path);
    return buf.subarray(Math.max(0, buf.length - maxBytes)).toString('utf8');
  } catch {
    return '';
  }
}

/** Sends SIGTERM to a child, SIGKILL after `graceMs`, and resolves once it has exited. */
export async function terminateChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Starts a long-running program with stdout+stderr appended to opts.logFile. */
export async function startProcess(cmd: string, args: readonly string[], opts: StartOptions): Promise<ChildHandle> {
  const name = opts.name ?? cmd.split('/').pop() ?? cmd;
  const init = opts.supervise ? findTool('docker-init') : undefined;
  const argv = init ? [init, '-s', '-p', 'SIGTERM', '--', cmd, ...args] : [cmd, ...args];
  const fd = openSync(opts.logFile, 'a');
  let child;
  try {
    child = spawn(argv[0]!, argv.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject(new Error(`cannot start ${name} (${cmd}): ${err.message}`)));
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${name}: no pid`);
  installExitHook();
  live.set(pid, name);
  let info: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      info = { code, signal };
      live.delete(pid);
      resolve(info);
    });
  });
  let stopping: Promise<ExitInfo> | undefined;
  return {
    name,
    pid,
    logFile: opts.logFile,
    exited,
    exitInfo: () => info,
    log: (maxBytes?: number) => tailFile(opts.logFile, maxBytes),
    stop(timeoutMs = 15_000) {
      stopping ??= stopChild(pid, exited, timeoutMs, init !== undefined);
      return stopping;
    },
  };
}

/** SIGTERM, SIGKILL after timeoutMs (to the supervised program first: tini would not pass it on). */
async function stopChild(pid: number, exited: Promise<ExitInfo>, timeoutMs: number, supervised: boolean): Promise<ExitInfo> {
  signal(pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (supervised) for (const c of childPids(pid)) signal(c, 'SIGKILL');
    signal(pid, 'SIGKILL');
  }, timeoutMs);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** PIDs whose parent is `pid` (from /proc/<pid>/stat). */
export function childPids(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // "pid (comm) state ppid ...": comm may contain spaces and parentheses
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) found.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * True while a process with this PID runs. A zombie counts as gone: orphans (such as
 * containerd shims) are reparented to PID 1, and not every PID 1 reaps them promptly.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces and parentheses
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Stops a process by PID that need not be our child: SIGTERM, then SIGKILL after timeoutMs,
 * then waits (up to 5 s more) until the PID is gone. Resolves false if it never went away.
 */
export async function stopPid(pid: number, timeoutMs = 15_000): Promise<boolean> {
  if (!signal(pid, 'SIGTERM')) return true;
  if (await pollGone(pid, timeoutMs)) return true;
  signal(pid, 'SIGKILL');
  return pollGone(pid, 5_000);
}

async function pollGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (pidAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

/**
 * PIDs (other than this process) with `dir`, or a path below it, on their command line: the
 * daemons given that dir and their leftovers (containerd shims name their containerd's socket).
 */
export function processesUnder(dir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid || !pidAlive(pid)) continue;
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (args.some((a) => within(a, dir))) found.push(pid);
    } catch {
      // exited meanwhile, or not ours to read
    }
  }
  return found;
}

/** True when `text` is `dir` or mentions a path below it. */
function within(text: string, dir: string): boolean {
  return text === dir || text.includes(dir + '/');
}

/** Stops every process found by processesUnder(dir), by PID. Returns the PIDs it stopped. */
export async function stopProcessesUnder(dir: string, timeoutMs = 5_000): Promise<number[]> {
  const pids = processesUnder(dir);
  await Promise.all(pids.map((pid) => stopPid(pid, timeoutMs)));
  return pids;
}

/** Options for waitFor. */
export interface WaitOptions {
  /** Give up after this long (default 20 s). */
  timeoutMs?: number;
  /** Pause between attempts (default 50 ms). */
  intervalMs?: number;
  /** What is awaited, for the timeout message. */
  what?: string;
  /** Fail fast (with its log tail) if this process exits while waiting. */
  process?: ChildHandle;
}

/**
 * Calls `probe` until it returns a value other than undefined/false (a throw counts as "not
 * yet"); returns that value. Throws on timeout, or at once if opts.process exits meanwhile.
 */
export async function waitFor<T>(probe: () => Promise<T | undefined | false> | T | undefined | false, opts: WaitOptions = {}): Promise<T> {
  const { timeoutMs = 20_000, intervalMs = 50, what = 'condition', process: child } = opts;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    const exit = child?.exitInfo();
    if (child && exit) throw new Error(`${child.name} exited (${describeExit(exit)}) while waiting for ${what}\n--- ${child.logFile} ---\n${child.log(8192)}`);
    if (Date.now() > deadline) {
      const cause = lastError instanceof Error ? `: ${lastError.message}` : '';
      const log = child ? `\n--- ${child.logFile} ---\n${child.log(8192)}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}${log}`);
    }
    await sleep(intervalMs);
  }
}

function describeExit(e: ExitInfo): string {
  return e.signal ? `signal ${e.signal}` : `code ${e.code}`;
}

/** A minimal HTTP response: status, headers and body text. */
export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One GET over TCP, or over a unix socket when socketPath is given (url then supplies the path). */
export function httpGet(url: string, opts: { socketPath?: string; timeoutMs?: number } = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', socketPath: opts.socketPath, timeout: opts.timeoutMs ?? 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Polls GET url until it answers with one of `statuses` (default: any status below 500).
 * Pass socketPath for HTTP over a unix socket (e.g. dockerd's /_ping).
 */
export function waitForHttp(url: string, opts: WaitOptions & { socketPath?: string; statuses?: readonly number[] } = {}): Promise<HttpResult> {
  const ok = (s: number) => (opts.statuses ? opts.statuses.includes(s) : s > 0 && s < 500);
  return waitFor(async () => {
    const r = await httpGet(url, { socketPath: opts.socketPath, timeoutMs: 2_000 });
    if (!ok(r.status)) throw new Error(`status ${r.status}`);
    return r;
  }, { what: `GET ${url}${opts.socketPath ? ` via ${opts.socketPath}` : ''}`, ...opts });
}

/** Polls until a unix socket accepts a connection (the connection is closed at once). */
export function waitForSocket(path: string, opts: WaitOptions = {}): Promise<true> {
  return waitFor(() => new Promise<true>((resolve, reject) => {
    const s = createConnection(path, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', reject);
  }), { what: `unix socket ${path}`, ...opts });
}

/**
 * A currently free TCP port on 127.0.0.1 (bind port 0, read it, close). Only for external
 * software that cannot listen on port 0 and report the port; our own servers use port 0.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** A private scratch directory. */
export interface TempDir {
  readonly path: string;
  /** Stops leftover processes under it, unmounts leftover mounts under it, removes it. Idempotent. */
  cleanup(): Promise<void>;
}

/** File in each temp dir holding the PID of the process that created it. */
const OWNER_FILE = '.owner-pid';

function tempBase(): string {
  return tmpdir().length <= 40 ? tmpdir() : '/tmp';
}

/**
 * Creates a private temp dir `<base>/<prefix>XXXXXX`. The base is os.tmpdir() unless that is
 * long, then /tmp: unix socket paths inside must stay under 108 bytes. Pass a TestContext to
 * have it cleaned up after the test. The dir records its creator's PID (see abandonedTempDirs).
 */
export async function tempDir(prefix: string, t?: { after(fn: () => Promise<void>): void }): Promise<TempDir> {
  const path = await mkdtemp(join(tempBase(), prefix));
  await writeFile(join(path, OWNER_FILE), String(process.pid));
  let done: Promise<void> | undefined;
  const dir: TempDir = { path, cleanup: () => (done ??= removeTempTree(path)) };
  t?.after(() => dir.cleanup());
  return dir;
}

/**
 * Temp dirs with this prefix whose creating process is gone: left behind by a test process
 * that was killed before it could clean up. Dirs of live processes are never listed.
 */
export async function abandonedTempDirs(prefix: string): Promise<string[]> {
  const base = tempBase();
  const found: string[] = [];
  for (const name of await readdir(base).catch(() => [] as string[])) {
    if (!name.startsWith(prefix)) continue;
    const owner = Number(await readFile(join(base, name, OWNER_FILE), 'utf8').catch(() => ''));
    if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) found.push(join(base, name));
  }
  return found;
}

/** Stops leftover processes under `path` (by PID), unmounts what is mounted below it, removes it. */
export async function removeTempTree(path: string): Promise<void> {
  await stopProcessesUnder(path);
  await unmountUnder(path);
  await rm(path, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

/** Mount points at or below `dir`, deepest first (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const points = text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(dir + '/'));
  return points.sort((a, b) => b.length - a.length);
}

/** Lazily unmounts (umount -l) whatever is still mounted under dir, e.g. after a daemon was killed. */
export async function unmountUnder(dir: string): Promise<void> {
  for (const point of mountsUnder(dir)) await run('umount', ['-l', point], { allowFail: true });
}

/** Result of run(). */
export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Options for run(). */
export interface RunOptions {
  /** Resolve with the nonzero code instead of throwing. */
  allowFail?: boolean;
  /** Full environment for the command; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to stdin (then closed). */
  input?: string | Buffer;
  /** SIGKILL the command after this long (default 120 s) and throw. */
  timeoutMs?: number;
}

/**
 * Runs a short command to completion and captures its output. Throws (with stderr) when it
 * exits nonzero unless allowFail, when it cannot start, or when it times out.
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const { timeoutMs = 120_000 } = opts;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      const r = { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), code: code ?? -1 };
      const line = [cmd, ...args].join(' ');
      if (timedOut) reject(new Error(`timed out after ${timeoutMs} ms: ${line}\n${r.stderr}`));
      else if (r.code !== 0 && !opts.allowFail) reject(new Error(`exit ${code ?? sig}: ${line}\n${r.stderr || r.stdout}`));
      else resolve(r);
    });
    child.stdin.on('error', () => {}); // EPIPE when the command does not read stdin
    child.stdin.end(opts.input);
  });
}
