// A private Docker daemon for end-to-end tests (Debian's dockerd 20.10, run as root).
// Everything of an instance lives in one short temp dir:
//   <dir>/docker.sock      API socket (client: DOCKER_HOST=unix://<dir>/docker.sock)
//   <dir>/daemon.json      --config-file; reload() rewrites it and sends SIGHUP
//   <dir>/data, <dir>/exec --data-root, --exec-root
//   <dir>/ctrd/            its own containerd (see containerd.ts), never the system one
//   <dir>/client/          DOCKER_CONFIG of the client, so tests never touch ~/.docker
//   <dir>/dockerd.log      stdout+stderr of dockerd
// Networking is off (--bridge=none, no iptables, no ip_forward), storage is vfs, so nothing
// outside the dir changes. With no bridge, BuildKit builds need `--network none` or `host`;
// the classic builder (the default of this client) works as is.
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Containerd, DOCKERD_PREFIX, killCgroup, recordNamespace, startContainerd, sweepAbandonedInstances } from './containerd.js';
import { type ChildHandle, type RunResult, run, startProcess, stopProcessesUnder, tempDir, unmountUnder, waitFor, waitForHttp } from './proc.js';
import { daemonEnv, privateToolEnv, toolPath } from './tools.js';

/** Options for startDockerd. */
export interface DockerdOptions {
  /**
   * Contents of daemon.json, e.g. `{ "registry-mirrors": ["http://127.0.0.1:5001"] }`.
   * Must not repeat a setting the helper passes as a flag (storage-driver, data-root, ...:
   * see dockerdArgs); dockerd refuses to start on such a conflict.
   */
  daemonJson?: Record<string, unknown>;
  /** How long to wait for the API to answer (default 60 s). */
  startTimeoutMs?: number;
}

/** Options for Dockerd.docker. */
export interface DockerOptions {
  /** Resolve with the nonzero code instead of throwing. */
  allowFail?: boolean;
  /** Extra environment for the client, e.g. `{ DOCKER_BUILDKIT: '1' }`. */
  env?: Record<string, string>;
  cwd?: string;
  /** Written to the client's stdin. */
  input?: string | Buffer;
  /** Kill the client after this long (default 120 s). */
  timeoutMs?: number;
}

/** A running private dockerd. */
export interface Dockerd {
  /** Path of the API unix socket. */
  readonly socket: string;
  /** `unix://<socket>`, for DOCKER_HOST or `docker -H`. */
  readonly host: string;
  /** PID of the process started: dockerd, or docker-init supervising it (see startProcess). */
  readonly pid: number;
  /** The instance's directory (see the layout at the top of this file). */
  readonly dir: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  /** daemon.json. */
  readonly configFile: string;
  readonly logFile: string;
  /** The containerd this dockerd runs on. */
  readonly containerd: Containerd;
  /** Environment that points the docker CLI (or another client) at this daemon only. */
  readonly clientEnv: NodeJS.ProcessEnv;
  /** Runs Debian's docker client against this daemon; throws with stderr on nonzero unless allowFail. */
  docker(args: readonly string[], opts?: DockerOptions): Promise<RunResult>;
  /**
   * Re-reads daemon.json (SIGHUP), after replacing its contents when daemonJson is given, and
   * resolves once dockerd logged "Reloaded configuration" (registry-mirrors, insecure-registries
   * and the like apply from then on).
   */
  reload(daemonJson?: Record<string, unknown>): Promise<void>;
  /** Kills its containers, stops dockerd, then its containerd; removes the dir. Idempotent. */
  stop(): Promise<void>;
}

/** Log line dockerd writes after a successful SIGHUP reload. */
const RELOADED = 'Reloaded configuration';

function dockerdArgs(dir: string, containerd: Containerd): string[] {
  const ns = containerd.namespace;
  return [
    `--containerd=${containerd.address}`,
    `--containerd-namespace=${ns}`,
    `--containerd-plugins-namespace=${ns}-plugins`,
    `--host=unix://${join(dir, 'docker.sock')}`,
    `--config-file=${join(dir, 'daemon.json')}`,
    `--data-root=${join(dir, 'data')}`,
    `--exec-root=${join(dir, 'exec')}`,
    `--pidfile=${join(dir, 'dockerd.pid')}`,
    '--storage-driver=vfs',
    '--bridge=none',
    '--iptables=false',
    '--ip-forward=false',
    '--ip-masq=false',
    '--userland-proxy=false',
    '--exec-opt=native.cgroupdriver=cgroupfs',
    `--cgroup-parent=/${ns}`,
    '--log-level=info',
  ];
}

/** Starts a private dockerd (and its containerd) and waits until `GET /_ping` answers 200. */
export async function startDockerd(opts: DockerdOptions = {}): Promise<Dockerd> {
  await sweepAbandonedInstances();
  const tmp = await tempDir(DOCKERD_PREFIX);
  const dir = tmp.path;
  const socket = join(dir, 'docker.sock');
  let containerd: Containerd | undefined;
  let child: ChildHandle | undefined;
  try {
    await mkdir(join(dir, 'ctrd'));
    await mkdir(join(dir, 'client'));
    await writeDaemonJson(dir, opts.daemonJson);
    containerd = await startContainerd({ dir: join(dir, 'ctrd') });
    // dockerd's containerd namespace doubles as its cgroup parent: containers run in /<ns>
    await recordNamespace(dir, containerd.namespace);
    child = await startProcess(toolPath('dockerd'), dockerdArgs(dir, containerd), {
      name: 'dockerd',
      logFile: join(dir, 'dockerd.log'),
      env: daemonEnv(),
      supervise: true,
    });
    await waitForHttp('http://localhost/_ping', { socketPath: socket, statuses: [200], process: child, timeoutMs: opts.startTimeoutMs ?? 60_000 });
  } catch (err) {
    await child?.stop();
    await containerd?.stop();
    await tmp.cleanup();
    throw err;
  }
  return makeInstance({ dir, socket, ns: containerd.namespace, child, containerd, cleanup: tmp.cleanup });
}

interface Parts {
  dir: string;
  socket: string;
  ns: string;
  child: ChildHandle;
  containerd: Containerd;
  cleanup: () => Promise<void>;
}

function makeInstance(p: Parts): Dockerd {
  const host = `unix://${p.socket}`;
  const clientEnv = privateToolEnv(p.dir, { DOCKER_HOST: host, DOCKER_CONFIG: join(p.dir, 'client') });
  const configFile = join(p.dir, 'daemon.json');
  const docker = (args: readonly string[], o: DockerOptions = {}) =>
    run(toolPath('docker'), args, { ...o, env: { ...clientEnv, ...o.env } });
  let stopping: Promise<void> | undefined;
  return {
    socket: p.socket,
    host,
    pid: p.child.pid,
    dir: p.dir,
    dataRoot: join(p.dir, 'data'),
    execRoot: join(p.dir, 'exec'),
    configFile,
    logFile: p.child.logFile,
    containerd: p.containerd,
    clientEnv,
    docker,
    reload: (daemonJson) => reload(p.child, p.dir, daemonJson),
    stop: () => (stopping ??= shutdown(p, docker)),
  };
}

/**
 * Writes <dir>/daemon.json: the caller's settings plus the trust key path, which dockerd 20.10
 * only takes from the file (otherwise it writes /etc/docker/key.json).
 */
async function writeDaemonJson(dir: string, daemonJson: Record<string, unknown> = {}): Promise<void> {
  const settings = { 'deprecated-key-path': join(dir, 'key.json'), ...daemonJson };
  await writeFile(join(dir, 'daemon.json'), JSON.stringify(settings, null, 2));
}

async function reload(child: ChildHandle, dir: string, daemonJson?: Record<string, unknown>): Promise<void> {
  const configFile = join(dir, 'daemon.json');
  if (daemonJson !== undefined) await writeDaemonJson(dir, daemonJson);
  const count = () => readFileSync(child.logFile, 'utf8').split(RELOADED).length - 1;
  const before = count();
  process.kill(child.pid, 'SIGHUP');
  await waitFor(() => count() > before, { what: `dockerd to reload ${configFile}`, process: child, timeoutMs: 10_000 });
}

/** SIGKILLs running containers: on SIGTERM dockerd would give each its 10 s stop timeout. */
async function killContainers(docker: Dockerd['docker']): Promise<void> {
  const ps = await docker(['ps', '-q'], { allowFail: true, timeoutMs: 10_000 });
  const ids = ps.stdout.split('\n').filter(Boolean);
  if (ids.length > 0) await docker(['kill', ...ids], { allowFail: true, timeoutMs: 20_000 });
}

async function shutdown(p: Parts, docker: Dockerd['docker']): Promise<void> {
  if (!p.child.exitInfo()) await killContainers(docker);
  await p.child.stop(20_000);
  await p.containerd.stop();
  await stopProcessesUnder(p.dir);
  await unmountUnder(p.dir);
  await killCgroup(p.ns);
  await p.cleanup();
}
