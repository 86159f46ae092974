// One @actions/cache call in a short-lived child process (cache-worker.ts), so that nothing the
// library reads from its process (GITHUB_WORKSPACE, the working directory a save globs from, the
// ACTIONS_* variables) is shared: the child gets its own environment and working directory, any
// number of calls run at once, and the parent's process.env and working directory are never
// touched. The child is node itself (process.execPath) running dist/cache-worker.js, the bundle
// beside this one; run from source (the tests, through tsx), the .ts entry through tsx. It
// inherits stdout and stderr (the library's lines reach the step's log as they always did) and
// reports over an IPC channel. A call with a budget that has not ended by then is killed.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { WorkerReport, WorkerRequest } from './worker-protocol.js';

/** How one call ended. */
export interface LibraryCall {
  /** The child's report; absent when it ended without one (killed, crashed, could not start). */
  report?: WorkerReport;
  /** True when the budget ran out and the child was killed. */
  timedOut: boolean;
  /** How long the call took, child start included. */
  ms: number;
  /** How the child ended without a report. */
  failure?: string;
}

/** Where each call runs. */
export interface LibraryCallOptions {
  /** The child's whole environment. */
  env: NodeJS.ProcessEnv;
  /** The child's working directory (default: this process's). */
  cwd?: string;
  /** Kill the child if it has not reported by then. */
  budgetMs?: number;
}

/** node's arguments that run the worker: the bundle beside this module, or the source through tsx. */
function workerArgs(): string[] {
  const here = import.meta.url;
  if (here.endsWith('.ts')) return ['--import', import.meta.resolve('tsx'), fileURLToPath(new URL('./cache-worker.ts', here))];
  return [fileURLToPath(new URL('./cache-worker.js', here))];
}

/** Runs one library call in a child process. Never rejects. */
export function callLibrary(request: WorkerRequest, o: LibraryCallOptions): Promise<LibraryCall> {
  const started = Date.now();
  return new Promise((resolve) => {
    let report: WorkerReport | undefined;
    let timedOut = false;
    let settled = false;
    const finish = (failure: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const ms = Date.now() - started;
      resolve(report && !timedOut ? { report, timedOut, ms } : { timedOut, ms, failure: failure ?? 'the cache worker ended without a report' });
    };
    const child = spawn(process.execPath, [...workerArgs(), JSON.stringify(request)], {
      env: o.env,
      ...(o.cwd !== undefined ? { cwd: o.cwd } : {}),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const timer =
      o.budgetMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, o.budgetMs);
    child.on('message', (m) => {
      report ??= m as WorkerReport;
    });
    // Could not start (or could not be killed): 'close' may never come.
    child.on('error', (err) => finish(`the cache worker failed: ${err.message}`));
    child.on('close', (code, signal) => finish(signal ? `the cache worker ended by ${signal}` : `the cache worker exited with code ${code}`));
  });
}
