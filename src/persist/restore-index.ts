// Restores the newest index entry of this repository (only the index: packs follow on
// demand) and says whether this run should save.
import { readFile } from 'node:fs/promises';
import { INDEX_FILE, INDEX_PATH, indexPrefix } from './keys.js';
import { emptyIndex, parseIndex, type PersistIndex } from './persist-index.js';
import type { ActionsCache, RestoreOutcome } from './actions-cache.js';

/** An index larger than this is not read (a job's index is manifests and configs: megabytes). */
const MAX_INDEX_BYTES = 256 * 1024 * 1024;

/**
 * Restores the newest index under `prefix` (`staging`: a directory the restore may use);
 * empty when there is none. `outcome` says whether the service answered (`unavailable`: it
 * failed or did not answer in time).
 */
export async function restoreIndex(cache: ActionsCache, prefix: string, staging: string): Promise<{ index: PersistIndex; key?: string; outcome: RestoreOutcome }> {
  let text = '';
  const onFile = async (f: { path: string; body: AsyncIterable<Uint8Array> }) => {
    if (f.path !== `${INDEX_PATH}/${INDEX_FILE}`) return;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of f.body) {
      size += c.byteLength;
      if (size > MAX_INDEX_BYTES) throw new Error(`index entry over ${MAX_INDEX_BYTES} bytes`);
      chunks.push(Buffer.from(c));
    }
    text = Buffer.concat(chunks).toString('utf8');
  };
  // No entry has this exact key: the prefix restore key picks the newest index.
  const r = await cache.restoreEntry(INDEX_PATH, `${indexPrefix(prefix)}none`, [indexPrefix(prefix)], onFile, { staging }).catch(() => ({ outcome: 'unavailable' as const, key: undefined }));
  if (r.outcome !== 'restored' || !r.key) return { index: emptyIndex(), outcome: r.outcome };
  return { index: parseIndex(text), key: r.key, outcome: r.outcome };
}

/** The `save` input's decision: `auto` saves on pushes to the default branch only. */
export function shouldSave(mode: 'auto' | 'true' | 'false', env: NodeJS.ProcessEnv, defaultBranch: string | undefined): boolean {
  if (mode === 'true') return true;
  if (mode === 'false') return false;
  if (env.GITHUB_EVENT_NAME !== 'push' && env.GITHUB_EVENT_NAME !== 'schedule' && env.GITHUB_EVENT_NAME !== 'workflow_dispatch') return false;
  return defaultBranch !== undefined && env.GITHUB_REF === `refs/heads/${defaultBranch}`;
}

/** The default branch named in the event payload the runner wrote. */
export async function defaultBranchOf(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (!env.GITHUB_EVENT_PATH) return undefined;
  try {
    const event = JSON.parse(await readFile(env.GITHUB_EVENT_PATH, 'utf8')) as { repository?: { default_branch?: string } };
    return event.repository?.default_branch;
  } catch {
    return undefined;
  }
}
