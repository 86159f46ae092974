// Starts the regcache server as a detached process that outlives the step (stdout and stderr
// to a log file, never the step's pipes: the runner waits for every holder of those; stdin a
// pipe of our own when the persistence index is handed over on it), waits until both ports
// answer, and stops it gracefully in post. Node gets the server's flags
// (server/node-flags.ts) on the command line, the only place it takes heap sizes from.
import { spawn } from 'node:child_process';
import { openSync, closeSync, existsSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVER_NODE_FLAGS } from '../server/node-flags.js';

/** What the started server reports. */
export interface StartedServer {
  pid: number;
  registryUrl: string;
  cacheUrl: string;
}

/** How to start the server. */
export interface SpawnOptions {
  registryAddr: string;
  cacheAddr: string;
  storage: string;
  logFile: string;
  statsFile: string;
  readyFile: string;
  upstreams: string[];
  tagTtlMs: number;
  logLevel: string;
  /** Upstream credentials, handed over in the environment (never on the command line). */
  credentials: string[];
  /**
   * A restored persistence index for the server to import: a file, or the index's text still
   * being restored, handed over on the server's stdin once there (the server starts meanwhile).
   */
  persistIndex?: string | Promise<string>;
  prefetch?: boolean;
  /** Import the index's :5000 registry part (the `persist-registry` input). */
  persistRegistry?: boolean;
}

/** Longest wait for the index to be handed over (its restore gives up after 30 s). */
const HAND_OVER_LIMIT_MS = 60_000;

/** True when `host:port` can be listened on now. */
export function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** The bundled CLI next to this file (dist/cli.js). */
export function cliPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), 'cli.js');
}

/** Spawns the server detached and waits for its ready file and both ports. */
export async function spawnServer(o: SpawnOptions, timeoutMs = 20_000): Promise<StartedServer> {
  await mkdir(dirname(o.logFile), { recursive: true });
  await rm(o.readyFile, { force: true });
  const log = openSync(o.logFile, 'a');
  const args = [
    ...SERVER_NODE_FLAGS,
    cliPath(), 'serve',
    '--registry-addr', o.registryAddr,
    '--cache-addr', o.cacheAddr,
    '--storage', o.storage,
    '--ready-file', o.readyFile,
    '--stats-file', o.statsFile,
    '--tag-ttl', `${o.tagTtlMs}ms`,
    '--log-level', o.logLevel,
    ...o.upstreams.flatMap((u) => ['--upstream', u]),
    ...(o.persistIndex !== undefined ? ['--persist-index', typeof o.persistIndex === 'string' ? o.persistIndex : '-'] : []),
    ...(o.prefetch ? ['--persist-prefetch'] : []),
    ...(o.persistIndex !== undefined && o.persistRegistry ? ['--persist-registry'] : []),
  ];
  const env = { ...process.env, REGCACHE_UPSTREAM_AUTH: o.credentials.join('\n') };
  const handOver = typeof o.persistIndex === 'object' ? o.persistIndex : undefined;
  const child = spawn(process.execPath, args, { detached: true, stdio: [handOver ? 'pipe' : 'ignore', log, log], env });
  closeSync(log);
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? -1));
  child.unref();
  // The server is ready once it imported the index: the time limit runs from the hand-over.
  let deadline = Date.now() + timeoutMs;
  let handedOver = !handOver;
  if (handOver) {
    const stdin = child.stdin!;
    stdin.on('error', () => {}); // the server exited: reported by the loop below
    void handOver
      .catch(() => '')
      .then((text) => {
        handedOver = true;
        deadline = Date.now() + timeoutMs;
        stdin.end(text);
      });
  }
  // The restore bounds itself (30 s); this bounds a hand-over that never comes, whatever the cause.
  const handOverDeadline = Date.now() + HAND_OVER_LIMIT_MS + timeoutMs;
  while (handedOver ? Date.now() < deadline : Date.now() < handOverDeadline) {
    if (exited !== null) throw new Error(`regcache exited with code ${exited}: ${lastLines(o.logFile)}`);
    if (existsSync(o.readyFile)) {
      const ready = JSON.parse(readFileSync(o.readyFile, 'utf8')) as { registry: string; cache: string; pid: number };
      if (await answers(ready.registry) && await answers(ready.cache)) return { pid: ready.pid, registryUrl: ready.registry, cacheUrl: ready.cache };
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  try {
    process.kill(child.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
  throw new Error(`regcache did not become ready in ${timeoutMs / 1000}s: ${lastLines(o.logFile)}`);
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return res.status === 200 || res.status === 401;
  } catch {
    return false;
  }
}

function lastLines(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-5).join(' | ');
  } catch {
    return '(no log)';
  }
}

/** /proc/<pid>/<file>, or undefined where there is no such file (not Linux, or no such process). */
function procFile(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * True while `pid` runs. An exited process not yet reaped (a zombie) has stopped: the server's
 * parent, main, is gone, and the PID 1 it was handed to may never reap it (a container job's
 * `tail -f /dev/null`).
 */
export function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procFile(pid, 'stat');
  if (stat === undefined) return process.platform !== 'linux';
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3); // "pid (comm) S ..."
  return state !== 'Z' && state !== 'X';
}

/** False when `pid` is now some other process than a regcache server (its pid was reused). */
export function isServer(pid: number): boolean {
  const cmdline = procFile(pid, 'cmdline');
  if (cmdline === undefined) return true; // cannot tell (not Linux): trust the state
  const args = cmdline.split('\0');
  return args.includes('serve') && args.some((a) => a.endsWith('cli.js'));
}

/**
 * Sends SIGTERM and waits for the process to exit (SIGKILL after `timeoutMs`). The server waits
 * for requests in flight at most its drain timeout (5 s by default, then it closes their
 * connections), so the 30 s here leave room for the work after it (fills finishing, statistics).
 * One SIGTERM only: a second one would make the server exit at once, without its statistics.
 */
export async function stopServer(pid: number, timeoutMs = 30_000): Promise<'stopped' | 'killed' | 'gone'> {
  if (!running(pid) || !isServer(pid)) return 'gone';
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return 'gone';
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!running(pid)) return 'stopped';
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return 'stopped';
  }
  return 'killed';
}
