// The Action's post step: stop regcache gracefully (its statistics are flushed on exit),
// put docker and containerd back as they were, and write the job summary and outputs.
// Each part runs even if an earlier one, or main, failed: post never fails the job.
import * as core from '@actions/core';
import { readFile } from 'node:fs/promises';
import { loadState } from './state.js';
import { stopServer } from './server-process.js';
import { restoreDocker } from './docker-daemon.js';
import { removeContainerdHosts } from './containerd-hosts.js';
import { renderSummary, summaryNumbers } from './summary.js';
import { PROBE_REPOSITORY } from '../proxy/index.js';
import type { StatsSnapshot } from '../stats/index.js';

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
      core.info(how === 'restored' ? `${state.docker!.path} restored` : `${state.docker!.path} changed meanwhile: removed only regcache's entries`);
    });
  }
  if (state.containerdFiles?.length) await step('remove containerd hosts.toml files', () => removeContainerdHosts(state.containerdFiles!));
  if (!state.statsFile) return;
  await step('report', async () => {
    const snapshot = JSON.parse(await readFile(state.statsFile!, 'utf8')) as StatsSnapshot;
    const hidden = Object.keys(snapshot.repositories).filter((n) => n.endsWith(`/${PROBE_REPOSITORY}`));
    const numbers = summaryNumbers(snapshot, hidden);
    for (const [k, v] of Object.entries(numbers)) core.setOutput(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), v ?? '');
    core.setOutput('stats-file', state.statsFile);
    if (state.summary !== false) await core.summary.addRaw(renderSummary(snapshot, hidden)).write();
  });
}

await run();
