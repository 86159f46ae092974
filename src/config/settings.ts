// What regcache makes of a distribution configuration: each key either sets one of `serve`'s
// settings, is accepted because it changes nothing here, is ignored with a warning (regcache
// behaves a little differently), or is refused with an error (ignoring it would change
// behaviour its user relies on: another storage driver, token auth, notifications...). The
// table below is the one the README's mapping table describes.
import { networkInterfaces } from 'node:os';
import type { Tree } from './yaml-values.js';

/** A setting with the name a message gives its origin (`http.addr in FILE`, `REGISTRY_HTTP_ADDR`). */
export interface Sourced<T> {
  value: T;
  name: string;
}

/** `serve`'s settings read from a distribution configuration. */
export interface DistributionSettings {
  /** True with `proxy.remoteurl`: `http.addr` is then the cache port. */
  proxy: boolean;
  registryAddr: Sourced<string>;
  cacheAddr: Sourced<string>;
  /** `storage.filesystem.rootdirectory`: the local storage directory (absent with `storage.s3`). */
  storage?: Sourced<string>;
  /**
   * `storage.s3` (or its other name, `storage.s3aws`): the bucket storage. `url` is
   * `s3://<bucket>/<rootdirectory without its slashes>`; `endpoint` is `regionendpoint` with the
   * scheme `secure` gives it when it has none; `forcePathStyle` is `forcepathstyle`, else true
   * with a `regionendpoint` (as 2.8 always does); `credentials` only when `accesskey` and
   * `secretkey` are both set (else the AWS SDK's chain, as distribution). `names` names each
   * field's key, for messages about it.
   */
  s3?: Sourced<S3Storage> & { names: { url: string } & Partial<Record<keyof S3Storage, string>> };
  /**
   * With `storage.s3`: true unless `storage.redirect.disable` is true, i.e. distribution would
   * answer a blob GET (and HEAD) with a 307 to a presigned URL of the object.
   */
  redirect?: boolean;
  htpasswd?: Sourced<string> & { realm: string };
  tlsCert?: Sourced<string>;
  tlsKey?: Sourced<string>;
  logLevel: string;
  /** `storage.delete.enabled` (off unless it is the boolean true, as distribution reads it). */
  deleteEnabled: boolean;
  /** The cache's upstream (`NS=URL`) with `proxy.remoteurl`. */
  upstream?: string;
  credentials?: { ns: string; username: string; password: string };
  /** Upload sessions idle longer than this are purged (Infinity: never). */
  uploadMaxAgeMs: number;
  uploadPurgeIntervalMs: number;
}

/** What `storage.s3` maps to: the settings of `serve --storage s3://...` (storage/s3/location.ts). */
export interface S3Storage {
  url: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** A key regcache does not take as distribution does. */
export interface Finding {
  level: 'error' | 'warning';
  /** The dotted key, or the variable, it is about. */
  key: string;
  message: string;
}

type Verdict = { use: 'used' } | { use: 'same'; why: string } | { use: 'warn'; why: string } | { use: 'error'; why: string };

const USED: Verdict = { use: 'used' };
const same = (why: string): Verdict => ({ use: 'same', why });
const warn = (why: string): Verdict => ({ use: 'warn', why });
const refuse = (why: string): Verdict => ({ use: 'error', why });

/** The storage keys that are not a driver (distribution's Storage.Type skips them too). */
const STORAGE_SECTIONS = ['maintenance', 'cache', 'delete', 'redirect', 'tag'];

/** The names distribution registers its S3 driver under (s3-aws/s3.go: "s3" and "s3aws"). */
const S3_DRIVERS = ['s3', 's3aws'];

/** strconv.ParseBool's spellings, which distribution's driver accepts in a string parameter. */
const GO_TRUE = ['1', 't', 'T', 'TRUE', 'true', 'True'];
const GO_FALSE = ['0', 'f', 'F', 'FALSE', 'false', 'False'];
/** A boolean driver parameter that is on (`true`, or a string strconv.ParseBool reads as true). */
const isOn = (v: unknown): boolean => v === true || (typeof v === 'string' && GO_TRUE.includes(v));

/** The storage classes distribution 3.x accepts (2.8: NONE, STANDARD, REDUCED_REDUNDANCY), upper-cased. */
const S3_STORAGE_CLASSES = ['NONE', 'STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'OUTPOSTS', 'GLACIER_IR', 'EXPRESS_ONEZONE'];
const storageClass = (v: unknown): string => (typeof v === 'string' ? v.toUpperCase() : '');

/**
 * The parameters of distribution's s3-aws driver (FromParameters, 2.8 and 3.x), below
 * `storage.s3`. The ones marked used are read (and checked) by s3Storage() below.
 */
const S3_POLICY: ReadonlyArray<{ key: string; verdict: Verdict; when?: (v: unknown) => boolean }> = [
  { key: '*', verdict: warn("not a parameter of distribution's s3 driver, which ignores it too") },
  ...['bucket', 'rootdirectory', 'region', 'regionendpoint', 'forcepathstyle', 'accesskey', 'secretkey', 'secure', 'encrypt', 'keyid', 'v4auth', 'redirectendpoint'].map((key) => ({ key, verdict: USED })),
  { key: 'skipverify', verdict: warn("regcache verifies the endpoint's TLS certificate: trust a private CA with NODE_EXTRA_CA_CERTS"), when: isOn },
  { key: 'skipverify', verdict: same('off: the certificate is verified') },
  { key: 'chunksize', verdict: same('regcache sizes its own multipart upload parts') },
  { key: 'multipartcopychunksize', verdict: same('regcache copies no objects within the bucket: blobs are written once, under their digest') },
  { key: 'multipartcopymaxconcurrency', verdict: same('regcache copies no objects within the bucket: blobs are written once, under their digest') },
  { key: 'multipartcopythresholdsize', verdict: same('regcache copies no objects within the bucket: blobs are written once, under their digest') },
  { key: 'storageclass', verdict: same("regcache sends no storage class: the bucket's default, STANDARD on AWS"), when: (v) => ['STANDARD', 'NONE'].includes(storageClass(v)) },
  {
    key: 'storageclass',
    verdict: warn("regcache sends no storage class: objects are stored in the bucket's default (STANDARD on AWS); a lifecycle rule can move them"),
    when: (v) => S3_STORAGE_CLASSES.includes(storageClass(v)),
  },
  { key: 'storageclass', verdict: refuse(`not a storage class distribution accepts (${S3_STORAGE_CLASSES.join(', ')})`) },
  { key: 'objectacl', verdict: same('regcache sends no ACL: objects are private'), when: (v) => v === 'private' },
  { key: 'objectacl', verdict: refuse("regcache sends no ACL: objects would be private to the writer's account (unless the bucket enforces its owner), not as this canned ACL says") },
  { key: 'useragent', verdict: warn("regcache's S3 requests carry the AWS SDK's User-Agent") },
  { key: 'usedualstack', verdict: warn('regcache does not read it: set AWS_USE_DUALSTACK_ENDPOINT=true for its AWS SDK'), when: isOn },
  { key: 'usedualstack', verdict: same('off') },
  { key: 'accelerate', verdict: warn("S3 Transfer Acceleration is not used: regcache reaches the bucket's regular endpoint"), when: isOn },
  { key: 'accelerate', verdict: same('off') },
  { key: 'usefipsendpoint', verdict: refuse('regcache does not read it, so FIPS endpoints would not be used: set AWS_USE_FIPS_ENDPOINT=true for its AWS SDK instead'), when: isOn },
  { key: 'usefipsendpoint', verdict: same('off') },
  { key: 'loglevel', verdict: same("the S3 client's requests are not logged"), when: (v) => v === false || (typeof v === 'string' && v.toLowerCase() === 'off') },
  { key: 'loglevel', verdict: warn("the S3 client's requests are not logged") },
  { key: 'sessiontoken', verdict: same('distribution never reads it either (its s3 driver passes no session token)') },
];

/**
 * Each key distribution knows, by dotted pattern (`*` is any one key), and what regcache does with
 * it. The longest matching pattern decides; a `when` narrows it to some values.
 */
export const KEY_POLICY: ReadonlyArray<{ key: string; verdict: Verdict; when?: (v: unknown) => boolean }> = [
  { key: 'version', verdict: USED },
  { key: 'log.level', verdict: USED },
  { key: 'loglevel', verdict: USED },
  { key: 'log.accesslog', verdict: same('regcache writes no access log') },
  { key: 'log.formatter', verdict: same('regcache logs JSON lines'), when: (v) => v === 'json' },
  { key: 'log.formatter', verdict: warn('regcache logs JSON lines (pino)') },
  { key: 'log.fields', verdict: warn('not added to the log lines') },
  { key: 'log.hooks', verdict: warn('log hooks (mail) are not run') },
  { key: 'log.reportcaller', verdict: warn('not reported') },
  { key: 'storage.filesystem.rootdirectory', verdict: USED },
  { key: 'storage.filesystem.maxthreads', verdict: same('no thread pool to size') },
  { key: 'storage.filesystem', verdict: USED },
  ...S3_DRIVERS.flatMap((driver) => S3_POLICY.map((r) => ({ ...r, key: `storage.${driver}.${r.key}` }))),
  { key: 'storage.*', verdict: refuse('another storage driver: regcache stores on a local filesystem (storage.filesystem) or S3 (storage.s3)') },
  { key: 'storage.delete', verdict: USED },
  { key: 'storage.delete.enabled', verdict: USED },
  { key: 'storage.maintenance', verdict: warn('not supported by regcache') },
  { key: 'storage.maintenance.uploadpurging', verdict: USED },
  { key: 'storage.maintenance.uploadpurging.enabled', verdict: USED },
  { key: 'storage.maintenance.uploadpurging.age', verdict: USED },
  { key: 'storage.maintenance.uploadpurging.interval', verdict: USED },
  { key: 'storage.maintenance.uploadpurging.dryrun', verdict: USED },
  { key: 'storage.maintenance.readonly', verdict: same('read-only mode is off'), when: (v) => !(v as Tree)?.enabled },
  { key: 'storage.maintenance.readonly', verdict: refuse('read-only mode is not supported: pushes would be accepted') },
  { key: 'storage.cache', verdict: same('regcache keeps no separate descriptor cache') },
  { key: 'storage.redirect', verdict: same('distribution reads only storage.redirect.disable') },
  { key: 'storage.redirect.disable', verdict: USED },
  { key: 'storage.tag', verdict: same('tag lookups are local files') },
  { key: 'auth.htpasswd', verdict: warn('not an htpasswd parameter regcache knows') },
  { key: 'auth.htpasswd.realm', verdict: USED },
  { key: 'auth.htpasswd.path', verdict: USED },
  { key: 'auth.*', verdict: refuse('only htpasswd auth is supported: without it every client would be let in') },
  { key: 'middleware', verdict: refuse('middleware is not supported (e.g. a CDN redirect)') },
  { key: 'reporting', verdict: warn('error reporting (bugsnag, newrelic) is not sent') },
  { key: 'http.addr', verdict: USED },
  { key: 'http.net', verdict: same('TCP'), when: (v) => v === 'tcp' },
  { key: 'http.net', verdict: refuse('only TCP listeners are supported') },
  { key: 'http.host', verdict: warn('Location headers stay relative, which clients follow') },
  { key: 'http.prefix', verdict: refuse('a URL prefix is not supported: the API is served at /v2/') },
  { key: 'http.secret', verdict: same('upload sessions are kept server-side') },
  { key: 'http.relativeurls', verdict: same('Location headers are relative') },
  { key: 'http.draintimeout', verdict: warn('in-flight requests are drained on SIGTERM without this limit') },
  { key: 'http.tls.certificate', verdict: USED },
  { key: 'http.tls.key', verdict: USED },
  { key: 'http.tls.clientcas', verdict: refuse('client certificate authentication is not supported') },
  { key: 'http.tls.clientauth', verdict: refuse('client certificate authentication is not supported') },
  { key: 'http.tls.minimumtls', verdict: warn("Node's default applies (TLS 1.2 and later)") },
  { key: 'http.tls.ciphersuites', verdict: warn("Node's default cipher suites apply") },
  { key: 'http.tls.letsencrypt', verdict: refuse("Let's Encrypt is not supported: give http.tls.certificate and http.tls.key") },
  { key: 'http.headers', verdict: warn('not added to responses') },
  { key: 'http.debug.addr', verdict: USED },
  { key: 'http.debug.prometheus.enabled', verdict: same('the cache port always serves /metrics') },
  { key: 'http.debug.prometheus.path', verdict: same('the cache port serves /metrics'), when: (v) => v === '/metrics' },
  { key: 'http.debug.prometheus.path', verdict: warn('the cache port serves the metrics at /metrics') },
  { key: 'http.http2', verdict: same('regcache serves HTTP/1.1') },
  { key: 'http.h2c', verdict: warn('regcache serves HTTP/1.1 only') },
  { key: 'notifications.events', verdict: same('no notifications are sent') },
  { key: 'notifications.endpoints', verdict: same('every endpoint is disabled'), when: (v) => Array.isArray(v) && v.every((e) => (e as Tree)?.disabled === true) },
  { key: 'notifications.endpoints', verdict: refuse('notifications are not supported: the endpoints would never be called') },
  { key: 'redis', verdict: same('no redis cache is used') },
  { key: 'health.storagedriver', verdict: same('regcache answers each request from the storage: a bucket that fails answers 503 UNAVAILABLE at once') },
  { key: 'health', verdict: warn('health checks do not gate GET /v2/') },
  { key: 'catalog.maxentries', verdict: warn('the catalog is paged with n and last only') },
  { key: 'tags.maxtags', verdict: warn('tag lists are paged with n and last only') },
  { key: 'proxy.remoteurl', verdict: USED },
  { key: 'proxy.username', verdict: USED },
  { key: 'proxy.password', verdict: USED },
  { key: 'proxy.exec', verdict: refuse('credential helpers are not run: give proxy.username and proxy.password') },
  { key: 'proxy.ttl', verdict: warn('cached tags are revalidated after --tag-ttl (5m) and blobs kept until --max-cache-size evicts them') },
  { key: 'proxy.cachewritetimeout', verdict: same('blobs are written to a local disk') },
  { key: 'compatibility', verdict: warn('schema 1 manifests are not signed or converted') },
  { key: 'validation', verdict: warn('manifests are validated as the OCI specification says; URL and platform rules are not applied') },
  { key: 'policy', verdict: refuse('repository class policies are not supported: content they refuse would be accepted') },
];

function matches(pattern: string[], path: string[]): boolean {
  return pattern.length <= path.length && pattern.every((seg, i) => seg === '*' || seg === path[i]);
}

const isTree = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

function isZero(v: unknown): boolean {
  if (v === null || v === undefined || v === '' || v === false || v === 0) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (isTree(v)) return Object.values(v).every(isZero);
  return false;
}

/** The value at a dotted path of `tree`. */
function at(tree: Tree, path: string[]): unknown {
  let v: unknown = tree;
  for (const seg of path) v = isTree(v) ? v[seg] : undefined;
  return v;
}

const POLICY = KEY_POLICY.map((r) => ({ ...r, path: r.key.split('.'), wild: r.key.split('.').filter((s) => s === '*').length }));

/** The rule deciding `path`: the longest matching pattern, a named key before `*`. */
function ruleFor(tree: Tree, path: string[]): (typeof POLICY)[number] | undefined {
  return POLICY.filter((r) => matches(r.path, path) && (!r.when || r.when(at(tree, path.slice(0, r.path.length))))).sort(
    (a, b) => b.path.length - a.path.length || a.wild - b.wild,
  )[0];
}

/** True when some rule names a key below `path` (the walk goes on down). */
function rulesBelow(path: string[]): boolean {
  return POLICY.some((r) => r.path.length > path.length && matches(r.path.slice(0, path.length), path));
}

/**
 * Reports each key set (to a value other than its zero) that regcache does not use as
 * distribution does: errors first, one finding per key. `name` names a key's origin.
 */
export function reviewKeys(tree: Tree, name: (key: string) => string): Finding[] {
  const findings: Finding[] = [];
  const seen = new Set<string>();
  const report = (level: Finding['level'], key: string, message: string) => {
    if (seen.has(key)) return;
    seen.add(key);
    findings.push({ level, key, message: `${name(key)}: ${message}` });
  };
  const visit = (value: unknown, path: string[]) => {
    // A storage driver or auth type counts even with no parameters (`auth: token`).
    const typed = path.length <= 2 && (path[0] === 'storage' || path[0] === 'auth');
    if (isZero(value) && !typed) return;
    if (isTree(value) && rulesBelow(path)) {
      for (const [k, v] of Object.entries(value)) visit(v, [...path, k]);
      return;
    }
    const rule = ruleFor(tree, path);
    if (!rule) return report('warning', path.join('.'), 'not supported by regcache: ignored');
    const key = path.slice(0, rule.path.length).join('.');
    if (rule.verdict.use === 'warn') report('warning', key, `ignored: ${rule.verdict.why}`);
    if (rule.verdict.use === 'error') report('error', key, `not supported: ${rule.verdict.why}`);
  };
  for (const [k, v] of Object.entries(tree)) visit(v, [k]);
  return findings.sort((a, b) => (a.level === b.level ? 0 : a.level === 'error' ? -1 : 1));
}

/** distribution's default root directory of the filesystem driver. */
export const DISTRIBUTION_ROOT = '/var/lib/registry';
/** The port `http.addr` defaults to here (distribution's images set it to :5000). */
const DEFAULT_HTTP_ADDR = ':5000';
/** The cache port when no `http.debug.addr` names it. */
const DEFAULT_CACHE_PORT = 5001;

/** The host that means every interface: `::` (dual stack) where IPv6 is up, else 0.0.0.0. */
export function anyHost(): string {
  const v6 = Object.values(networkInterfaces()).some((list) => list?.some((i) => i.family === 'IPv6'));
  return v6 ? '[::]' : '0.0.0.0';
}

/** Go's `:PORT` (every interface) as regcache's HOST:PORT. */
export function goListenAddress(addr: string): string {
  return addr.startsWith(':') ? `${anyHost()}${addr}` : addr;
}

function hostOf(addr: string): string {
  const i = addr.lastIndexOf(':');
  return i < 0 ? addr : addr.slice(0, i);
}

/** The ns the cache files a `proxy.remoteurl` under (docker.io for Docker Hub's hosts). */
export function nsOfRemoteUrl(url: string): string {
  let host: string;
  try {
    host = new URL(url).host.toLowerCase();
  } catch {
    return '';
  }
  return ['registry-1.docker.io', 'index.docker.io', 'registry.hub.docker.com', 'docker.io'].includes(host) ? 'docker.io' : host;
}

/** Parses Go durations (`168h`, `1h30m`, `90s`, `500ms`) and yaml.v2's integer nanoseconds. */
export function parseGoDuration(v: unknown): number | undefined {
  if (typeof v === 'number') return v / 1e6;
  if (typeof v !== 'string' || !/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(v)) return undefined;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms = 0;
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * unit[m[2]!]!;
  return ms;
}

/** Translates a configuration tree into `serve`'s settings; findings for values it cannot use. */
export function toSettings(tree: Tree, name: (key: string) => string): { settings: DistributionSettings; findings: Finding[] } {
  const findings: Finding[] = [];
  const str = (path: string) => {
    const v = at(tree, path.split('.'));
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const sourced = (path: string): Sourced<string> | undefined => {
    const v = str(path);
    return v === undefined ? undefined : { value: v, name: name(path) };
  };
  const error = (key: string, message: string) => findings.push({ level: 'error', key, message: `${name(key)}: ${message}` });

  const remote = str('proxy.remoteurl');
  const proxy = remote !== undefined;
  const httpAddr = str('http.addr') ?? DEFAULT_HTTP_ADDR;
  const served = { value: goListenAddress(httpAddr), name: str('http.addr') ? name('http.addr') : `http.addr (default ${DEFAULT_HTTP_ADDR})` };
  const debugAddr = str('http.debug.addr');
  const other = debugAddr
    ? { value: goListenAddress(debugAddr), name: name('http.debug.addr') }
    : { value: `${hostOf(served.value)}:${DEFAULT_CACHE_PORT}`, name: `the cache port (default: http.addr's host, port ${DEFAULT_CACHE_PORT})` };
  let registryAddr = served;
  let cacheAddr = other;
  if (proxy) {
    cacheAddr = served;
    // distribution has no writable port in proxy mode: regcache's stays on loopback, on a free port.
    registryAddr = { value: '127.0.0.1:0', name: 'the registry port (in proxy mode: 127.0.0.1, a free port)' };
    if (debugAddr) findings.push({ level: 'warning', key: 'http.debug.addr', message: `${name('http.debug.addr')}: ignored with proxy.remoteurl: the cache on http.addr serves /metrics` });
  }

  const settings: DistributionSettings = {
    proxy,
    registryAddr,
    cacheAddr,
    logLevel: str('log.level') ?? str('loglevel') ?? 'info',
    deleteEnabled: at(tree, ['storage', 'delete', 'enabled']) === true,
    ...purging(tree, error),
  };
  const storage = at(tree, ['storage']);
  const drivers = isTree(storage) ? Object.keys(storage).filter((k) => !STORAGE_SECTIONS.includes(k)) : [];
  const redirect = redirectSetting(tree, findings, name);
  if (drivers.length > 1) {
    // distribution: "must provide exactly one storage type" (a file), or a panic naming the
    // drivers when a variable added one to the file's ("multiple storage drivers specified in
    // configuration or environment").
    const which = drivers.map((d) => `${d} (${name(`storage.${d}`)})`).join(', ');
    findings.push({
      level: 'error',
      key: 'storage',
      message: `storage: must provide exactly one storage type, as distribution requires; provided: ${which}. REGISTRY_STORAGE=<driver> replaces the file's whole storage section`,
    });
  } else if (drivers[0] !== undefined && S3_DRIVERS.includes(drivers[0])) {
    const s3 = s3Storage(tree, drivers[0], findings, name);
    if (s3) settings.s3 = s3;
    settings.redirect = redirect;
    const endpoint = at(tree, ['storage', drivers[0], 'redirectendpoint']);
    if (redirect && !isZero(endpoint)) {
      const key = `storage.${drivers[0]}.redirectendpoint`;
      findings.push({ level: 'error', key, message: `${name(key)}: not supported: presigned blob URLs would name the S3 endpoint, not this one; set storage.redirect.disable: true to serve blobs through regcache` });
    }
  } else {
    const root = sourced('storage.filesystem.rootdirectory');
    if (root) settings.storage = root;
    else if (isTree(at(tree, ['storage', 'filesystem']))) settings.storage = { value: DISTRIBUTION_ROOT, name: `storage.filesystem.rootdirectory (default ${DISTRIBUTION_ROOT})` };
  }

  if (isTree(at(tree, ['auth', 'htpasswd']))) {
    const realm = at(tree, ['auth', 'htpasswd', 'realm']);
    const path = at(tree, ['auth', 'htpasswd', 'path']);
    if (typeof realm !== 'string') error('auth.htpasswd.realm', 'must be set (a string) for htpasswd auth, as distribution requires');
    if (typeof path !== 'string' || path === '') error('auth.htpasswd.path', 'must be set to the htpasswd file');
    if (typeof realm === 'string' && typeof path === 'string' && path) settings.htpasswd = { value: path, name: name('auth.htpasswd.path'), realm };
  }

  const cert = sourced('http.tls.certificate');
  const key = sourced('http.tls.key');
  if (cert && key) {
    settings.tlsCert = cert;
    settings.tlsKey = key;
  } else if (cert || key) {
    error(cert ? 'http.tls.key' : 'http.tls.certificate', `must be set together with ${cert ? 'http.tls.certificate' : 'http.tls.key'}`);
  }

  if (remote !== undefined) {
    const ns = nsOfRemoteUrl(remote);
    if (!ns || !/^https?:$/.test(new URL(remote).protocol)) {
      error('proxy.remoteurl', `"${remote}" is not an http(s) URL`);
    } else {
      settings.upstream = `${ns}=${new URL(remote).origin}`;
      const username = str('proxy.username');
      const password = str('proxy.password');
      if (username && password) settings.credentials = { ns, username, password };
    }
  }
  return { settings, findings };
}

/** `storage.maintenance.uploadpurging`, with distribution's defaults (168h, every 24h). */
function purging(tree: Tree, error: (key: string, message: string) => void): { uploadMaxAgeMs: number; uploadPurgeIntervalMs: number } {
  const defaults = { uploadMaxAgeMs: 168 * 3_600_000, uploadPurgeIntervalMs: 24 * 3_600_000 };
  const section = at(tree, ['storage', 'maintenance', 'uploadpurging']);
  if (!isTree(section)) return defaults;
  if (section.enabled === false || section.dryrun === true) return { uploadMaxAgeMs: Number.POSITIVE_INFINITY, uploadPurgeIntervalMs: defaults.uploadPurgeIntervalMs };
  const duration = (key: 'age' | 'interval', fallback: number) => {
    if (section[key] === undefined) return fallback;
    const ms = parseGoDuration(section[key]);
    if (ms === undefined || ms <= 0) {
      error(`storage.maintenance.uploadpurging.${key}`, `"${String(section[key])}" is not a duration such as 168h`);
      return fallback;
    }
    return ms;
  };
  return { uploadMaxAgeMs: duration('age', defaults.uploadMaxAgeMs), uploadPurgeIntervalMs: duration('interval', defaults.uploadPurgeIntervalMs) };
}

/**
 * `storage.redirect.disable`: distribution redirects blob GETs to the driver's presigned URLs
 * unless it is true, and panics ("invalid type for redirect config") when a `redirect` section
 * holds anything but a boolean `disable`. True when redirects are on.
 */
function redirectSetting(tree: Tree, findings: Finding[], name: (key: string) => string): boolean {
  const section = at(tree, ['storage', 'redirect']);
  if (section === undefined) return true;
  const disable = isTree(section) ? section.disable : undefined;
  if (typeof disable !== 'boolean') {
    const key = 'storage.redirect.disable';
    findings.push({ level: 'error', key, message: `${name(key)}: must be true or false when storage.redirect is given, as distribution requires (it stops with "invalid type for redirect config")` });
    return true;
  }
  return !disable;
}

/** A driver parameter as distribution reads a string one (Go's fmt.Sprint): undefined when absent or null. */
function goText(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** Go's regexp `^([^:]+)://`: the AWS SDK adds a scheme to an endpoint that does not match it. */
const HAS_SCHEME = /^[^:]+:\/\//;

/**
 * `storage.s3` as distribution's s3-aws driver reads it (FromParameters and New, 2.8 and 3.x),
 * with an error where distribution would not start or regcache cannot do what a key asks.
 */
function s3Storage(tree: Tree, driver: string, findings: Finding[], name: (key: string) => string): DistributionSettings['s3'] {
  const params = (at(tree, ['storage', driver]) ?? {}) as Tree;
  const key = (param: string) => `storage.${driver}.${param}`;
  const error = (param: string, message: string) => findings.push({ level: 'error', key: key(param), message: `${name(key(param))}: ${message}` });
  const warning = (param: string, message: string) => findings.push({ level: 'warning', key: key(param), message: `${name(key(param))}: ${message}` });
  /** getParameterAsBool: a boolean, or a string strconv.ParseBool reads; else distribution refuses to start. */
  const bool = (param: string, fallback: boolean): boolean => {
    const v = params[param];
    if (v === undefined || v === null) return fallback;
    if (typeof v === 'boolean') return v;
    if (typeof v === 'string' && GO_TRUE.includes(v)) return true;
    if (typeof v === 'string' && GO_FALSE.includes(v)) return false;
    error(param, `the ${param} parameter should be a boolean, as distribution requires`);
    return fallback;
  };
  for (const param of ['skipverify', 'usedualstack', 'accelerate', 'usefipsendpoint']) bool(param, false);

  let ok = true;
  const bucket = goText(params.bucket) ?? '';
  if (bucket === '') {
    error('bucket', 'must be set: distribution stops with "no bucket parameter provided"');
    ok = false;
  } else if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    // The names parseS3Url (storage/s3/location.ts) takes.
    error('bucket', `"${bucket}" is not a bucket name regcache can use: 3-63 lowercase letters, digits, dots and hyphens`);
    ok = false;
  }
  const prefix = (goText(params.rootdirectory) ?? '').replace(/^\/+|\/+$/g, '');
  const s3: S3Storage = { url: prefix ? `s3://${bucket}/${prefix}` : `s3://${bucket}` };
  const names: { url: string } & Partial<Record<keyof S3Storage, string>> = {
    url: params.rootdirectory === undefined ? name(key('bucket')) : `${name(key('bucket'))}, ${name(key('rootdirectory'))}`,
  };

  // New(): the endpoint as given; the AWS SDK (endpoints.AddScheme) adds https://, or http://
  // with secure: false, to one without a scheme. Without an endpoint, AWS's own (over http
  // with secure: false: regcache stays on https).
  const secure = bool('secure', true);
  const rawEndpoint = goText(params.regionendpoint) ?? '';
  if (rawEndpoint !== '') {
    const endpoint = HAS_SCHEME.test(rawEndpoint) ? rawEndpoint : `${secure ? 'https' : 'http'}://${rawEndpoint}`;
    if (URL.canParse(endpoint) && /^https?:$/.test(new URL(endpoint).protocol)) {
      s3.endpoint = endpoint;
      names.endpoint = params.secure === undefined || HAS_SCHEME.test(rawEndpoint) ? name(key('regionendpoint')) : `${name(key('regionendpoint'))}, ${name(key('secure'))}`;
    } else {
      error('regionendpoint', `"${rawEndpoint}" is not an http(s) URL or host[:port]`);
      ok = false;
    }
  } else if (!secure) {
    warning('secure', 'ignored without a regionendpoint: regcache reaches AWS S3 over HTTPS');
  }

  // 3.x needs a region only without an endpoint (2.8 always: regcache takes 3.x's rule, the
  // AWS SDK's chain or us-east-1 giving the region to sign with).
  const region = goText(params.region) ?? '';
  if (region !== '') {
    s3.region = region;
    names.region = name(key('region'));
  } else if (rawEndpoint === '') {
    error('region', 'must be set without a regionendpoint: distribution stops with "no region parameter provided"');
    ok = false;
  }

  // 3.x: forcepathstyle (default false). 2.8 has no such key and always uses path-style
  // addressing with a regionendpoint: without the key, so does regcache.
  if (params.forcepathstyle !== undefined && params.forcepathstyle !== null) {
    s3.forcePathStyle = bool('forcepathstyle', false);
    names.forcePathStyle = name(key('forcepathstyle'));
  } else if (s3.endpoint) {
    s3.forcePathStyle = true;
    names.forcePathStyle = `${name(key('regionendpoint'))} (path-style addressing, as distribution 2.8 always uses with an endpoint)`;
  }

  // Static credentials only when both are set (2.8: an empty static provider falls through to
  // the chain; 3.x: the default chain): else the AWS SDK's chain.
  const accessKeyId = goText(params.accesskey) ?? '';
  const secretAccessKey = goText(params.secretkey) ?? '';
  if (accessKeyId !== '' && secretAccessKey !== '') {
    s3.credentials = { accessKeyId, secretAccessKey };
    names.credentials = `${name(key('accesskey'))}, ${name(key('secretkey'))}`;
  } else if (accessKeyId !== '' || secretAccessKey !== '') {
    const given = accessKeyId !== '' ? 'accesskey' : 'secretkey';
    warning(given, `ignored without ${given === 'accesskey' ? 'secretkey' : 'accesskey'}, as distribution ignores it: the AWS SDK's credential chain applies`);
  }

  if (!bool('v4auth', true)) error('v4auth', 'not supported: regcache signs every request with Signature Version 4, which an endpoint needing version 2 would refuse');

  // Server-side encryption: distribution asks for SSE-S3 (AES256), or SSE-KMS with keyid, on
  // each object it writes. regcache asks for none, so the bucket's default encryption applies.
  const encrypt = bool('encrypt', false);
  const keyId = goText(params.keyid) ?? '';
  if (encrypt && keyId !== '') {
    error('keyid', 'not supported: regcache does not ask for SSE-KMS encryption with this key; objects would get the bucket\'s default encryption instead');
  } else if (encrypt && rawEndpoint !== '') {
    error('encrypt', "not supported with a regionendpoint: regcache asks for no server-side encryption, so objects would be stored as the bucket's default says (possibly unencrypted)");
  } else if (encrypt) {
    warning('encrypt', "regcache asks for no server-side encryption: AWS S3 encrypts every new object with the bucket's default encryption, SSE-S3 (AES256) unless set otherwise");
  } else if (keyId !== '') {
    warning('keyid', 'ignored: encrypt is not true');
  }

  return ok ? { value: s3, name: name(`storage.${driver}`), names } : undefined;
}
