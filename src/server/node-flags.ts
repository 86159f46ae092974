// The node flags the server runs with, and the re-exec that gives them to `regcache serve` when
// it was started without them. V8 sizes the old generation from its live heap (~22 MB here):
// once it has (after the first full collection, e.g. while the server sat idle before a job's
// first push), the allocation limit sits less than one young generation above the live size, and
// under load V8 marks and compacts about ten times a second, over half the server's CPU during a
// pull (bench/RESULTS.md, finding 1). A larger initial old space keeps the limit above that.
// Heap sizes are fixed when V8 starts: only node's command line sets them (not NODE_OPTIONS,
// not v8.setFlagsFromString), so whoever starts the server passes them (the Action, `npm
// start`, the bench), and the CLI re-executes itself with them where node can (process.execve:
// Node 22.15 and later, same pid, so signals, exit codes and the ready file are unchanged).

/** The flags node is given in front of `dist/cli.js serve`. */
export const SERVER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];

/** True when `execArgv` already sizes the old generation (ours, or the user's own choice). */
export function hasHeapFlags(execArgv: readonly string[]): boolean {
  return execArgv.some((a) => /^--initial[-_]old[-_]space[-_]size(=|$)/.test(a));
}

type Execve = (file: string, args: string[], env: NodeJS.ProcessEnv) => never;

/**
 * Replaces this process with node running the same script and arguments, with
 * {@link SERVER_NODE_FLAGS} in front, when `regcache serve` runs without them. Returns (and the
 * server runs with V8's defaults) where node has no process.execve (Node 20).
 */
export function reexecWithServerFlags(argv: readonly string[] = process.argv): void {
  if (argv[2] !== 'serve' || hasHeapFlags(process.execArgv)) return;
  const execve = (process as unknown as { execve?: Execve }).execve;
  if (typeof execve !== 'function') return;
  try {
    execve(process.execPath, [process.execPath, ...SERVER_NODE_FLAGS, ...process.execArgv, ...argv.slice(1)], process.env);
  } catch (err) {
    // Only returns on failure (the binary gone, a sandbox refusing execve): run as we are.
    process.stderr.write(`regcache: could not restart with ${SERVER_NODE_FLAGS.join(' ')}: ${(err as Error).message}\n`);
  }
}
