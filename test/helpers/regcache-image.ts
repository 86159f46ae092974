// The container image under test: built once per test file from the repository's Dockerfile
// on the locally assembled Node base (node-base.ts) in a private dockerd, and run with
// `--network host` (the test dockerd has no bridge) on free loopback ports passed as distribution's
// REGISTRY_HTTP_ADDR and REGISTRY_HTTP_DEBUG_ADDR (regcache's cache port, as in registry:3's stock
// configuration). Containers and volumes go with the dockerd.
import { randomBytes } from 'node:crypto';
import { type Dockerd, startDockerd } from './dockerd.js';
import { importNodeBaseImage, REPOSITORY_ROOT } from './node-base.js';
import { freePort, waitFor, waitForHttp } from './proc.js';

/** A dockerd holding the regcache image. */
export interface ImageRig {
  dockerd: Dockerd;
  /** The regcache image's tag. */
  image: string;
  /** The base it was built on. */
  base: string;
}

/** The tools the image tests drive (for skipUnless). */
export const IMAGE_TOOLS = ['docker', 'dockerd', 'containerd', 'runc', 'busybox'] as const;

/**
 * Starts a dockerd, imports the Node base and builds the Dockerfile on it (classic builder,
 * `--build-arg BASE=...`). dist/ must be built: the image holds the committed bundles.
 */
export async function buildImageRig(): Promise<ImageRig> {
  const dockerd = await startDockerd();
  try {
    const base = 'regcache-test/node-base:24';
    const image = 'regcache-test/regcache:latest';
    await importNodeBaseImage(dockerd, base);
    await dockerd.docker(['build', '--build-arg', `BASE=${base}`, '-t', image, REPOSITORY_ROOT], { timeoutMs: 600_000 });
    return { dockerd, image, base };
  } catch (err) {
    await dockerd.stop();
    throw err;
  }
}

/** A unique name for a container or volume. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Options of {@link runRegcacheContainer}. */
export interface ContainerOptions {
  /** Named volume (or host path) mounted at /var/lib/registry. */
  volume: string;
  /** Extra `docker run` options, before the image (e.g. `-v`, `-e`, `--health-interval`). */
  runArgs?: readonly string[];
  /** Arguments after the image (default: the image's CMD, `serve`). */
  command?: readonly string[];
}

/** A started container and the loopback ports it was told to listen on. */
export interface RegcacheContainer {
  name: string;
  registryPort: number;
  cachePort: number;
  /** `127.0.0.1:<registryPort>`, the name docker pushes to. */
  registryHost: string;
}

/** `docker run -d --network host` of the image on two free loopback ports. */
export async function runRegcacheContainer(rig: ImageRig, opts: ContainerOptions): Promise<RegcacheContainer> {
  const name = uniqueName('rc-img');
  const [registryPort, cachePort] = [await freePort(), await freePort()];
  await rig.dockerd.docker([
    'run', '-d', '--name', name, '--network', 'host',
    '-v', `${opts.volume}:/var/lib/registry`,
    '-e', `REGISTRY_HTTP_ADDR=127.0.0.1:${registryPort}`,
    '-e', `REGISTRY_HTTP_DEBUG_ADDR=127.0.0.1:${cachePort}`,
    ...(opts.runArgs ?? []),
    rig.image,
    ...(opts.command ?? []),
  ]);
  return { name, registryPort, cachePort, registryHost: `127.0.0.1:${registryPort}` };
}

/** A container's state: Status (running, exited), ExitCode, Health.Status when it has one. */
export async function containerState(rig: ImageRig, name: string): Promise<{ Status: string; ExitCode: number; Health?: { Status: string; Log?: Array<{ ExitCode: number; Output: string }> } }> {
  return JSON.parse((await rig.dockerd.docker(['inspect', '--format', '{{json .State}}', name])).stdout);
}

/** The container's output so far (stdout and stderr, as `docker logs` gives them). */
export async function containerLogs(rig: ImageRig, name: string): Promise<string> {
  const r = await rig.dockerd.docker(['logs', name]);
  return `${r.stdout}${r.stderr}`;
}

/** Waits until `GET <url>/v2/` answers 200 or 401, failing early (with the logs) if the container stops. */
export async function waitServing(rig: ImageRig, c: RegcacheContainer, url = `http://127.0.0.1:${c.registryPort}`): Promise<void> {
  const logs = async () => `\n--- docker logs ${c.name} ---\n${await containerLogs(rig, c.name).catch(() => '')}`;
  const outcome = await waitFor(async () => {
    const state = await containerState(rig, c.name);
    if (state.Status !== 'running') return `container ${c.name} is ${state.Status} (exit ${state.ExitCode})`;
    return waitForHttp(`${url}/v2/`, { statuses: [200, 401], timeoutMs: 1_000 }).then(() => 'serving', () => false);
  }, { what: `${c.name} serving ${url}`, timeoutMs: 60_000, intervalMs: 200 }).catch(async (err: Error) => {
    throw new Error(`${err.message}${await logs()}`);
  });
  if (outcome !== 'serving') throw new Error(`${outcome}${await logs()}`);
}

/** Waits until docker reports the container's health as `status`; fails early (with the logs) if it stops. */
export async function waitHealth(rig: ImageRig, name: string, status: 'healthy' | 'unhealthy', timeoutMs = 90_000): Promise<void> {
  let last: unknown;
  const outcome = await waitFor(async () => {
    const state = await containerState(rig, name);
    last = state.Health;
    if (state.Status !== 'running') return `container ${name} is ${state.Status} (exit ${state.ExitCode})`;
    return state.Health?.Status === status && 'reached';
  }, { what: `${name} to be ${status}`, timeoutMs, intervalMs: 500 }).catch((err: Error) => err.message);
  if (outcome !== 'reached') {
    throw new Error(`${outcome}; last health: ${JSON.stringify(last)}\n--- docker logs ${name} ---\n${await containerLogs(rig, name).catch(() => '')}`);
  }
}
