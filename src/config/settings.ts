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
  storage?: Sourced<string>;
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
  { key: 'storage.*', verdict: refuse('another storage driver: regcache stores on a local filesystem only (storage.filesystem)') },
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
  { key: 'storage.redirect', verdict: same('the filesystem driver never redirects') },
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
  { key: 'health.storagedriver', verdict: same('the storage is a local directory') },
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
    ...purging(tree, name, error),
  };
  const root = sourced('storage.filesystem.rootdirectory');
  if (root) settings.storage = root;
  else if (isTree(at(tree, ['storage', 'filesystem']))) settings.storage = { value: DISTRIBUTION_ROOT, name: `storage.filesystem.rootdirectory (default ${DISTRIBUTION_ROOT})` };

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
function purging(tree: Tree, name: (key: string) => string, error: (key: string, message: string) => void): { uploadMaxAgeMs: number; uploadPurgeIntervalMs: number } {
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
  void name;
  return { uploadMaxAgeMs: duration('age', defaults.uploadMaxAgeMs), uploadPurgeIntervalMs: duration('interval', defaults.uploadPurgeIntervalMs) };
}
