// Test helper: runs Debian's distribution registry (`docker-registry`, distribution 2.8) as a
// child process on 127.0.0.1, for tests that need a real reference registry: as the other side
// of the conformance suite, as an upstream for the pull-through cache, and in benchmarks.
//
// Each instance gets its own temp dir holding the config, the filesystem storage, an optional
// htpasswd file and the log file. With `storage: 's3'` the storage is a bucket of an S3 service
// instead (s3StorageEnv: distribution 2.8's s3-aws driver, e.g. on test/helpers/s3-ceph.ts). Distribution cannot report a port it picked itself, so the
// helper asks the kernel for a free port (bind 127.0.0.1:0, close) and writes it into the config.
// The access log stays on: `accessLog()` parses its lines (combined log format, written to stdout
// and sent to the log file) so tests can prove which requests reached this registry.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import bcrypt from 'bcryptjs';
import { request } from 'undici';
import { freePort, tailFile, terminateChild } from './proc.js';

/** The distribution binary shipped by Debian's `docker-registry` package. */
export const DISTRIBUTION_BINARY = process.env.REGCACHE_DISTRIBUTION_BIN ?? '/usr/bin/docker-registry';

/** Options of {@link startDistribution}; every field is optional. */
export interface DistributionOptions {
  /** Require HTTP basic auth with this one user (htpasswd file, bcrypt). */
  htpasswd?: { user: string; password: string };
  /**
   * Require bearer tokens (distribution's `auth.token`): clients are sent to `realm`; tokens must be
   * signed by a key whose certificate is in the PEM file `rootCertBundle` and carry `issuer`/`service`.
   */
  token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
  /** Run as a pull-through cache of `remoteurl` (pushes are then refused by distribution). */
  proxy?: { remoteurl: string; username?: string; password?: string };
  /** Allow DELETE of manifests and blobs (`storage.delete.enabled`); default true. */
  deleteEnabled?: boolean;
  /**
   * Run with this configuration file instead of one built from the options above (the test's
   * own config.yml, e.g. the same file regcache is given); the helper still sets the listen
   * address and the storage root, through REGISTRY_HTTP_ADDR and
   * REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY.
   */
  configFile?: string;
  /** Extra environment of the registry process (REGISTRY_* variables). */
  env?: Record<string, string>;
  /**
   * 's3': no filesystem driver (neither in the built configuration nor as
   * REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY with `configFile`): the storage is given by `env`,
   * e.g. {@link s3StorageEnv}'s variables. distribution panics on two drivers ("multiple storage
   * drivers specified in configuration or environment"). Default 'filesystem'.
   */
  storage?: 'filesystem' | 's3';
}

/** Where an S3-compatible service is (test/helpers/s3-ceph.ts's CephS3 has these fields). */
export interface S3Service {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * distribution 2.8's s3 driver (s3-aws) on `bucket` of an S3-compatible service, as REGISTRY_*
 * variables, for {@link startDistribution}'s `env` with `storage: 's3'`. 2.8 has no
 * `forcepathstyle`: a `regionendpoint` always means path-style requests (and the region is then
 * not checked against AWS's list). Blob GETs are served by the registry, not redirected to
 * presigned gateway URLs (storage.redirect.disable), so clients need not reach the gateway.
 * A value is read as YAML: keys that look like numbers would need quoting in a config file.
 */
export function s3StorageEnv(s3: S3Service, bucket: string, rootDirectory = '/distribution'): Record<string, string> {
  return {
    REGISTRY_STORAGE_S3_ACCESSKEY: s3.accessKeyId,
    REGISTRY_STORAGE_S3_SECRETKEY: s3.secretAccessKey,
    REGISTRY_STORAGE_S3_REGION: s3.region,
    REGISTRY_STORAGE_S3_REGIONENDPOINT: s3.endpoint,
    REGISTRY_STORAGE_S3_BUCKET: bucket,
    REGISTRY_STORAGE_S3_ROOTDIRECTORY: rootDirectory,
    REGISTRY_STORAGE_S3_SECURE: String(s3.endpoint.startsWith('https:')),
    REGISTRY_STORAGE_S3_V4AUTH: 'true',
    REGISTRY_STORAGE_REDIRECT_DISABLE: 'true',
  };
}

/** One request as recorded in distribution's access log. */
export interface AccessLogEntry {
  method: string;
  /** The request path, without the query string. */
  path: string;
  /** The query string without its leading `?`, or '' when there was none. */
  query: string;
  status: number;
}

/** An access-log entry with the response body's size as logged (undefined when the log said `-`). */
export interface SizedAccessLogEntry extends AccessLogEntry {
  bytes: number | undefined;
}

/** A running distribution registry, as returned by {@link startDistribution}. */
export interface Distribution {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  url: string;
  pid: number;
  port: number;
  /** Root directory of the filesystem storage driver (created but unused with `storage: 's3'`). */
  storageDir: string;
  /** File receiving the process's stdout and stderr (app log and access log). */
  logFile: string;
  /**
   * Requests this registry has answered so far, oldest first. Waits until every response sent
   * before the call has been logged (distribution logs a request after answering it).
   */
  accessLog(): Promise<AccessLogEntry[]>;
  /** Stops the process (SIGTERM, then SIGKILL after 5 s) and removes the temp dir; idempotent. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;
const START_ATTEMPTS = 3;
/** bcrypt cost for the htpasswd file: Go's minimum, since distribution pays it on every request. */
const BCRYPT_COST = 4;
/** Query parameter of the marker request `accessLog()` sends to know the log has caught up. */
const SYNC_PARAM = 'regcache-accesslog-sync';

/**
 * Starts distribution with filesystem storage in a fresh temp dir (or on S3: `storage`), listening on a free port of
 * 127.0.0.1, and resolves once `GET /v2/` answers (any status: with auth on it is 401).
 */
export async function startDistribution(opts: DistributionOptions = {}): Promise<Distribution> {
  const dir = await mkdtemp(join(tmpdir(), 'regcache-distribution-'));
  try {
    const storageDir = join(dir, 'storage');
    await mkdir(storageDir);
    const auth = await authConfig(dir, opts);
    let lastError: unknown;
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      const port = await freePort();
      const logFile = join(dir, `registry-${attempt}.log`);
      const configFile = opts.configFile ?? join(dir, 'config.yml');
      if (!opts.configFile) await writeFile(configFile, JSON.stringify(buildConfig(port, storageDir, auth, opts), null, 2));
      const filesystem: Record<string, string> = opts.storage === 's3' ? {} : { REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: storageDir };
      const env = opts.configFile ? { ...opts.env, REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`, ...filesystem } : opts.env;
      const child = await spawnRegistry(configFile, logFile, env);
      const url = `http://127.0.0.1:${port}`;
      try {
        await waitReady(url, child, logFile);
        return running(child, { url, port, dir, storageDir, logFile });
      } catch (err) {
        lastError = err;
        await terminateChild(child, STOP_GRACE_MS);
        // Another process may have taken the port between our probe and distribution's bind.
        if (!(await readFile(logFile, 'utf8')).includes('address already in use')) break;
      }
    }
    throw lastError;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Writes the htpasswd file if asked for and returns distribution's `auth` section, if any. */
async function authConfig(dir: string, opts: DistributionOptions): Promise<object | undefined> {
  if (opts.htpasswd && opts.token) throw new Error('startDistribution: choose htpasswd or token auth, not both');
  if (opts.htpasswd) {
    const { user, password } = opts.htpasswd;
    if (user.includes(':') || /\s/.test(user)) throw new Error(`startDistribution: invalid htpasswd user ${JSON.stringify(user)}`);
    const path = join(dir, 'htpasswd');
    await writeFile(path, `${user}:${bcrypt.hashSync(password, BCRYPT_COST)}\n`, { mode: 0o600 });
    return { htpasswd: { realm: 'regcache-test', path } };
  }
  if (opts.token) {
    const { realm, service, issuer, rootCertBundle } = opts.token;
    return { token: { realm, service, issuer, rootcertbundle: rootCertBundle } };
  }
  return undefined;
}

/** distribution's configuration; JSON is valid YAML, so it is written as JSON. */
function buildConfig(port: number, storageDir: string, auth: object | undefined, opts: DistributionOptions): object {
  return {
    version: '0.1',
    log: { level: 'info', formatter: 'text', accesslog: { disabled: false } },
    storage: {
      ...(opts.storage === 's3' ? {} : { filesystem: { rootdirectory: storageDir } }),
      delete: { enabled: opts.deleteEnabled ?? true },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: { addr: `127.0.0.1:${port}`, secret: randomBytes(16).toString('hex') },
    ...(auth ? { auth } : {}),
    ...(opts.proxy ? { proxy: opts.proxy } : {}),
  };
}

/** Spawns the registry with stdout and stderr appended to `logFile`. */
async function spawnRegistry(configFile: string, logFile: string, extraEnv: Record<string, string> = {}): Promise<ChildProcess> {
  const log = await open(logFile, 'a');
  try {
    const child = spawn(DISTRIBUTION_BINARY, ['serve', configFile], {
      stdio: ['ignore', log.fd, log.fd],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...extraEnv },
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    return child;
  } finally {
    await log.close();
  }
}

/** Polls `GET /v2/` until it answers, failing early if the process exits. */
async function waitReady(url: string, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`distribution exited (${child.exitCode ?? child.signalCode}) before answering:\n${tailFile(logFile, 4096)}`);
    }
    try {
      const res = await request(`${url}/v2/`, { headersTimeout: 1000, bodyTimeout: 1000 });
      await res.body.dump();
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`distribution did not answer GET /v2/ within ${READY_TIMEOUT_MS} ms:\n${tailFile(logFile, 4096)}`);
}

interface RunningParts {
  url: string;
  port: number;
  dir: string;
  storageDir: string;
  logFile: string;
}

/** Wraps a ready child process into the {@link Distribution} handle. */
function running(child: ChildProcess, parts: RunningParts): Distribution {
  const { url, dir, logFile } = parts;
  // Should the test process end without calling stop(), do not leave the registry behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let finalLog: string | undefined;
  let stopping: Promise<void> | undefined;

  async function accessLog(): Promise<AccessLogEntry[]> {
    if (finalLog !== undefined) return parseAccessLog(finalLog);
    const marker = randomBytes(8).toString('hex');
    const res = await request(`${url}/v2/?${SYNC_PARAM}=${marker}`);
    await res.body.dump();
    const deadline = Date.now() + 5000;
    for (;;) {
      const text = await readFile(logFile, 'utf8');
      if (text.includes(`${SYNC_PARAM}=${marker}`)) return parseAccessLog(text);
      if (Date.now() > deadline) throw new Error(`access log of ${url} did not record the marker request`);
      await sleep(10);
    }
  }

  function stop(): Promise<void> {
    stopping ??= (async () => {
      await terminateChild(child, STOP_GRACE_MS);
      process.removeListener('exit', killOnExit);
      finalLog = await readFile(logFile, 'utf8').catch(() => '');
      await rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  }

  if (child.pid === undefined) throw new Error('distribution has no pid');
  return { url, pid: child.pid, port: parts.port, storageDir: parts.storageDir, logFile, accessLog, stop };
}

/** `127.0.0.1 - - [27/Nov/2026:21:00:46 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"` */
const ACCESS_LINE = /^\S+ \S+ \S+ \[[^\]]+\] "([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) (\d+|-)/;

/**
 * What `d` answered so far with the body sizes it logged (accessLog() first, so that every
 * response sent before the call is in the log file).
 */
export async function sizedAccessLog(d: Distribution): Promise<SizedAccessLogEntry[]> {
  await d.accessLog();
  return parseAccessLog(await readFile(d.logFile, 'utf8'), true) as SizedAccessLogEntry[];
}

/** Extracts the access-log lines (combined log format) from distribution's mixed log output; `withBytes` adds each body's size. */
export function parseAccessLog(text: string, withBytes = false): AccessLogEntry[] {
  const entries: AccessLogEntry[] = [];
  for (const line of text.split('\n')) {
    const m = ACCESS_LINE.exec(line);
    if (!m) continue;
    const [, method, target, status, size] = m as unknown as [string, string, string, string, string];
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const query = q < 0 ? '' : target.slice(q + 1);
    if (path === '/v2/' && query.startsWith(`${SYNC_PARAM}=`)) continue;
    entries.push({ method, path, query, status: Number(status), ...(withBytes ? { bytes: size === '-' ? undefined : Number(size) } : {}) });
  }
  return entries;
}
