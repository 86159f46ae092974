// Runs the built CLI (dist/cli.js) as a child process with the Node that runs the tests:
// `serve` until its ready file appears, or any command to completion. Children are killed
// when the test ends if they are still running.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

/** The built CLI. */
export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** A running CLI child with its output so far. */
export interface CliChild {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal) once the child has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `node dist/cli.js ...args`. */
export function runCli(t: TestContext, args: string[], env: NodeJS.ProcessEnv = {}): CliChild {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs a CLI command to completion. */
export async function runCliToEnd(t: TestContext, args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = runCli(t, args, env);
  const { code } = await withTimeout(c.exited, 20_000, `regcache ${args.join(' ')}`);
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

/** What `serve --ready-file` writes. */
export interface ReadyInfo {
  registry: string;
  cache: string;
  pid: number;
  storage: string;
}

/**
 * Starts `serve` on ports 0 and waits for its ready file. With `bare`, only --ready-file and
 * `extra` are passed (the addresses and storage come from a configuration); `env` is added to
 * the child's environment.
 */
export async function serve(
  t: TestContext,
  opts: { storage: string; readyFile: string; extra?: string[]; env?: NodeJS.ProcessEnv; bare?: boolean },
): Promise<CliChild & { ready: ReadyInfo }> {
  const addresses = opts.bare ? [] : ['--registry-addr', '127.0.0.1:0', '--cache-addr', '127.0.0.1:0', '--storage', opts.storage, '--log-level', 'silent'];
  const c = runCli(t, ['serve', ...addresses, '--ready-file', opts.readyFile, ...(opts.extra ?? [])], opts.env);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const text = await readFile(opts.readyFile, 'utf8').catch(() => undefined);
    if (text) return { ...c, ready: JSON.parse(text) as ReadyInfo };
    if (c.child.exitCode !== null) throw new Error(`serve exited ${c.child.exitCode}: ${c.stderr()}`);
    if (Date.now() > deadline) throw new Error(`serve did not get ready: ${c.stderr()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Rejects when `p` takes longer than `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}
