#!/usr/bin/env node
// The command line: `regcache serve` runs the registry and the cache; `regcache gc`
// collects garbage in a storage root that no server is using.
import './reexec.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { runServer, ListenError } from './server/index.js';
import { openStorage, StorageLockedError } from './storage/index.js';
import { defaultStorageDir } from './default-storage.js';
import { parseSize } from './proxy/index.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function logLevel(v: string): string {
  if (!LOG_LEVELS.includes(v)) throw new InvalidArgumentError(`one of ${LOG_LEVELS.join(', ')}`);
  return v;
}

function duration(v: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError('a duration such as 90s, 15m, 1h');
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 's']!;
  return Number(m[1]) * unit;
}

function size(v: string): number {
  try {
    return parseSize(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function collect(v: string, all: string[]): string[] {
  return [...all, v];
}

/** Prints a one-line error for the failures a user can fix, and exits 1. */
function fail(err: unknown): never {
  if (err instanceof ListenError || err instanceof StorageLockedError) {
    process.stderr.write(`regcache: ${err.message}\n`);
  } else {
    process.stderr.write(`regcache: ${(err as Error).message ?? String(err)}\n`);
    if (process.env.REGCACHE_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
  }
  process.exit(1);
}

/** Builds the command-line program. */
export function program(): Command {
  const cli = new Command('regcache').description('An OCI registry (:5000) and pull-through cache (:5001) for CI jobs').showHelpAfterError();

  cli
    .command('serve')
    .description('run the registry and the pull-through cache')
    // The environment variables let the container image listen on all interfaces by default
    // while `docker run <image> serve --registry-addr ...` still works as written.
    .addOption(new Option('--registry-addr <host:port>', 'registry listen address').default('127.0.0.1:5000').env('REGCACHE_REGISTRY_ADDR'))
    .addOption(new Option('--cache-addr <host:port>', 'pull-through cache listen address').default('127.0.0.1:5001').env('REGCACHE_CACHE_ADDR'))
    .option('--storage <dir>', 'storage directory (default: $REGCACHE_STORAGE or the user cache directory)')
    .option('--htpasswd <file>', 'require basic auth with this htpasswd file (bcrypt entries)')
    .option('--tls-cert <file>', 'serve TLS with this certificate (PEM)')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent', logLevel, 'info')
    .addOption(new Option('--ready-file <file>', 'write {registry, cache, pid} as JSON here once listening').env('REGCACHE_READY_FILE'))
    .option('--upstream <ns=url>', 'an upstream of the cache, repeatable (default docker.io=https://registry-1.docker.io)', collect, [])
    .option('--upstream-auth <ns=user:token>', 'credentials for an upstream, repeatable (also REGCACHE_UPSTREAM_AUTH, ~/.docker/config.json)', collect, [])
    .option('--tag-ttl <duration>', 'serve a cached tag this long before revalidating it upstream', duration, 300_000)
    .option('--stats-file <file>', 'write the statistics here as JSON on exit')
    .option('--persist-index <file>', 'an index restored from the GitHub Actions cache (the Action passes it; - reads it from standard input)')
    .option('--persist-prefetch', 'restore every pack of --persist-index and confirm its tags upstream in the background')
    .option('--persist-registry', "import --persist-index's :5000 registry part too (images a job with persist-registry pushed)")
    .option('--max-cache-size <size>', 'evict least recently used cached blobs beyond this size (e.g. 20G)', size)
    .option('--upload-max-age <duration>', 'purge upload sessions idle this long', duration, 86_400_000)
    .option('--upload-purge-interval <duration>', 'look for idle upload sessions this often (default: a tenth of --upload-max-age, at most 1h)', duration)
    .option('--headers-timeout <duration>', 'time a client has to send request headers', duration, 30_000)
    .option('--body-timeout <duration>', 'close a connection whose request body brings less than 1 KiB in this long', duration, 60_000)
    .option('--idle-timeout <duration>', 'close a connection with no traffic for this long', duration, 300_000)
    .action(async (o) => {
      if (!!o.tlsCert !== !!o.tlsKey) fail(new Error('--tls-cert and --tls-key go together'));
      await runServer({
        registryAddr: o.registryAddr,
        cacheAddr: o.cacheAddr,
        storage: o.storage ?? defaultStorageDir(),
        htpasswd: o.htpasswd,
        tlsCert: o.tlsCert,
        tlsKey: o.tlsKey,
        logLevel: o.logLevel,
        readyFile: o.readyFile,
        upstreams: o.upstream,
        upstreamAuth: o.upstreamAuth,
        tagTtlMs: o.tagTtl,
        statsFile: o.statsFile,
        maxCacheBytes: o.maxCacheSize,
        persistIndex: o.persistIndex,
        persistPrefetch: !!o.persistPrefetch,
        persistRegistry: !!o.persistRegistry,
        uploadMaxAgeMs: o.uploadMaxAge,
        uploadPurgeIntervalMs: o.uploadPurgeInterval,
        timeouts: { headersMs: o.headersTimeout, bodyMs: o.bodyTimeout, idleMs: o.idleTimeout },
      }).catch(fail);
    });

  cli
    .command('gc')
    .description('delete blobs that no manifest references (the server must not be running on this storage)')
    .option('--storage <dir>', 'storage directory (default: $REGCACHE_STORAGE or the user cache directory)')
    .option('--grace <duration>', 'keep blobs younger than this', duration, 3_600_000)
    .option('--dry-run', 'report what would be deleted')
    .action(async (o) => {
      try {
        const storage = await openStorage(o.storage ?? defaultStorageDir());
        try {
          const r = await storage.gc({ gracePeriodMs: o.grace, dryRun: !!o.dryRun });
          process.stdout.write(`${JSON.stringify(r)}\n`);
        } finally {
          await storage.close();
        }
      } catch (err) {
        fail(err);
      }
    });
  return cli;
}

await program().parseAsync(process.argv);
