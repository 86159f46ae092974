// The Action's inputs, typed and validated. Reading goes through a getter so that the
// validation is pure and testable; only invalid inputs fail the step.

/** Everything main needs, validated. */
export interface Inputs {
  upstreams: string[];
  /** `NS=USER:TOKEN` lines (secrets: masked before anything is logged). */
  upstreamCredentials: string[];
  registryPort: number;
  cachePort: number;
  bindAddress: string;
  configureDocker: boolean;
  configureContainerd: boolean;
  tagTtlMs: number;
  summary: boolean;
  storage: string;
  logLevel: string;
  /** Path of the docker daemon's configuration file. */
  dockerDaemonConfig: string;
  /** Where containerd reads `hosts.toml` files (`config_path`). */
  containerdHostsDir: string;
  /** dockerd's pid file, for a SIGHUP reload where systemd does not manage docker. */
  dockerPidFile: string;
  /** Restore from the Actions cache (the index now, packs on demand). */
  restore: boolean;
  /** Save to the Actions cache: auto (pushes to the default branch), true, false. */
  save: 'auto' | 'true' | 'false';
  keyPrefix: string;
  maxSaveBytes: number;
  /** Restore every indexed pack in the background at start. */
  prefetch: boolean;
  /** Save images pushed to the :5000 registry too, and restore those a previous job saved. */
  persistRegistry: boolean;
  /**
   * The job's matrix values (`${{ toJSON(matrix) }}`, action.yml's default): legs of one run
   * share run id, attempt and job id, and only these tell their index entries apart.
   */
  matrix: string;
}

/** An input that cannot be used; it fails the step naming the input. */
export class InputError extends Error {
  constructor(readonly input: string, message: string) {
    super(`input ${input}: ${message}`);
    this.name = 'InputError';
  }
}

/** Reads the raw value of an input ('' when unset). */
export type InputGetter = (name: string) => string;

function port(get: InputGetter, name: string, fallback: number): number {
  const v = get(name).trim();
  if (!v) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InputError(name, `"${v}" is not a port number`);
  return n;
}

function bool(get: InputGetter, name: string, fallback: boolean): boolean {
  const v = get(name).trim().toLowerCase();
  if (!v) return fallback;
  if (['true', 'yes', '1', 'on'].includes(v)) return true;
  if (['false', 'no', '0', 'off'].includes(v)) return false;
  throw new InputError(name, `"${v}" is not true or false`);
}

/** Parses a duration such as `90s`, `5m`, `1h` or a number of seconds. */
export function parseDuration(value: string, name: string): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new InputError(name, `"${value}" is not a duration such as 90s, 5m, 1h`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's']!;
}

function lines(get: InputGetter, name: string): string[] {
  return get(name)
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

const UPSTREAM_RE = /^[a-z0-9.-]+(?::\d+)?=https?:\/\/\S+$/i;
const CREDENTIAL_RE = /^[a-z0-9.-]+(?::\d+)?=[^:\s]+:\S+$/i;

/** Reads and validates every input. `env` gives RUNNER_TEMP for the default storage. */
export function readInputs(get: InputGetter, env: NodeJS.ProcessEnv = process.env): Inputs {
  const upstreams = lines(get, 'upstreams');
  for (const u of upstreams) if (!UPSTREAM_RE.test(u)) throw new InputError('upstreams', `"${u}" is not NS=URL`);
  const upstreamCredentials = lines(get, 'upstream-credentials');
  // Never echo a credential line, even a malformed one.
  upstreamCredentials.forEach((c, i) => {
    if (!CREDENTIAL_RE.test(c)) throw new InputError('upstream-credentials', `line ${i + 1} is not NS=USER:TOKEN`);
  });
  const bindAddress = get('bind-address').trim() || '127.0.0.1';
  if (!/^[0-9a-f.:]+$/i.test(bindAddress)) throw new InputError('bind-address', `"${bindAddress}" is not an IP address`);
  const logLevel = get('log-level').trim() || 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) throw new InputError('log-level', `"${logLevel}" is not a log level`);
  const temp = env.RUNNER_TEMP || '/tmp';
  return {
    upstreams,
    upstreamCredentials,
    registryPort: port(get, 'registry-port', 5000),
    cachePort: port(get, 'cache-port', 5001),
    bindAddress,
    configureDocker: bool(get, 'configure-docker', true),
    configureContainerd: bool(get, 'configure-containerd', true),
    tagTtlMs: get('tag-ttl').trim() ? parseDuration(get('tag-ttl'), 'tag-ttl') : 300_000,
    summary: bool(get, 'summary', true),
    storage: get('storage').trim() || `${temp}/regcache/storage`,
    logLevel,
    dockerDaemonConfig: get('docker-daemon-config').trim() || '/etc/docker/daemon.json',
    containerdHostsDir: get('containerd-hosts-dir').trim() || '/etc/containerd/certs.d',
    dockerPidFile: get('docker-pid-file').trim() || '/var/run/docker.pid',
    restore: bool(get, 'restore', true),
    save: saveMode(get),
    keyPrefix: keyPrefix(get),
    maxSaveBytes: get('max-save-size').trim() ? parseByteSize(get('max-save-size'), 'max-save-size') : 2 * 1024 ** 3,
    prefetch: bool(get, 'prefetch', true),
    persistRegistry: bool(get, 'persist-registry', false),
    matrix: get('matrix').trim(),
  };
}

function saveMode(get: InputGetter): 'auto' | 'true' | 'false' {
  const v = get('save').trim().toLowerCase() || 'auto';
  if (v !== 'auto' && v !== 'true' && v !== 'false') throw new InputError('save', `"${v}" is not auto, true or false`);
  return v;
}

function keyPrefix(get: InputGetter): string {
  const v = get('key-prefix').trim() || 'regcache';
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(v)) throw new InputError('key-prefix', 'use letters, digits, dot, dash and underscore (at most 100)');
  return v;
}

/** Parses a size such as `2G`, `500M` or a number of bytes. */
export function parseByteSize(value: string, name: string): number {
  const m = /^(\d+)\s*([kmgt]?)i?b?$/i.exec(value.trim());
  if (!m) throw new InputError(name, `"${value}" is not a size such as 2G or 500M`);
  return Number(m[1]) * { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
}
