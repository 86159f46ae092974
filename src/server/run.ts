// Runs the server as a process: writes the ready file, prints the addresses, and on
// SIGTERM or SIGINT drains in-flight requests for at most the drain timeout and exits 0; a
// second signal exits at once.
import { writeFile, rename } from 'node:fs/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { constants } from 'node:os';
import { distributionLayoutIn } from '../storage/index.js';
import { startServer, type RunningServer, type ServerOptions } from './server.js';

/** Options of {@link runServer}. */
export interface RunOptions extends ServerOptions {
  /** JSON file written once both ports listen: {registry, cache, pid}. */
  readyFile?: string;
}

/** The largest young generation the server lets V8 grow (a quarter of Node 20's own maximum). */
export const YOUNG_GENERATION_CAP = 8 * 1024 * 1024;

/**
 * Keeps V8's young generation at most {@link YOUNG_GENERATION_CAP}. V8 grows it with the
 * allocation rate, up to 32 MB on Node 20 but 128 MB on Node 24, where 200 busy clients took the
 * server past 250 MB of resident memory with 25 MB of its heap live (test/faults/load-mixed).
 * The size limits are fixed when V8 starts (a user runs the `regcache` bin, which passes no
 * node flags; node-flags.ts sets only the old generation's), but the growth factor is read whenever the young
 * generation grows: after each collection, growth stays on while one doubling stays within the
 * cap and is switched off beyond. (Pinning the young generation at its initial 1-3 MB instead
 * promoted in-flight body chunks to the old generation, whose collections come late, and made
 * the resident memory jumpier.) 8 MB rather than 16: request-body socket buffers (64 KiB per read)
 * are garbage once written but freed only when a collection finds them, and a smaller young
 * generation collects them sooner: the 60 s load test on Node 24 peaked at 209-224 MB in four
 * runs against 221-245 MB in six at 16 MB, with no more CPU per byte pushed or pulled in the
 * bench (bench/RESULTS.md). Returns the stopper.
 */
export function boundYoungGeneration(cap = YOUNG_GENERATION_CAP): () => void {
  // An explicit choice (node's --max-semi-space-size and friends, on the command line or in
  // NODE_OPTIONS) wins.
  if (/semi[-_]space/.test(`${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`)) return () => {};
  let growing = true;
  const check = () => {
    const size = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
    const grow = size * 2 <= cap;
    if (grow === growing) return;
    growing = grow;
    setFlagsFromString(`--semi-space-growth-factor=${grow ? 2 : 1}`);
  };
  const observer = new PerformanceObserver(check);
  observer.observe({ entryTypes: ['gc'] });
  check();
  return () => observer.disconnect();
}

/** Starts the server and keeps it running until a termination signal. */
export async function runServer(opts: RunOptions): Promise<RunningServer> {
  boundYoungGeneration();
  await warnOfDistributionLayout(opts.storage);
  const notice = (message: string) => void process.stdout.write(`regcache: ${message}\n`);
  const server = await startServer({
    notice,
    // Another server owns the storage now: stop at once, without touching it.
    onLockLost: (err) => {
      process.stderr.write(`regcache: ${err.message}; exiting\n`);
      process.exit(1);
    },
    ...opts,
  });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second signal (Ctrl-C twice, an impatient supervisor): no more waiting. Uploads cut
      // off keep what they received and are resumed after a restart.
      process.stdout.write(`regcache: ${signal} again, exiting now\n`);
      server.abandon();
      process.exit(128 + (constants.signals[signal] ?? 15));
    }
    stopping = true;
    process.stdout.write(`regcache: ${signal}, draining (a second signal exits at once)\n`);
    server.close().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`regcache: shutdown failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  // Before the ready file: whoever sees it may stop the server at once (a SIGTERM that came
  // between the file's rename and these handlers killed the process: seen once in CI).
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const ready = { registry: server.registryUrl, cache: server.cacheUrl, pid: process.pid, storage: opts.storage };
  if (opts.readyFile) {
    await writeFile(`${opts.readyFile}.tmp`, JSON.stringify(ready));
    await rename(`${opts.readyFile}.tmp`, opts.readyFile);
  }
  process.stdout.write(`regcache: registry ${server.registryUrl}, cache ${server.cacheUrl}, storage ${opts.s3 ? `${server.storage.location} (this server's directory ${opts.storage})` : opts.storage}\n`);
  return server;
}

/**
 * Names a storage root that holds distribution's layout (a `registry:2` volume mounted as is):
 * regcache keeps its own layout beside it and does not serve the images stored there.
 */
async function warnOfDistributionLayout(storage: string): Promise<void> {
  const found = await distributionLayoutIn(storage);
  if (!found) return;
  process.stderr.write(
    `regcache: warning: ${found}/ is a distribution (registry:2) storage; regcache does not serve the images in it ` +
      `(it keeps its own layout beside it): push them to regcache again, or mount an empty volume\n`,
  );
}
