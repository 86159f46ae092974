// The Action's post step: stop regcache gracefully (its statistics are flushed on exit),
// put docker and containerd back as they were, and write the job summary and outputs.
// Each part runs even if an earlier one, or main, failed: post never fails the job.
import * as core from '@actions/core';
import { readFile } from 'node:fs/promises';
import { loadState } from './state.js';
import { stopServer } from './server-process.js';
import { restoreDocker } from './docker-daemon.js';
import { removeContainerdHosts } from './containerd-hosts.js';
import { renderJobSummary, summaryNumbers } from './summary/index.js';
import { PROBE_REPOSITORY } from '../proxy/index.js';
import type { StatsSnapshot } from '../stats/index.js';
import { ActionsCache, parseIndex, saveNewContent, type RegistryImportReport, type RestoreReport, type SaveReport } from '../persist/index.js';
import { openStorage } from '../storage/index.js';
import type { PersistState } from './state.js';

/** The statistics the server wrote when it stopped (undefined when it wrote none). */
async function readStats(file: string | undefined): Promise<StatsSnapshot | undefined> {
  if (!file) return undefined;
  try {
    return JSON.parse(await readFile(file, 'utf8')) as StatsSnapshot;
  } catch {
    return undefined;
  }
}

/** Saves what the job added (the server has stopped: the storage is free). */
async function savePersistence(p: PersistState, storageDir: string, restoredReport: RestoreReport | undefined): Promise<SaveReport> {
  const storage = await openStorage(storageDir);
  try {
    const restored = parseIndex(await readFile(p.indexFile, 'utf8').catch(() => ''));
    const report = await saveNewContent({
      storage,
      restored,
      cache: new ActionsCache(),
      prefix: p.keyPrefix,
      env: process.env,
      matrix: p.matrix ?? '',
      maxSaveBytes: p.maxSaveBytes,
      maxPacks: 8,
      budgetMs: 120_000,
      unusable: restoredReport?.unusable ?? [],
      registry: !!p.persistRegistry,
    });
    core.info(
      `regcache: saved ${report.packsSaved} packs (${report.bytesSaved} bytes), ${report.packsExisting} already there, ${report.packsRefused} refused, ${report.packsFailed} failed; index ${report.index}`,
    );
    return report;
  } finally {
    await storage.close();
  }
}

async function step(what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    core.warning(`regcache post: ${what}: ${(err as Error).message}`);
  }
}

async function run(): Promise<void> {
  const state = loadState();
  if (state.pid) {
    await step('stop the server', async () => {
      const how = await stopServer(state.pid!);
      if (how === 'killed') core.warning('regcache did not stop within 30 s and was killed; its statistics may be missing.');
    });
  }
  if (state.docker) {
    await step('restore the docker daemon configuration', async () => {
      const how = await restoreDocker(state.docker!);
      core.info(how.outcome === 'restored' ? `${state.docker!.path} restored` : `${state.docker!.path} changed meanwhile: removed only regcache's entries`);
      if (!how.forgotten) core.warning(`The docker daemon still lists ${state.docker!.mirror} among its registry mirrors after the reload; restart it to drop the mirror.`);
    });
  }
  if (state.containerdFiles?.length) await step('remove containerd hosts.toml files', () => removeContainerdHosts(state.containerdFiles!));
  const stats = await readStats(state.statsFile);
  const restored = stats?.extras?.persist as RestoreReport | undefined;
  let saved: SaveReport | undefined;
  if (state.persist?.save && state.storage) {
    await step('save to the Actions cache', async () => {
      saved = await savePersistence(state.persist!, state.storage!, restored);
    });
  } else if (state.persist) {
    core.info('regcache: not saving to the Actions cache (save: auto saves on pushes to the default branch only)');
  }
  if (!state.statsFile) return;
  await step('report', async () => {
    const snapshot = stats ?? (JSON.parse(await readFile(state.statsFile!, 'utf8')) as StatsSnapshot);
    const hidden = Object.keys(snapshot.repositories).filter((n) => n.endsWith(`/${PROBE_REPOSITORY}`));
    const numbers = summaryNumbers(snapshot, hidden);
    for (const [k, v] of Object.entries(numbers)) core.setOutput(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), v ?? '');
    core.setOutput('stats-file', state.statsFile);
    const markdown = renderJobSummary({
      stats: snapshot,
      hidden,
      ...(state.registryUrl ? { registryHost: new URL(state.registryUrl).host } : {}),
      ...(state.persist ? { persist: state.persist } : {}),
      ...(restored ? { restored } : {}),
      ...(saved ? { saved } : {}),
      ...(snapshot.extras?.persistRegistry ? { registryImport: snapshot.extras.persistRegistry as RegistryImportReport } : {}),
      ...(state.dockerSetup ? { docker: state.dockerSetup } : {}),
      ...(state.containerdSetup ? { containerd: state.containerdSetup } : {}),
      event: { name: process.env.GITHUB_EVENT_NAME, ref: process.env.GITHUB_REF },
    });
    if (state.summary !== false) await core.summary.addRaw(markdown).write();
  });
}

await run();
// A lookup abandoned after its budget (a failing cache service) goes on retrying inside
// @actions/cache for half a minute: the step does not wait for it.
if (ActionsCache.abandoned) process.stdout.write('', () => process.exit());
