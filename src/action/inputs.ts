// The Action's inputs, typed and validated. Reading goes through a getter so that the
// validation is pure and testable; only invalid inputs fail the step.
import { parseDuration as parseDurationText, parseSize } from '../shared/index.js';

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

/** Every invalid input at once: the step fails with one error listing each. */
export class InputErrors extends Error {
  constructor(readonly errors: InputError[]) {
    super(errors.length === 1 ? errors[0]!.message : `${errors.length} invalid inputs:\n${errors.map((e) => `- ${e.message}`).join('\n')}`);
    this.name = 'InputErrors';
  }
}

/** Reads the raw value of an input ('' when unset). */
export type InputGetter = (name: string) => string;

/** The words core.getBooleanInput accepts (YAML 1.2 core schema). */
const TRUE_WORDS = ['true', 'True', 'TRUE'];
const FALSE_WORDS = ['false', 'False', 'FALSE'];
const BOOLEAN_WORDS = 'true | True | TRUE | false | False | FALSE';

/** Reads inputs, collecting what is wrong with each instead of stopping at the first. */
class InputReader {
  readonly errors: InputError[] = [];

  constructor(private readonly get: InputGetter) {}

  /** Runs `parse`; a thrown InputError is collected and `fallback` returned. */
  private check<T>(parse: () => T, fallback: T): T {
    try {
      return parse();
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      this.errors.push(err);
      return fallback;
    }
  }

  raw(name: string): string {
    return this.get(name).trim();
  }

  port(name: string, fallback: number): number {
    return this.check(() => {
      const v = this.raw(name);
      if (!v) return fallback;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InputError(name, `"${v}" is not a port number`);
      return n;
    }, fallback);
  }

  /** A boolean input, as core.getBooleanInput reads it (an empty value takes `fallback`). */
  bool(name: string, fallback: boolean): boolean {
    return this.check(() => parseBoolean(this.raw(name), name, fallback), fallback);
  }

  duration(name: string, fallback: number): number {
    return this.check(() => (this.raw(name) ? parseDuration(this.raw(name), name) : fallback), fallback);
  }

  size(name: string, fallback: number): number {
    return this.check(() => (this.raw(name) ? parseByteSize(this.raw(name), name) : fallback), fallback);
  }

  /** `value` when `valid`, else the error (`message`) collected and `value` returned anyway. */
  validate<T>(name: string, value: T, valid: boolean, message: string): T {
    if (!valid) this.errors.push(new InputError(name, message));
    return value;
  }

  lines(name: string): string[] {
    return this.get(name)
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
  }
}

/** A boolean input's value: core.getBooleanInput's words; '' is `fallback`. */
export function parseBoolean(value: string, name: string, fallback: boolean): boolean {
  if (!value) return fallback;
  if (TRUE_WORDS.includes(value)) return true;
  if (FALSE_WORDS.includes(value)) return false;
  throw new InputError(name, `"${value}" is not a boolean (${BOOLEAN_WORDS})`);
}

/** Parses a duration such as `90s`, `5m`, `1h` or a number of seconds. */
export function parseDuration(value: string, name: string): number {
  try {
    return parseDurationText(value);
  } catch (err) {
    throw new InputError(name, (err as Error).message);
  }
}

const UPSTREAM_RE = /^[a-z0-9.-]+(?::\d+)?=https?:\/\/\S+$/i;
const CREDENTIAL_RE = /^[a-z0-9.-]+(?::\d+)?=[^:\s]+:\S+$/i;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * Reads and validates every input; throws InputErrors listing every invalid one. `env` gives
 * RUNNER_TEMP for the default storage.
 */
export function readInputs(get: InputGetter, env: NodeJS.ProcessEnv = process.env): Inputs {
  const r = new InputReader(get);
  const upstreams = r.lines('upstreams');
  for (const u of upstreams) r.validate('upstreams', u, UPSTREAM_RE.test(u), `"${u}" is not NS=URL`);
  const upstreamCredentials = r.lines('upstream-credentials');
  // Never echo a credential line, even a malformed one.
  upstreamCredentials.forEach((c, i) => r.validate('upstream-credentials', c, CREDENTIAL_RE.test(c), `line ${i + 1} is not NS=USER:TOKEN`));
  const bindAddress = r.raw('bind-address') || '127.0.0.1';
  r.validate('bind-address', bindAddress, /^[0-9a-f.:]+$/i.test(bindAddress), `"${bindAddress}" is not an IP address`);
  const logLevel = r.raw('log-level') || 'info';
  r.validate('log-level', logLevel, LOG_LEVELS.includes(logLevel), `"${logLevel}" is not a log level (${LOG_LEVELS.join(', ')})`);
  const save = r.raw('save') || 'auto';
  const keyPrefix = r.raw('key-prefix') || 'regcache';
  r.validate('key-prefix', keyPrefix, /^[A-Za-z0-9._-]{1,100}$/.test(keyPrefix), 'use letters, digits, dot, dash and underscore (at most 100)');
  const temp = env.RUNNER_TEMP || '/tmp';
  const inputs: Inputs = {
    upstreams,
    upstreamCredentials,
    registryPort: r.port('registry-port', 5000),
    cachePort: r.port('cache-port', 5001),
    bindAddress,
    configureDocker: r.bool('configure-docker', true),
    configureContainerd: r.bool('configure-containerd', true),
    tagTtlMs: r.duration('tag-ttl', 300_000),
    summary: r.bool('summary', true),
    storage: r.raw('storage') || `${temp}/regcache/storage`,
    logLevel,
    dockerDaemonConfig: r.raw('docker-daemon-config') || '/etc/docker/daemon.json',
    containerdHostsDir: r.raw('containerd-hosts-dir') || '/etc/containerd/certs.d',
    dockerPidFile: r.raw('docker-pid-file') || '/var/run/docker.pid',
    restore: r.bool('restore', true),
    save: saveMode(r, save),
    keyPrefix,
    maxSaveBytes: r.size('max-save-size', 2 * 1024 ** 3),
    prefetch: r.bool('prefetch', true),
    persistRegistry: r.bool('persist-registry', false),
    matrix: r.raw('matrix'),
  };
  if (r.errors.length > 0) throw new InputErrors(r.errors);
  return inputs;
}

/** `save`: a boolean word (as the other boolean inputs) or `auto` (auto, Auto, AUTO). */
function saveMode(r: InputReader, v: string): 'auto' | 'true' | 'false' {
  if (['auto', 'Auto', 'AUTO'].includes(v)) return 'auto';
  if (TRUE_WORDS.includes(v)) return 'true';
  if (FALSE_WORDS.includes(v)) return 'false';
  r.validate('save', v, false, `"${v}" is not auto or a boolean (${BOOLEAN_WORDS})`);
  return 'auto';
}

/** Parses a size such as `2G`, `500M` or a number of bytes. */
export function parseByteSize(value: string, name: string): number {
  try {
    return parseSize(value);
  } catch (err) {
    throw new InputError(name, (err as Error).message);
  }
}
