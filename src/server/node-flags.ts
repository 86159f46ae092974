// The node flags the server runs with, and the re-exec that gives them to `regcache serve` when
// it was started without them. V8 sizes the old generation from its live heap (~22 MB here):
// once it has (after the first full collection, e.g. while the server sat idle before a job's
// first push), the allocation limit sits less than one young generation above the live size, and
// under load V8 marks and compacts about ten times a second, over half the server's CPU during a
// pull (bench/RESULTS.md, finding 1). A larger initial old space keeps the limit above that.
// Heap sizes are fixed when V8 starts: only node's command line sets them (not NODE_OPTIONS,
// not v8.setFlagsFromString), so whoever starts the server passes them (the Action, `npm
// start`, the bench), and the CLI re-executes itself with them: in place where node can
// (process.execve: Node 22.15 and later, same pid, so signals, exit codes and the ready file are
// unchanged), else (Node 20) as a child process that it waits for: signals sent to the bin are
// passed on, and the bin exits as the server does (the ready file names the server's pid); the
// child stops as on SIGTERM when the bin is gone, even killed with SIGKILL (its IPC channel closes),
// instead of serving on as an orphan that holds the bin's output pipes open.
import { spawn } from 'node:child_process';

/** The flags node is given in front of `dist/cli.js serve`. */
export const SERVER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];

/** True when `execArgv` already sizes the old generation (ours, or the user's own choice). */
export function hasHeapFlags(execArgv: readonly string[]): boolean {
  return execArgv.some((a) => /^--initial[-_]old[-_]space[-_]size(=|$)/.test(a));
}

type Execve = (file: string, args: string[], env: NodeJS.ProcessEnv) => never;

/** The signals the bin passes on to a server it runs as a child (Node 20). */
const FORWARDED: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR2'];

/** The command line of the server with its flags: node, the flags, node's own flags, the script and arguments. */
export function serverCommand(argv: readonly string[], execArgv: readonly string[] = process.execArgv): string[] {
  return [...SERVER_NODE_FLAGS, ...execArgv, ...argv.slice(1)];
}

/**
 * Runs `regcache serve` with {@link SERVER_NODE_FLAGS} when it was started without them:
 * replaces this process where node has process.execve (Node 22.15 and later), else runs the
 * server as a child and resolves never (the bin exits when the child does), so that the caller
 * can `await` it before anything else runs. Returns at once when no re-exec is needed.
 */
export function reexecWithServerFlags(argv: readonly string[] = process.argv): Promise<void> | void {
  if (argv[2] !== 'serve' || hasHeapFlags(process.execArgv)) return;
  const execve = (process as unknown as { execve?: Execve }).execve;
  if (typeof execve === 'function') {
    try {
      execve(process.execPath, [process.execPath, ...serverCommand(argv)], process.env);
    } catch (err) {
      // Only returns on failure (the binary gone, a sandbox refusing execve): run as we are.
      process.stderr.write(`regcache: could not restart with ${SERVER_NODE_FLAGS.join(' ')}: ${(err as Error).message}\n`);
      return;
    }
  }
  return runAsChild(argv);
}

/** Set in the environment of the server the bin runs as its child. */
const BIN_CHILD = 'REGCACHE_BIN_CHILD';

/**
 * In the server the bin runs as its child (Node 20): when the bin is gone, even killed with
 * SIGKILL, the IPC channel closes and the server stops as on SIGTERM (a bounded drain).
 */
export function stopWithTheBin(): void {
  if (process.env[BIN_CHILD] !== '1' || !process.send) return;
  delete process.env[BIN_CHILD];
  process.channel?.unref();
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}

/** Node 20: the server as a child with the flags; this process passes signals on and exits as it does. */
function runAsChild(argv: readonly string[]): Promise<void> {
  const child = spawn(process.execPath, serverCommand(argv), { stdio: ['inherit', 'inherit', 'inherit', 'ipc'], env: { ...process.env, [BIN_CHILD]: '1' } });
  const forward = (signal: NodeJS.Signals) => () => void child.kill(signal);
  const handlers = FORWARDED.map((signal) => [signal, forward(signal)] as const);
  for (const [signal, handler] of handlers) process.on(signal, handler);
  child.once('error', (err) => {
    process.stderr.write(`regcache: could not start the server with ${SERVER_NODE_FLAGS.join(' ')}: ${err.message}\n`);
    process.exit(1);
  });
  child.once('exit', (code, signal) => {
    // Exiting with the child's code, the forwarders stay: a signal that arrives meanwhile (one
    // sent to the bin after its server was stopped directly) must not kill the bin instead.
    if (!signal) process.exit(code ?? 1);
    for (const [s, handler] of handlers) process.removeListener(s, handler);
    process.kill(process.pid, signal);
  });
  return new Promise<void>(() => {});
}
