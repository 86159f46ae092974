// What kind of runner this is, as far as pointing docker at the cache goes. Each case
// regcache cannot handle itself becomes a warning with the manual steps, never a failure.
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { canSudo, isRoot, run } from './privileged.js';

/** What main found out about the runner. */
export interface Environment {
  platform: NodeJS.Platform;
  hasDocker: boolean;
  /** Set when docker cannot be configured here, saying why. */
  dockerBlocker?: string;
  warnings: string[];
}

/** True inside a container (a `container:` job, or Docker-in-Docker runners). */
export function inContainer(): boolean {
  if (existsSync('/.dockerenv') || existsSync('/run/.containerenv')) return true;
  try {
    return /\/(docker|kubepods|containerd)[/-]/.test(readFileSync('/proc/1/cgroup', 'utf8'));
  } catch {
    return false;
  }
}

function manualSteps(cacheHint: string): string {
  return `Point your docker daemon at the cache yourself: add "registry-mirrors": ["${cacheHint}"] to its daemon.json and reload it (SIGHUP), or pull through the cache by name (${cacheHint.replace(/^https?:\/\//, '')}/library/alpine).`;
}

/** Inspects the runner; `cacheHint` is the cache URL used in the manual steps. */
export async function detectEnvironment(env: NodeJS.ProcessEnv, cacheHint: string, daemonConfig: string): Promise<Environment> {
  const out: Environment = { platform: process.platform, hasDocker: false, warnings: [] };
  const block = (why: string) => {
    out.dockerBlocker = why;
    out.warnings.push(`${why} ${manualSteps(cacheHint)}`);
  };
  if (process.platform !== 'linux') {
    block(`This runner is ${process.platform}: regcache does not configure docker there; the registry and cache still run.`);
    return out;
  }
  out.hasDocker = (await run('docker', ['version', '--format', '{{.Server.Version}}'], 15_000)).code === 0;
  const dockerHost = env.DOCKER_HOST ?? '';
  if (dockerHost.startsWith('tcp://') || dockerHost.startsWith('ssh://')) {
    block(`DOCKER_HOST is ${dockerHost}: the daemon runs elsewhere (Docker-in-Docker, Actions Runner Controller) and cannot reach this job's localhost.`);
  } else if (inContainer() && out.hasDocker && (await run('docker', ['info', '--format', '{{.Name}}'], 15_000)).stdout.trim() !== hostname()) {
    // In a container whose docker daemon is the host's (its name is not ours): a `container:` job.
    block('This job runs in a container: the host\'s docker daemon cannot reach the container\'s localhost. Use bind-address with an address the daemon can reach, or configure the daemon yourself.');
  } else if (!out.hasDocker) {
    block('No docker daemon answers here.');
  } else if (/rootless/.test((await run('docker', ['info', '--format', '{{json .SecurityOptions}}'], 15_000)).stdout)) {
    block('Docker runs rootless: its daemon.json is ~/.config/docker/daemon.json and it reloads with systemctl --user.');
  } else if (!isRoot() && !(await canSudo()) && !existsSync(daemonConfig)) {
    block('Neither root nor passwordless sudo is available to change the docker daemon configuration.');
  }
  return out;
}
