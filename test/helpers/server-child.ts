// regcache as a child process for the fault suite: `node dist/cli.js serve` with its storage,
// ready file and log in a test dir, optionally under `strace -f` (its file syscalls written to a
// trace file) and with the route probe preloaded, so that the test knows every route fastify
// registered on each port. The server's pid is the node process's own (not strace's): that is
// the process whose memory is sampled and which is sent SIGTERM to stop.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ChildHandle, type ExitInfo, pidAlive, startProcess, waitFor } from './proc.js';
import { findTool } from './tools.js';

/** The built CLI. */
export const DIST_CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
/** The preload that reports fastify's own route list (see route-probe.mjs). */
export const ROUTE_PROBE = fileURLToPath(new URL('./route-probe.mjs', import.meta.url));
/** The preload that reports node's own memory account once a second (see memory-probe.mjs). */
export const MEMORY_PROBE = fileURLToPath(new URL('./memory-probe.mjs', import.meta.url));

/** One route as fastify's onRoute hook saw it. */
export interface RouteInfo {
  method: string;
  url: string;
}

/** Options of {@link startServerChild}. */
export interface ServerChildOptions {
  /** Extra `serve` flags (e.g. --htpasswd, --upstream). */
  args?: readonly string[];
  /** Registry port (default 0: the kernel's choice). */
  registryPort?: number;
  /** Trace the server's file syscalls into this file. */
  straceFile?: string;
  /** Preload the route probe and wait until both ports reported their routes. */
  probeRoutes?: boolean;
  /** Environment of the server (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Log level of the server (default warn: errors, i.e. 5xx answers, appear in the log). */
  logLevel?: string;
  /** Limit on the server's open files (RLIMIT_NOFILE, set with the shell's ulimit before exec). */
  nofile?: number;
  /** Modules preloaded into the server with --import (observers such as memory-probe.mjs). */
  preload?: readonly string[];
}

/** A running server child. */
export interface ServerChild {
  readonly registryUrl: string;
  readonly cacheUrl: string;
  /** The node process serving (under strace, strace's child). */
  readonly pid: number;
  readonly storage: string;
  readonly readyFile: string;
  readonly logFile: string;
  /** Routes of the registry and cache ports, when probeRoutes was set. */
  readonly routes: { registry: RouteInfo[]; cache: RouteInfo[] };
  /** The spawned process (strace when tracing). */
  readonly child: ChildHandle;
  /** The server's log so far. */
  log(): string;
  /** True while the server process runs. */
  alive(): boolean;
  /** SIGTERM to the server (a graceful drain), SIGKILL after timeoutMs; waits for the spawned process. */
  stop(timeoutMs?: number): Promise<ExitInfo>;
}

interface Ready {
  registry: string;
  cache: string;
  pid: number;
}

/** Starts `regcache serve` in `dir` (storage at `<dir>/storage`) and waits until it is ready. */
export async function startServerChild(dir: string, opts: ServerChildOptions = {}): Promise<ServerChild> {
  if (!existsSync(DIST_CLI)) throw new Error(`${DIST_CLI} is missing: run npm run build`);
  const storage = join(dir, 'storage');
  const readyFile = join(dir, 'ready.json');
  const logFile = join(dir, 'server.log');
  await writeFile(logFile, '');
  const node = [
    process.execPath,
    ...(opts.probeRoutes ? ['--import', ROUTE_PROBE] : []),
    ...(opts.preload ?? []).flatMap((m) => ['--import', m]),
    DIST_CLI,
    'serve',
    '--registry-addr',
    `127.0.0.1:${opts.registryPort ?? 0}`,
    '--cache-addr',
    '127.0.0.1:0',
    '--storage',
    storage,
    '--ready-file',
    readyFile,
    '--log-level',
    opts.logLevel ?? 'warn',
    ...(opts.args ?? []),
  ];
  const traced = opts.straceFile
    ? [findTool('strace') ?? 'strace', '-f', '-y', '-s', '65536', '--seccomp-bpf', '-e', 'trace=%file', '-o', opts.straceFile, ...node]
    : node;
  const argv = opts.nofile ? ['/bin/sh', '-c', `ulimit -n ${opts.nofile} && exec "$0" "$@"`, ...traced] : traced;
  const child = await startProcess(argv[0]!, argv.slice(1), { name: 'regcache', logFile, cwd: dir, ...(opts.env ? { env: opts.env } : {}) });
  let ready: Ready;
  try {
    ready = await waitFor(async () => JSON.parse(await readFile(readyFile, 'utf8')) as Ready, { process: child, what: `regcache to write ${readyFile}`, timeoutMs: 30_000 });
  } catch (err) {
    await child.stop(5_000);
    throw err;
  }
  const routes = { registry: [] as RouteInfo[], cache: [] as RouteInfo[] };
  if (opts.probeRoutes) {
    const ports = { registry: Number(new URL(ready.registry).port), cache: Number(new URL(ready.cache).port) };
    await waitFor(() => {
      for (const line of child.log(1024 * 1024).split('\n')) {
        if (!line.startsWith('REGCACHE-ROUTES ')) continue;
        const r = JSON.parse(line.slice('REGCACHE-ROUTES '.length)) as { port: number; routes: RouteInfo[] };
        if (r.port === ports.registry) routes.registry = r.routes;
        if (r.port === ports.cache) routes.cache = r.routes;
      }
      return routes.registry.length > 0 && routes.cache.length > 0;
    }, { process: child, what: 'the route probe to report both ports', timeoutMs: 10_000 });
  }
  let stopping: Promise<ExitInfo> | undefined;
  return {
    registryUrl: ready.registry,
    cacheUrl: ready.cache,
    pid: ready.pid,
    storage,
    readyFile,
    logFile,
    routes,
    child,
    log: () => child.log(4 * 1024 * 1024),
    alive: () => child.exitInfo() === undefined && pidAlive(ready.pid),
    stop(timeoutMs = 15_000) {
      stopping ??= (async () => {
        if (ready.pid !== child.pid) {
          // Under strace: signal the server itself; strace ends when its tracee has.
          try {
            process.kill(ready.pid, 'SIGTERM');
          } catch {
            // already gone
          }
          const timer = setTimeout(() => {
            try {
              process.kill(ready.pid, 'SIGKILL');
            } catch {
              // already gone
            }
          }, timeoutMs);
          try {
            await Promise.race([child.exited, waitFor(() => !pidAlive(ready.pid), { timeoutMs: timeoutMs + 5_000, what: 'the server to exit' })]);
          } finally {
            clearTimeout(timer);
          }
        }
        return child.stop(timeoutMs);
      })();
      return stopping;
    },
  };
}
