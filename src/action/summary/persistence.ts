// The Actions cache part of the summary, as a list: what was restored, what was saved, and
// why nothing was when nothing was (with the input to change).
import { REPOSITORY_CACHE_LIMIT, type RegistryImportReport, type RestoreReport, type SaveReport } from '../../persist/index.js';
import type { PersistState } from '../state.js';
import { code, count, formatBytes, seconds } from './markdown.js';

/** What became of the index entry, in words. */
const INDEX_OUTCOME: Record<SaveReport['index'], string> = {
  saved: 'saved',
  unchanged: 'unchanged (nothing new: no upload)',
  exists: 'not saved: another job saved an index under the same key (set the matrix input?)',
  refused: 'not saved: refused by the service (rate limit); the packs saved wait for a later job to index them',
  failed: 'not saved: the upload failed',
};

/** The event and ref of the job (GITHUB_EVENT_NAME, GITHUB_REF). */
export interface JobEvent {
  name?: string | undefined;
  ref?: string | undefined;
}

/** Why the job saved nothing, with what to change; undefined when it saved. */
export function whyNotSaved(p: PersistState, saved: SaveReport | undefined, event: JobEvent): string | undefined {
  if (saved) return undefined;
  if (p.unavailable) return 'the Actions cache service failed or did not answer at the start';
  if (p.save) return 'the save failed (see the post step log)';
  if (p.saveMode === 'false') return `${code('save: false')}`;
  if (event.name === 'pull_request' || event.name === 'pull_request_target') {
    return `${code('save: auto')} does not save on pull requests (set ${code('save: true')} to save from them)`;
  }
  const on = event.ref?.startsWith('refs/heads/') ? ` (this job ran on ${code(event.ref.slice('refs/heads/'.length))}${event.name ? `, ${code(event.name)}` : ''})` : '';
  return `${code('save: auto')} saves on pushes to the default branch only${on}; set ${code('save: true')} to save here`;
}

/** The restore line. */
function restoredLine(p: PersistState, restored: RestoreReport): string {
  const notes: string[] = [];
  if (restored.packsMissing) notes.push(`${restored.packsMissing} evicted`);
  if (restored.packsBroken) notes.push(`${restored.packsBroken} broken (download or verification failed)`);
  if (restored.blobsRejected) notes.push(`${count(restored.blobsRejected, 'blob')} failed verification (fetched upstream instead)`);
  if (restored.packsUnavailable) notes.push(`${restored.packsUnavailable} not restored: the cache service was failing`);
  const how = p.prefetch ? 'in the background from the start' : 'as clients asked';
  return `${count(restored.packsRestored, 'pack')} (${count(restored.blobsRestored, 'blob')}, ${formatBytes(restored.bytesRestored)}, ${seconds(restored.seconds)}, ${how})${notes.length ? `; ${notes.join('; ')}` : ''}`;
}

/** The save line: only the counts that are not zero besides the new packs. */
function savedLine(saved: SaveReport): string {
  const parts = [`${count(saved.packsSaved, 'new pack')} (${formatBytes(saved.bytesSaved)})`];
  if (saved.packsExisting) parts.push(`${saved.packsExisting} already saved by another job`);
  if (saved.packsRefused) parts.push(`${saved.packsRefused} refused${saved.packsRateLimited ? ` (${saved.packsRateLimited} for the rate limit)` : ''}`);
  if (saved.packsFailed) parts.push(`${saved.packsFailed} failed`);
  return `${parts.join(', ')} in ${seconds(saved.seconds)}`;
}

/** The list items of the Actions cache section (`- Label: value`). */
export function persistenceItems(p: PersistState, restored: RestoreReport | undefined, saved: SaveReport | undefined, pushed: RegistryImportReport | undefined, event: JobEvent, pushedHere: number): string[] {
  const out: string[] = [];
  const item = (label: string, value: string) => out.push(`- ${label}: ${value}`);
  const none = p.unavailable ? 'none: the cache service failed or did not answer' : 'none yet, the first job saves one';
  item('Index restored', `${p.restoredKey ? code(p.restoredKey) : none} (${seconds(p.restoreSeconds)})`);
  if (restored && (restored.packsRestored || restored.packsMissing || restored.packsBroken || restored.packsUnavailable)) item('Packs restored', restoredLine(p, restored));
  if (pushed) {
    const left = pushed.dropped ? `; ${count(pushed.dropped, 'manifest')} left out (their content is no longer in the cache)` : '';
    item('Pushed images restored (persist-registry)', `${count(pushed.tags, 'tag')}, ${count(pushed.manifests, 'manifest')}${left}`);
  }
  const why = whyNotSaved(p, saved, event);
  if (saved) {
    item('Saved', savedLine(saved));
    if (saved.packsSkippedForSize) item('Not saved (over max-save-size)', count(saved.packsSkippedForSize, 'pack'));
    if (saved.packsDropped) item('Dropped from the index (evicted or broken)', count(saved.packsDropped, 'pack'));
    item('Index entry', saved.indexKey ? code(saved.indexKey) : INDEX_OUTCOME[saved.index]);
  } else {
    item('Saved', `nothing: ${why}`);
  }
  if (pushedHere > 0) {
    const kept = saved && (saved.index === 'saved' || saved.index === 'unchanged');
    item('Pushed images', p.persistRegistry ? (kept ? 'saved with the cache (persist-registry)' : 'not saved (the index was not saved)') : `not saved (set ${code('persist-registry: true')} to keep them for the next job)`);
  }
  return out;
}

/** A warning line when the working set outgrows the repository's Actions cache, else undefined. */
export function workingSetWarning(saved: SaveReport | undefined): string | undefined {
  if (!saved || saved.workingSetBytes <= REPOSITORY_CACHE_LIMIT) return undefined;
  return `⚠ The images' packs (${formatBytes(saved.workingSetBytes)}) outgrow the repository's Actions cache (10 GB, GitHub's default): entries will evict each other.`;
}
