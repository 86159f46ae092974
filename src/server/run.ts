// Runs the server as a process: writes the ready file, prints the addresses, and on
// SIGTERM or SIGINT drains in-flight requests and exits 0.
import { writeFile, rename } from 'node:fs/promises';
import { startServer, type RunningServer, type ServerOptions } from './server.js';

/** Options of {@link runServer}. */
export interface RunOptions extends ServerOptions {
  /** JSON file written once both ports listen: {registry, cache, pid}. */
  readyFile?: string;
}

/** Starts the server and keeps it running until a termination signal. */
export async function runServer(opts: RunOptions): Promise<RunningServer> {
  const server = await startServer(opts);
  const ready = { registry: server.registryUrl, cache: server.cacheUrl, pid: process.pid, storage: opts.storage };
  if (opts.readyFile) {
    await writeFile(`${opts.readyFile}.tmp`, JSON.stringify(ready));
    await rename(`${opts.readyFile}.tmp`, opts.readyFile);
  }
  process.stdout.write(`regcache: registry ${server.registryUrl}, cache ${server.cacheUrl}, storage ${opts.storage}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`regcache: ${signal}, draining\n`);
    server.close().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`regcache: shutdown failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return server;
}
