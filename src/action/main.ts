// The Action's main step: validate inputs, start regcache detached, point docker (and
// containerd) at the cache, prove the daemon uses it, and hand everything to post.
import * as core from '@actions/core';
import { join } from 'node:path';
import { readInputs, InputError, type Inputs } from './inputs.js';
import { saveState, type ActionState } from './state.js';
import { detectEnvironment } from './environment.js';
import { portFree, spawnServer } from './server-process.js';
import { configureDocker, detectReload } from './docker-daemon.js';
import { writeContainerdHosts } from './containerd-hosts.js';
import { buildkitConfig } from './buildkit.js';
import { proveMirror } from './mirror-proof.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { ActionsCache, defaultBranchOf, emptyIndex, restoreIndex, shouldSave } from '../persist/index.js';

function isLoopback(address: string): boolean {
  return address === 'localhost' || address.startsWith('127.') || address === '::1';
}

function addr(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Restores the persistence index (not the packs: they follow on demand), writes it where post
 * finds it, and returns its text for the server.
 */
async function restorePersistence(inputs: Inputs, state: ActionState, dir: string): Promise<string> {
  const started = Date.now();
  const save = shouldSave(inputs.save, process.env, await defaultBranchOf(process.env));
  const indexFile = join(dir, 'persist-index.json');
  let restoredKey: string | undefined;
  let unavailable = false;
  let text: string;
  if (inputs.restore) {
    const { index, key, outcome } = await restoreIndex(new ActionsCache({ timeoutMs: 30_000 }), inputs.keyPrefix, join(dir, 'persist-restore'));
    text = JSON.stringify(index);
    restoredKey = key;
    unavailable = outcome === 'unavailable' || outcome === 'broken';
    if (key) core.info(`regcache: restored index ${key} (${Object.keys(index.packs).length} packs)`);
    else if (unavailable) core.warning('regcache: the GitHub Actions cache service failed or did not answer: starting with an empty cache');
    else core.info('regcache: no index in the Actions cache yet');
  } else {
    text = JSON.stringify(emptyIndex());
  }
  await writeFile(indexFile, text);
  state.persist = {
    indexFile,
    ...(restoredKey ? { restoredKey } : {}),
    restoreSeconds: (Date.now() - started) / 1000,
    save,
    saveMode: inputs.save,
    ...(inputs.prefetch ? { prefetch: true } : {}),
    keyPrefix: inputs.keyPrefix,
    maxSaveBytes: inputs.maxSaveBytes,
    matrix: inputs.matrix,
    ...(inputs.persistRegistry ? { persistRegistry: true } : {}),
    ...(unavailable ? { unavailable } : {}),
  };
  saveState(state);
  return text;
}

async function startRegcache(inputs: Inputs, state: ActionState): Promise<void> {
  if (inputs.registryPort !== 0 && !(await portFree(inputs.bindAddress, inputs.registryPort))) {
    throw new InputError('registry-port', `${addr(inputs.bindAddress, inputs.registryPort)} is already in use (a services: registry container, or another runner on this host?); choose another registry-port`);
  }
  let cachePort = inputs.cachePort;
  if (cachePort !== 0 && !(await portFree(inputs.bindAddress, cachePort))) {
    core.warning(`cache-port ${cachePort} is in use; the cache takes a free port instead (regcache configures the mirror itself).`);
    cachePort = 0;
  }
  const dir = join(process.env.RUNNER_TEMP || '/tmp', 'regcache');
  await mkdir(dir, { recursive: true });
  // The index is restored while the server starts: the server takes it on its stdin.
  let persistIndex: Promise<string> | undefined;
  if (ActionsCache.available()) {
    persistIndex = restorePersistence(inputs, state, dir).catch((err: unknown) => {
      core.warning(`regcache: could not restore from the Actions cache: ${(err as Error).message}`);
      return '';
    });
  } else {
    core.info('No GitHub Actions cache service in this job: regcache starts empty and saves nothing.');
  }
  const started = await spawnServer({
    ...(persistIndex ? { persistIndex, prefetch: inputs.prefetch, persistRegistry: inputs.persistRegistry } : {}),
    registryAddr: addr(inputs.bindAddress, inputs.registryPort),
    cacheAddr: addr(inputs.bindAddress, cachePort),
    storage: inputs.storage,
    logFile: join(dir, 'server.log'),
    statsFile: join(dir, 'stats.json'),
    readyFile: join(dir, 'ready.json'),
    upstreams: inputs.upstreams,
    tagTtlMs: inputs.tagTtlMs,
    logLevel: inputs.logLevel,
    credentials: inputs.upstreamCredentials,
  });
  Object.assign(state, {
    pid: started.pid,
    registryUrl: started.registryUrl,
    cacheUrl: started.cacheUrl,
    storage: inputs.storage,
    logFile: join(dir, 'server.log'),
    statsFile: join(dir, 'stats.json'),
  });
  saveState(state);
  core.info(`regcache: registry ${started.registryUrl}, cache ${started.cacheUrl} (pid ${started.pid})`);
}

async function pointDockerAtCache(inputs: Inputs, state: ActionState): Promise<void> {
  const env = await detectEnvironment(process.env, state.cacheUrl!, inputs.dockerDaemonConfig);
  for (const w of env.warnings) core.warning(w);
  if (env.dockerBlocker) {
    state.dockerSetup = { configured: false, detail: env.dockerBlocker };
    return;
  }
  const reload = await detectReload(inputs.dockerPidFile);
  if (!reload) {
    core.warning(`Cannot tell how to reload dockerd (no systemd docker unit, no ${inputs.dockerPidFile}); add "registry-mirrors": ["${state.cacheUrl}"] to ${inputs.dockerDaemonConfig} yourself.`);
    state.dockerSetup = { configured: false, detail: `cannot tell how to reload dockerd (no systemd docker unit, no ${inputs.dockerPidFile})` };
    return;
  }
  const insecure = isLoopback(inputs.bindAddress) ? [] : [new URL(state.cacheUrl!).host, new URL(state.registryUrl!).host];
  state.docker = await configureDocker(inputs.dockerDaemonConfig, state.cacheUrl!, insecure, reload);
  saveState(state);
  const proof = await proveMirror(state.cacheUrl!);
  state.dockerSetup = proof.ok
    ? { configured: true, detail: `registry-mirrors in ${inputs.dockerDaemonConfig}; a test pull went through the cache` }
    : { configured: false, detail: `registry-mirrors set in ${inputs.dockerDaemonConfig}, but ${proof.detail}` };
  saveState(state);
  if (proof.ok) core.info(`docker pulls through the cache: ${proof.detail}`);
  else core.warning(`docker was configured but did not pull through the cache: ${proof.detail}`);
}

async function run(): Promise<void> {
  const state: ActionState = { version: 1, startedAtMs: Date.now() };
  let inputs: Inputs;
  try {
    inputs = readInputs((name) => core.getInput(name));
  } catch (err) {
    core.setFailed((err as Error).message);
    return;
  }
  for (const line of inputs.upstreamCredentials) {
    core.setSecret(line);
    core.setSecret(line.slice(line.indexOf(':', line.indexOf('=')) + 1));
  }
  state.summary = inputs.summary;
  saveState(state);
  try {
    await startRegcache(inputs, state);
  } catch (err) {
    core.setFailed((err as Error).message);
    return;
  }
  core.setOutput('registry', new URL(state.registryUrl!).host);
  core.setOutput('cache', new URL(state.cacheUrl!).host);
  core.setOutput('registry-url', state.registryUrl);
  core.setOutput('cache-url', state.cacheUrl);
  core.setOutput('stats-file', state.statsFile);
  const namespaces = inputs.upstreams.map((u) => u.slice(0, u.indexOf('=')));
  core.setOutput('buildkitd-config', buildkitConfig(state.cacheUrl!, state.registryUrl!, namespaces));
  if (inputs.configureDocker) {
    try {
      await pointDockerAtCache(inputs, state);
    } catch (err) {
      state.dockerSetup = { configured: false, detail: `configuring it failed: ${(err as Error).message}` };
      core.warning(`Could not configure docker: ${(err as Error).message}`);
    }
  } else {
    state.dockerSetup = { configured: false, detail: 'configure-docker is false' };
  }
  saveState(state);
  if (inputs.configureContainerd && process.platform === 'linux') {
    try {
      state.containerdFiles = await writeContainerdHosts(inputs.containerdHostsDir, ['docker.io', ...namespaces], state.cacheUrl!);
      state.containerdSetup = { configured: true, detail: `hosts.toml in ${inputs.containerdHostsDir} for ${['docker.io', ...namespaces].join(', ')}` };
      saveState(state);
    } catch (err) {
      state.containerdSetup = { configured: false, detail: `writing hosts.toml failed: ${(err as Error).message}` };
      saveState(state);
      core.warning(`Could not write containerd hosts.toml files: ${(err as Error).message}`);
    }
  }
}

await run();
// A lookup abandoned after its budget (a failing cache service) goes on retrying inside
// @actions/cache for half a minute: the step does not wait for it.
if (ActionsCache.abandoned) process.stdout.write('', () => process.exit());
