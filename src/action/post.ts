// The Action's post step: stop regcache gracefully (its statistics are flushed on exit),
// put docker and containerd back as they were, save to the Actions cache, and write the job
// summary. Each part runs even if an earlier one, or main, failed: post never fails the job.
// Post sets no outputs: no step runs after it to read them (the figures are in the summary and
// the statistics file).
import * as core from '@actions/core';
import { readFile } from 'node:fs/promises';
import { loadState } from './state.js';
import { stopServer } from './server-process.js';
import { restoreDocker } from './docker-daemon.js';
import { removeContainerdHosts } from './containerd-hosts.js';
import { count as plural, formatBytes, renderJobSummary } from './summary/index.js';
import * as log from './log.js';
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
    return await saveNewContent({
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
  } finally {
    await storage.close();
  }
}

/** One line for the save's outcome, and a warning for each thing it lost. */
function reportSave(r: SaveReport): void {
  const also: string[] = [];
  if (r.packsExisting) also.push(`${r.packsExisting} already saved by another job`);
  if (r.packsRefused) also.push(`${r.packsRefused} refused by the service${r.packsRateLimited ? ` (${r.packsRateLimited} for its rate limit)` : ''}`);
  if (r.packsSkippedForSize) also.push(`${r.packsSkippedForSize} over max-save-size`);
  const index = r.indexKey ? `index ${r.indexKey}` : `index ${r.index}`;
  log.info(`saved ${plural(r.packsSaved, 'new pack')} (${formatBytes(r.bytesSaved)}) to the Actions cache in ${r.seconds.toFixed(1)} s${also.length ? `; ${also.join(', ')}` : ''}; ${index}`);
  log.debug(`save report: ${JSON.stringify(r)}`);
  if (r.packsFailed) {
    log.warning(
      `${plural(r.packsFailed, 'pack')} could not be saved to the GitHub Actions cache (the upload failed): the next job pulls their layers from the upstream again. Nothing to change; a later job saves them.`,
    );
  }
  if (r.index === 'failed') {
    log.warning('the index could not be saved to the GitHub Actions cache (the upload failed): the next job restores an older index and pulls what this job added from the upstream again.');
  }
}

/** Warns about packs the server could not restore (their layers came from upstream). */
function reportRestore(r: RestoreReport | undefined): void {
  if (!r) return;
  log.debug(`pack restore report: ${JSON.stringify(r)}`);
  if (r.packsRestored) log.info(`restored ${plural(r.packsRestored, 'pack')} from the Actions cache (${plural(r.blobsRestored, 'blob')}, ${formatBytes(r.bytesRestored)}) in ${r.seconds.toFixed(1)} s`);
  const lost: string[] = [];
  if (r.packsUnavailable) lost.push(`${plural(r.packsUnavailable, 'pack')} not restored because the cache service was failing`);
  if (r.packsBroken) lost.push(`${plural(r.packsBroken, 'pack')} broken (download or verification failed)`);
  if (r.blobsRejected) lost.push(`${plural(r.blobsRejected, 'blob')} failed verification`);
  if (lost.length) log.warning(`${lost.join('; ')}: their layers came from the upstream instead. Broken packs are saved again by this job when it saves; nothing to change.`);
}

/** Why nothing is saved, in words. */
function whyNotSaved(p: PersistState): string {
  if (p.unavailable) return 'the GitHub Actions cache service failed at the start of the job (see main\'s warning): nothing is saved';
  const event = process.env.GITHUB_EVENT_NAME;
  return `not saving to the Actions cache: save is false, or save: auto on a run that is not a push, schedule or manual run of the default branch${event ? ` (this is a ${event} run of ${process.env.GITHUB_REF ?? '?'})` : ''}; set save: true to save from it`;
}

async function step(what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    log.warning(`post: ${what}: ${(err as Error).message}`);
  }
}

async function run(): Promise<void> {
  const state = loadState();
  let logShown = false;
  if (state.pid) {
    await step('stop the server', async () => {
      const how = await stopServer(state.pid!);
      log.debug(`server ${state.pid}: ${how}`);
      if (how === 'killed') {
        log.warning('the server did not stop within 30 s and was killed: its statistics may be missing. Its log follows.');
        await log.showServerLog(state.logFile, 'killed');
        logShown = true;
      } else if (how === 'gone') {
        log.warning('the server had exited before the post step (it failed during the job): pulls after that went straight to their registries. Its log follows.');
        await log.showServerLog(state.logFile, 'exited early');
        logShown = true;
      }
    });
  }
  if (!logShown && core.isDebug()) await log.showServerLog(state.logFile, 'step debug');
  if (state.docker) {
    await step('restore the docker daemon configuration', async () => {
      const how = await restoreDocker(state.docker!);
      log.info(how.outcome === 'restored' ? `${state.docker!.path} restored` : `${state.docker!.path} changed meanwhile: removed only regcache's entries`);
      if (!how.forgotten) log.warning(`the docker daemon still lists ${state.docker!.mirror} among its registry mirrors after the reload; restart it to drop the mirror.`);
    });
  }
  if (state.containerdFiles?.length) await step('remove containerd hosts.toml files', () => removeContainerdHosts(state.containerdFiles!));
  const stats = await readStats(state.statsFile);
  const restored = stats?.extras?.persist as RestoreReport | undefined;
  reportRestore(restored);
  let saved: SaveReport | undefined;
  if (state.persist?.save && !state.persist.unavailable && state.storage) {
    await step('save to the Actions cache', async () => {
      saved = await log.group('save to the GitHub Actions cache', () => savePersistence(state.persist!, state.storage!, restored));
      reportSave(saved);
    });
  } else if (state.persist) {
    log.info(whyNotSaved(state.persist));
  }
  if (!state.statsFile || state.summary === false) return;
  await step('write the job summary', async () => {
    const snapshot = stats ?? (JSON.parse(await readFile(state.statsFile!, 'utf8')) as StatsSnapshot);
    const hidden = Object.keys(snapshot.repositories).filter((n) => n.endsWith(`/${PROBE_REPOSITORY}`));
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
    await core.summary.addRaw(markdown).write();
  });
}

await run();
