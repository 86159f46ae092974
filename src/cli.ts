#!/usr/bin/env node
// The command line: `regcache serve` runs the registry and the cache; `regcache gc`
// collects garbage in a storage root (gc-command.ts), or asks the server that holds it to.
import './reexec.js';
import { Command, InvalidArgumentError } from 'commander';
import { runServer, ListenError } from './server/index.js';
import { StorageLockedError } from './storage/index.js';
import { registerGc } from './gc-command.js';
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
    .option('--registry-addr <host:port>', 'registry listen address', '127.0.0.1:5000')
    .option('--cache-addr <host:port>', 'pull-through cache listen address', '127.0.0.1:5001')
    .option('--storage <dir>', 'storage directory (default: $REGCACHE_STORAGE or the user cache directory)')
    .option('--htpasswd <file>', 'require basic auth with this htpasswd file (bcrypt entries)')
    .option('--tls-cert <file>', 'serve TLS with this certificate (PEM)')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent', logLevel, 'info')
    .option('--ready-file <file>', 'write {registry, cache, pid} as JSON here once listening')
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
    .option('--gc-interval <duration>', 'collect garbage this often while running, with a 1h grace (default: off; `regcache gc` asks the running server)', duration)
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
        gcIntervalMs: o.gcInterval,
      }).catch(fail);
    });

  registerGc(cli, {
    duration,
    fail,
    storageDir: (flag) =>
      flag !== undefined
        ? { dir: flag, from: '--storage' }
        : { dir: defaultStorageDir(), from: process.env.REGCACHE_STORAGE ? '$REGCACHE_STORAGE' : 'the default storage directory' },
  });
  return cli;
}

await program().parseAsync(process.argv);
