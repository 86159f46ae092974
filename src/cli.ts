#!/usr/bin/env node
// The command line: `regcache serve` runs the registry and the cache (with its flags, or
// distribution's configuration: --config, REGISTRY_* variables); `regcache stats` asks a running
// server for its statistics; `regcache gc` collects garbage
// in a storage root (gc-command.ts), or asks the server that holds it to.
import './reexec.js';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { runServer, ListenError, type NamedSetting } from './server/index.js';
import { StorageLockedError, type S3StorageSettings } from './storage/index.js';
import { parseS3Url } from './storage/s3/url.js';
import { registerGc } from './gc-command.js';
import { defaultLocalDir, defaultStorageDir } from './default-storage.js';
import { parseDuration, parseSize } from './shared/index.js';
import { ConfigError, findConfig, loadDistributionConfig, type DistributionSettings, type S3Storage } from './config/index.js';
import pkg from '../package.json' with { type: 'json' };

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function logLevel(v: string): string {
  if (!LOG_LEVELS.includes(v)) throw new InvalidArgumentError(`one of ${LOG_LEVELS.join(', ')}`);
  return v;
}

function duration(v: string): number {
  try {
    return parseDuration(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function size(v: string): number {
  try {
    return parseSize(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function collect(v: string, all: string[] | undefined): string[] {
  return [...(all ?? []), v];
}

/** A duration option whose default is shown as written (`5m`), not in milliseconds. */
function durationOption(flags: string, description: string, defaultMs?: number, shown?: string): Option {
  const option = new Option(flags, description).argParser(duration);
  return defaultMs === undefined ? option : option.default(defaultMs, shown);
}

/** Prints a one-line error for the failures a user can fix, and exits 1. */
function fail(err: unknown): never {
  if (err instanceof ListenError || err instanceof StorageLockedError || err instanceof ConfigError) {
    process.stderr.write(`regcache: ${err.message}\n`);
  } else {
    process.stderr.write(`regcache: ${(err as Error).message ?? String(err)}\n`);
    if (process.env.REGCACHE_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
  }
  process.exit(1);
}

/** The values of `serve`'s options, as commander hands them over. */
interface ServeFlags {
  config?: string;
  registryAddr: string;
  cacheAddr: string;
  storage?: string;
  s3Endpoint?: string;
  s3Region?: string;
  s3PathStyle?: boolean;
  cacheDir?: string;
  cacheDirSize?: number;
  s3Redirect?: boolean;
  htpasswd?: string;
  tlsCert?: string;
  tlsKey?: string;
  delete?: boolean;
  logLevel: string;
  readyFile?: string;
  upstream?: string[];
  upstreamAuth?: string[];
  tagTtl: number;
  statsFile?: string;
  persistIndex?: string;
  persistPrefetch?: boolean;
  persistRegistry?: boolean;
  maxCacheSize?: number;
  uploadMaxAge: number;
  uploadPurgeInterval?: number;
  headersTimeout: number;
  bodyTimeout: number;
  idleTimeout: number;
  gcInterval?: number;
  drainTimeout: number;
}

/**
 * Reads distribution's configuration when there is one (--config, or REGCACHE_CONFIG in the
 * image): prints its warnings, and fails with every error it has.
 */
function distributionSettings(file: string | undefined): DistributionSettings | undefined {
  const source = findConfig(file);
  if (!source) return undefined;
  const loaded = loadDistributionConfig(source);
  for (const w of loaded.warnings) process.stderr.write(`regcache: warning: ${w}\n`);
  if (loaded.errors.length > 0) {
    for (const e of loaded.errors) process.stderr.write(`regcache: ${e}\n`);
    process.exit(1);
  }
  return loaded.settings;
}

/** `serve`'s flags over distribution's configuration (flags given on the command line win). */
function serveOptions(o: ServeFlags, given: (option: string) => boolean): Parameters<typeof runServer>[0] {
  const d = distributionSettings(o.config);
  const names: Partial<Record<NamedSetting, string>> = {};
  const pick = <T>(option: keyof ServeFlags & NamedSetting, flag: T, sourced: { value: T; name: string } | undefined): T | undefined => {
    if (given(option) || !sourced) return flag;
    names[option] = sourced.name;
    return sourced.value;
  };
  const tlsFromFlags = given('tlsCert') || given('tlsKey');
  const tlsCert = tlsFromFlags ? o.tlsCert : pick('tlsCert', o.tlsCert, d?.tlsCert);
  const tlsKey = tlsFromFlags ? o.tlsKey : pick('tlsKey', o.tlsKey, d?.tlsKey);
  if (!!tlsCert !== !!tlsKey) throw new Error(`--tls-cert and --tls-key go together: give ${tlsCert ? '--tls-key' : '--tls-cert'} too`);
  const htpasswd = pick('htpasswd', o.htpasswd, d?.htpasswd);
  const fromConfig = d?.s3 && !given('storage') ? d.s3 : undefined;
  const storage = pick('storage', o.storage, d?.storage ?? (d?.s3 ? { value: d.s3.value.url, name: d.s3.names.url } : undefined)) ?? defaultStorageDir();
  const s3 = storage.startsWith('s3://') ? s3Settings(storage, o, fromConfig?.value, fromConfig && d?.redirect) : undefined;
  if (!s3) {
    const flags = { s3Endpoint: '--s3-endpoint', s3Region: '--s3-region', s3PathStyle: '--s3-path-style', s3Redirect: '--s3-redirect', cacheDir: '--cache-dir', cacheDirSize: '--cache-dir-size' } as const;
    const stray = (Object.keys(flags) as Array<keyof typeof flags>).find((k) => o[k] !== undefined);
    if (stray) throw new Error(`${flags[stray]} applies to a storage on S3 only: give --storage s3://<bucket>/<prefix> as well`);
  }
  return {
    registryAddr: pick('registryAddr', o.registryAddr, d?.registryAddr)!,
    cacheAddr: pick('cacheAddr', o.cacheAddr, d?.cacheAddr)!,
    storage: s3 ? (o.cacheDir ?? defaultLocalDir(storage)) : storage,
    ...(s3 ? { s3 } : {}),
    ...(htpasswd ? { htpasswd } : {}),
    ...(d?.htpasswd ? { realm: d.htpasswd.realm } : {}),
    ...(tlsCert && tlsKey ? { tlsCert, tlsKey } : {}),
    names,
    deleteEnabled: o.delete ?? d?.deleteEnabled ?? true,
    logLevel: given('logLevel') || !d ? o.logLevel : d.logLevel,
    ...(o.readyFile ? { readyFile: o.readyFile } : {}),
    upstreams: o.upstream ?? (d?.upstream ? [d.upstream] : []),
    upstreamAuth: o.upstreamAuth ?? [],
    ...(d?.credentials && !given('upstreamAuth') ? { credentials: new Map([[d.credentials.ns, { username: d.credentials.username, password: d.credentials.password }]]) } : {}),
    tagTtlMs: o.tagTtl,
    ...(o.statsFile ? { statsFile: o.statsFile } : {}),
    ...(o.maxCacheSize ? { maxCacheBytes: o.maxCacheSize } : {}),
    ...(o.persistIndex ? { persistIndex: o.persistIndex } : {}),
    persistPrefetch: !!o.persistPrefetch,
    persistRegistry: !!o.persistRegistry,
    uploadMaxAgeMs: given('uploadMaxAge') || !d ? o.uploadMaxAge : d.uploadMaxAgeMs,
    ...(given('uploadPurgeInterval') || !d ? (o.uploadPurgeInterval !== undefined ? { uploadPurgeIntervalMs: o.uploadPurgeInterval } : {}) : { uploadPurgeIntervalMs: d.uploadPurgeIntervalMs }),
    timeouts: { headersMs: o.headersTimeout, bodyMs: o.bodyTimeout, idleMs: o.idleTimeout },
    ...(o.gcInterval !== undefined ? { gcIntervalMs: o.gcInterval } : {}),
    drainTimeoutMs: o.drainTimeout,
  };
}

/**
 * The bucket settings of `--storage s3://...` and the --s3-* flags, over distribution's
 * `storage.s3` (and `storage.redirect`) when the storage came from its configuration.
 */
function s3Settings(url: string, o: ServeFlags, config?: S3Storage, configRedirect?: boolean): S3StorageSettings {
  try {
    parseS3Url(url);
  } catch (err) {
    throw new Error(`--storage: ${(err as Error).message}`);
  }
  const endpoint = o.s3Endpoint ?? config?.endpoint;
  const region = o.s3Region ?? config?.region;
  const forcePathStyle = o.s3PathStyle ?? config?.forcePathStyle;
  return {
    url,
    ...(endpoint ? { endpoint } : {}),
    ...(region ? { region } : {}),
    ...(forcePathStyle ? { forcePathStyle: true } : {}),
    ...(config?.credentials ? { credentials: config.credentials } : {}),
    ...(o.cacheDirSize !== undefined ? { localCopiesBytes: o.cacheDirSize } : {}),
    ...(o.s3Redirect || configRedirect ? { redirect: true } : {}),
  };
}

/** The cache URL a server wrote into its ready file. */
async function cacheUrlFromReadyFile(file: string): Promise<string> {
  const ready = JSON.parse(await readFile(file, 'utf8')) as { cache?: unknown };
  if (typeof ready.cache !== 'string') throw new Error(`${file} names no cache URL`);
  return ready.cache;
}

/** Fetches the statistics of the server whose cache port is `url`; writes them to `out` (atomically) or stdout. */
async function writeStats(url: string, out: string | undefined): Promise<void> {
  const statsUrl = `${url.replace(/\/+$/, '')}/_regcache/stats`;
  let res: Response;
  try {
    res = await fetch(statsUrl, { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new Error(`no regcache server answers at ${url} (${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message})`);
  }
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${statsUrl} answered ${res.status}`);
  const json = `${JSON.stringify(JSON.parse(text), null, 2)}\n`;
  if (!out) {
    process.stdout.write(json);
    return;
  }
  await writeFile(`${out}.tmp`, json);
  await rename(`${out}.tmp`, out);
}

/** Builds the command-line program. */
export function program(): Command {
  const cli = new Command('regcache')
    .description('An OCI registry (:5000) and pull-through cache (:5001) for CI jobs')
    .version(pkg.version, '-V, --version', 'print the version')
    .showHelpAfterError();

  const serve = cli
    .command('serve')
    .description('run the registry and the pull-through cache')
    .option('--config <file>', "read distribution's configuration (config.yml) and REGISTRY_* variables; flags win over it")
    .option('--registry-addr <host:port>', 'registry listen address', '127.0.0.1:5000')
    .option('--cache-addr <host:port>', 'pull-through cache listen address', '127.0.0.1:5001')
    .option('--storage <dir|s3-url>', 'storage directory, or a shared bucket s3://<bucket>/<prefix> (default: $REGCACHE_STORAGE or the user cache directory)')
    .option('--s3-endpoint <url>', 'with an s3:// storage: the S3 endpoint (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS)')
    .option('--s3-region <region>', 'with an s3:// storage: the region (default: $AWS_REGION, else us-east-1)')
    .option('--s3-path-style', 'with an s3:// storage: path-style addressing (endpoint/bucket/key), as most S3-compatible services want')
    .option('--s3-redirect', 'with an s3:// storage: answer blob GETs on the registry port with a redirect to a presigned URL of the bucket (clients must reach the S3 endpoint)')
    .option('--cache-dir <dir>', "with an s3:// storage: this server's own directory for temp files and local copies of blobs (default: under the user cache directory)")
    .option('--cache-dir-size <size>', 'with an s3:// storage: keep at most this much in local copies of blobs, 0 for none: every read goes to the bucket (default: 10G)', size)
    .option('--htpasswd <file>', 'require basic auth with this htpasswd file (bcrypt entries)')
    .option('--tls-cert <file>', 'serve TLS with this certificate (PEM)')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
    .option('--delete', 'allow deleting manifests, tags and blobs on the registry port (default: on; with a distribution configuration, storage.delete.enabled)')
    .option('--no-delete', 'answer deletes 405 UNSUPPORTED, as distribution does by default')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent', logLevel, 'info')
    // REGCACHE_READY_FILE: the container image's health check reads the file it names.
    .addOption(new Option('--ready-file <file>', 'write {registry, cache, pid} as JSON here once listening').env('REGCACHE_READY_FILE'))
    .option('--upstream <ns=url>', 'an upstream of the cache, repeatable (default: docker.io=https://registry-1.docker.io)', collect)
    .option('--upstream-auth <ns=user:token>', 'credentials for an upstream, repeatable (also REGCACHE_UPSTREAM_AUTH, ~/.docker/config.json)', collect)
    .addOption(durationOption('--tag-ttl <duration>', 'serve a cached tag this long before revalidating it upstream', 300_000, '5m'))
    .option('--stats-file <file>', 'keep the statistics here as JSON (rewritten within a second of a change, and on exit)')
    .option('--persist-index <file>', 'an index restored from the GitHub Actions cache (the Action passes it; - reads it from standard input)')
    .option('--persist-prefetch', 'restore every pack of --persist-index and confirm its tags upstream in the background')
    .option('--persist-registry', "import --persist-index's :5000 registry part too (images a job with persist-registry pushed)")
    .option('--max-cache-size <size>', 'evict least recently used cached blobs beyond this size (e.g. 20G)', size)
    .addOption(durationOption('--upload-max-age <duration>', 'purge upload sessions idle this long', 86_400_000, '24h'))
    .addOption(durationOption('--upload-purge-interval <duration>', 'look for idle upload sessions this often (default: a tenth of --upload-max-age, at most 1h)'))
    .addOption(durationOption('--headers-timeout <duration>', 'time a client has to send request headers', 30_000, '30s'))
    .addOption(durationOption('--body-timeout <duration>', 'close a connection whose request body brings less than 1 KiB in this long', 60_000, '60s'))
    .addOption(durationOption('--idle-timeout <duration>', 'close a connection with no traffic for this long', 300_000, '5m'))
    .addOption(durationOption('--gc-interval <duration>', 'collect garbage this often while running, with a 1h grace (default: off; `regcache gc` asks the running server)'))
    .addOption(durationOption('--drain-timeout <duration>', 'on SIGTERM or SIGINT, wait this long for requests in flight, then close their connections (a second signal exits at once)', 5_000, '5s'))
    .action(async (o) => {
      try {
        await runServer(serveOptions(o, (key) => serve.getOptionValueSource(key) === 'cli'));
      } catch (err) {
        fail(err);
      }
    });

  cli
    .command('stats')
    .description("print a running server's statistics as JSON (GET /_regcache/stats on its cache port)")
    .option('--url <url>', 'the cache port of the running server', 'http://127.0.0.1:5001')
    .option('--ready-file <file>', "take the cache's URL from this ready file (serve --ready-file) instead of --url")
    .option('--out <file>', 'write the JSON to this file instead of standard output')
    .action(async (o) => {
      try {
        await writeStats(o.readyFile ? await cacheUrlFromReadyFile(o.readyFile) : o.url, o.out);
      } catch (err) {
        fail(err);
      }
    });

  registerGc(cli, {
    duration,
    durationOption,
    fail,
    storageDir: (flag) =>
      flag !== undefined
        ? { dir: flag, from: '--storage' }
        : { dir: defaultStorageDir(), from: process.env.REGCACHE_STORAGE ? '$REGCACHE_STORAGE' : 'the default storage directory' },
  });
  return cli;
}

await program().parseAsync(process.argv);
