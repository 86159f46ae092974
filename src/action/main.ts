// The Action's main step: validate inputs, start regcache detached, point docker (and
// containerd) at the cache, prove the daemon uses it, and hand everything to post.
import * as core from '@actions/core';
import { join } from 'node:path';
import { readInputs, type Inputs } from './inputs.js';
import * as log from './log.js';
import { formatBytes } from './summary/index.js';
import { saveState, type ActionState } from './state.js';
import { detectEnvironment } from './environment.js';
import { portFree, spawnServer } from './server-process.js';
import { configureDocker, detectReload } from './docker-daemon.js';
import { writeContainerdHosts } from './containerd-hosts.js';
import { buildkitConfig } from './buildkit.js';
import { proveMirror } from './mirror-proof.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { ActionsCache, defaultBranchOf, emptyIndex, restoreIndex, shouldSave } from '../persist/index.js';

/** The statistics' path on the cache port (server.ts's STATS_PATH; not imported: main does not bundle the server). */
const STATS_PATH = '/_regcache/stats';

function isLoopback(address: string): boolean {
  return address === 'localhost' || address.startsWith('127.') || address === '::1';
}

function addr(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Longest time main keeps retrying a failing cache service's lookup of the index (5xx answers,
 * backing off 1 s, 2 s, ...): a down service costs main about a second, and post nothing (it
 * does not save after a failed start). A request in flight still gets the lookup budget.
 */
const INDEX_RETRY_BUDGET_MS = 2_000;

/** Bytes of the packs an index names. */
function packBytes(index: { packs: Record<string, { size: number }> }): number {
  return Object.values(index.packs).reduce((a, p) => a + (p.size || 0), 0);
}

/**
 * Restores the persistence index (not the packs: they follow on demand), writes it where post
 * finds it, and returns its text for the server.
 */
async function restorePersistence(inputs: Inputs, state: ActionState, dir: string, outcomes: string[]): Promise<string> {
  const started = Date.now();
  const save = shouldSave(inputs.save, process.env, await defaultBranchOf(process.env));
  const indexFile = join(dir, 'persist-index.json');
  let restoredKey: string | undefined;
  let unavailable = false;
  let text: string;
  if (inputs.restore) {
    const cache = new ActionsCache({ timeoutMs: 30_000, retryBudgetMs: INDEX_RETRY_BUDGET_MS });
    const { index, key, outcome } = await restoreIndex(cache, inputs.keyPrefix, join(dir, 'persist-restore'));
    text = JSON.stringify(index);
    restoredKey = key;
    unavailable = outcome === 'unavailable' || outcome === 'broken';
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    log.debug(`index lookup under ${inputs.keyPrefix}-index-: ${outcome}${key ? ` (${key})` : ''}, ${seconds} s`);
    const packs = Object.keys(index.packs).length;
    if (key) outcomes.push(`restored the index ${key} in ${seconds} s: ${packs} pack${packs === 1 ? '' : 's'} (${formatBytes(packBytes(index))} of layers) to restore as they are needed`);
    else if (unavailable) {
      log.warning(
        `the GitHub Actions cache service failed or did not answer (${seconds} s): this job starts with an empty cache, pulls every image from its upstream, and saves nothing at the end. Nothing to change in the workflow; a re-run tries the service again.`,
      );
    } else outcomes.push(`no index in the Actions cache yet (key prefix ${inputs.keyPrefix}-index-): this job starts empty${save ? ' and saves what it pulls' : ''}`);
  } else {
    text = JSON.stringify(emptyIndex());
    outcomes.push('restore: false: not restoring from the Actions cache');
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

/** A port that cannot be listened on: a runtime failure naming the input to change. */
class PortTakenError extends Error {
  constructor(readonly input: string, address: string) {
    super(`${address} is already in use (a services: registry container, or another runner on this host?): choose another ${input}`);
    this.name = 'PortTakenError';
  }
}

/**
 * Starts the server (restoring the index meanwhile); the outcome lines go to `outcomes`, printed
 * after the step's group, where they are seen without opening it. The server may be ready before
 * the index is restored (it holds the cache port's requests until then): `restoring` settles
 * once it is.
 */
async function startRegcache(inputs: Inputs, state: ActionState, outcomes: string[]): Promise<{ restoring: Promise<unknown> }> {
  if (inputs.registryPort !== 0 && !(await portFree(inputs.bindAddress, inputs.registryPort))) {
    throw new PortTakenError('registry-port', addr(inputs.bindAddress, inputs.registryPort));
  }
  let cachePort = inputs.cachePort;
  if (cachePort !== 0 && !(await portFree(inputs.bindAddress, cachePort))) {
    log.warning(`cache-port ${cachePort} is in use; the cache takes a free port instead (regcache configures the mirror itself).`);
    cachePort = 0;
  }
  const dir = join(process.env.RUNNER_TEMP || '/tmp', 'regcache');
  await mkdir(dir, { recursive: true });
  // The index is restored while the server starts: the server takes it on its stdin.
  let persistIndex: Promise<string> | undefined;
  if (ActionsCache.available()) {
    persistIndex = restorePersistence(inputs, state, dir, outcomes).catch((err: unknown) => {
      log.warning(`could not restore from the GitHub Actions cache (${(err as Error).message}): this job starts with an empty cache and pulls every image from its upstream.`);
      return '';
    });
  } else {
    outcomes.push('no GitHub Actions cache service in this job: the cache starts empty and nothing is saved');
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
  log.debug(`server ready: ${JSON.stringify(started)}`);
  outcomes.push(`registry ${started.registryUrl}, cache ${started.cacheUrl} (pid ${started.pid}; its log: ${join(dir, 'server.log')})`);
  return { restoring: persistIndex ?? Promise.resolve() };
}

async function pointDockerAtCache(inputs: Inputs, state: ActionState): Promise<void> {
  const env = await detectEnvironment(process.env, state.cacheUrl!, inputs.dockerDaemonConfig);
  for (const w of env.warnings) log.warning(w);
  if (env.dockerBlocker) {
    state.dockerSetup = { configured: false, detail: env.dockerBlocker };
    return;
  }
  const reload = await detectReload(inputs.dockerPidFile);
  if (!reload) {
    log.warning(`cannot tell how to reload dockerd (no systemd docker unit, no ${inputs.dockerPidFile}); add "registry-mirrors": ["${state.cacheUrl}"] to ${inputs.dockerDaemonConfig} yourself.`);
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
  log.debug(`${inputs.dockerDaemonConfig}: registry-mirrors ${state.cacheUrl}, reloaded (${state.docker.reload.kind})`);
  if (proof.ok) log.info(`docker pulls Docker Hub images through the cache (${proof.detail})`);
  else log.warning(`docker was configured but did not pull through the cache: ${proof.detail}. Docker Hub pulls go straight to Docker Hub; see the README's "When a pull does not go through the cache".`);
}

/** The outputs main knows once the server is ready: addresses, where the statistics are. */
function setOutputs(state: ActionState): void {
  core.setOutput('registry', new URL(state.registryUrl!).host);
  core.setOutput('cache', new URL(state.cacheUrl!).host);
  core.setOutput('registry-url', state.registryUrl);
  core.setOutput('cache-url', state.cacheUrl);
  core.setOutput('stats-url', `${state.cacheUrl}${STATS_PATH}`);
  core.setOutput('stats-file', state.statsFile);
}

/** The outputs main knows once the index restore ended: whether one was restored, and its key. */
function setRestoreOutputs(state: ActionState): void {
  // Never empty: an index restored from the Actions cache (index keys are per job, so there is
  // no exact-key hit as in actions/cache: a hit is any earlier job's index found by the prefix).
  core.setOutput('cache-hit', state.persist?.restoredKey ? 'true' : 'false');
  core.setOutput('cache-matched-key', state.persist?.restoredKey ?? '');
}

async function run(): Promise<void> {
  const state: ActionState = { version: 1, startedAtMs: Date.now() };
  let inputs: Inputs;
  try {
    inputs = readInputs((name) => core.getInput(name));
  } catch (err) {
    core.setFailed(log.prefixed((err as Error).message));
    return;
  }
  for (const line of inputs.upstreamCredentials) {
    core.setSecret(line);
    core.setSecret(line.slice(line.indexOf(':', line.indexOf('=')) + 1));
  }
  // Masks first: nothing is printed before them.
  log.debug(`inputs: ${JSON.stringify({ ...inputs, upstreamCredentials: inputs.upstreamCredentials.length })}`);
  state.summary = inputs.summary;
  saveState(state);
  const outcomes: string[] = [];
  let printed = 0;
  const printOutcomes = () => {
    for (const line of outcomes.slice(printed)) log.info(line);
    printed = outcomes.length;
  };
  let restoring: Promise<unknown>;
  try {
    ({ restoring } = await log.group('start the server and restore the index', () => startRegcache(inputs, state, outcomes)));
  } catch (err) {
    printOutcomes();
    core.setFailed(log.prefixed((err as Error).message));
    return;
  }
  printOutcomes();
  setOutputs(state);
  const namespaces = inputs.upstreams.map((u) => u.slice(0, u.indexOf('=')));
  core.setOutput('buildkitd-config', buildkitConfig(state.cacheUrl!, state.registryUrl!, namespaces));
  if (inputs.configureDocker) {
    try {
      await pointDockerAtCache(inputs, state);
    } catch (err) {
      state.dockerSetup = { configured: false, detail: `configuring it failed: ${(err as Error).message}` };
      log.warning(`could not configure docker: ${(err as Error).message}`);
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
      log.warning(`could not write containerd hosts.toml files: ${(err as Error).message}`);
    }
  }
  // The index restore bounds itself (its lookup budget, its download timeouts).
  await restoring;
  printOutcomes();
  setRestoreOutputs(state);
}

await run();
