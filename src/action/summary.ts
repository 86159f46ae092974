// The job summary: a table per image (where its bytes came from), totals of what went
// upstream and what was avoided, the rate limit last seen, and a chart of where the bytes
// came from. Every piece of untrusted text (image names, tags) is escaped.
import type { StatsSnapshot, RepositoryStats } from '../stats/index.js';
import type { PersistState } from './state.js';
import { REPOSITORY_CACHE_LIMIT, type RegistryImportReport, type RestoreReport, type SaveReport } from '../persist/index.js';

/** Escapes text for a markdown table cell (no HTML, no pipes, no line breaks). */
export function escapeCell(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/\|/g, '&#124;')
    .replace(/`/g, '&#96;')
    .replace(/[\r\n]+/g, ' ')
    .replace(/([\\*_[\]#!])/g, '\\$1');
}

/** Bytes in a human unit. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** References with tags before digests (docker re-fetches by digest after the tag). */
function tagsFirst(references: string[]): string[] {
  return [...references.filter((r) => !r.includes(':')), ...references.filter((r) => r.includes(':'))];
}

/** Where an image's bytes came from, in words. */
export function sourceOf(r: RepositoryStats): string {
  const parts: string[] = [];
  if (r.blobHits > 0 || r.manifestHits > 0) parts.push('disk');
  if (r.blobPersistHits > 0) parts.push('Actions cache');
  if (r.bytesFetched > 0 || r.manifestMisses > 0 || r.blobMisses > 0) parts.push('upstream');
  if (r.manifestStale > 0) parts.push('stale (upstream down)');
  return parts.join(' + ') || '-';
}

/** Numbers the summary, the step outputs and the JSON file share. */
export interface SummaryNumbers {
  images: number;
  upstreamRequests: number;
  countedManifestGets: number;
  manifestGetsAvoided: number;
  bytesServed: number;
  bytesFetched: number;
  staleServes: number;
  blobHits: number;
  blobMisses: number;
  rateLimitRemaining: string | undefined;
}

/** Totals over a snapshot, leaving out `hidden` repositories (the mirror probe). */
export function summaryNumbers(s: StatsSnapshot, hidden: string[] = []): SummaryNumbers {
  const repos = Object.entries(s.repositories).filter(([n]) => !hidden.includes(n));
  const ups = Object.entries(s.upstreams);
  const sum = (f: (r: RepositoryStats) => number) => repos.reduce((a, [, r]) => a + f(r), 0);
  const hub = s.upstreams['docker.io']?.rateLimit ?? ups.find(([, u]) => u.rateLimit)?.[1].rateLimit;
  return {
    images: repos.length,
    upstreamRequests: ups.reduce((a, [, u]) => a + Object.values(u.requests).reduce((x, y) => x + y, 0), 0),
    countedManifestGets: ups.reduce((a, [, u]) => a + u.countedManifestGets, 0),
    manifestGetsAvoided: ups.reduce((a, [, u]) => a + u.manifestGetsAvoided, 0),
    bytesServed: sum((r) => r.bytesServed),
    bytesFetched: sum((r) => r.bytesFetched),
    staleServes: sum((r) => r.manifestStale),
    blobHits: sum((r) => r.blobHits + r.blobPersistHits),
    blobMisses: sum((r) => r.blobMisses),
    rateLimitRemaining: hub?.remaining,
  };
}

/** The job summary as markdown. */
export function renderSummary(s: StatsSnapshot, hidden: string[] = []): string {
  const n = summaryNumbers(s, hidden);
  const out: string[] = ['## regcache', ''];
  const repos = Object.entries(s.repositories).filter(([name]) => !hidden.includes(name));
  if (repos.length === 0) {
    out.push('No image went through the cache in this job.', '');
  } else {
    out.push('| Image | Reference | Digest | Bytes from | Blobs (local / upstream) | Served | From upstream | Time |');
    out.push('|---|---|---|---|---|---|---|---|');
    for (const [name, r] of repos.sort(([a], [b]) => a.localeCompare(b))) {
      const digest = r.digests[0] ? `\`${escapeCell(r.digests[0].slice(0, 19))}…\`` : '-';
      out.push(
        `| ${escapeCell(name)} | ${escapeCell(tagsFirst(r.references).slice(0, 3).join(', ') || '-')} | ${digest} | ${sourceOf(r)} | ${r.blobHits + r.blobPersistHits} / ${r.blobMisses} | ${formatBytes(r.bytesServed)} | ${formatBytes(r.bytesFetched)} | ${((r.lastSeenMs - r.firstSeenMs) / 1000).toFixed(1)} s |`,
      );
    }
    out.push('');
  }
  out.push('| Totals | |', '|---|---|');
  out.push(`| Requests sent upstream | ${n.upstreamRequests} |`);
  out.push(`| Manifest GETs upstream (counted pulls) | ${n.countedManifestGets} |`);
  out.push(`| Manifest GETs avoided (fresh or HEAD-revalidated) | ${n.manifestGetsAvoided} |`);
  out.push(`| Bytes served / from upstream | ${formatBytes(n.bytesServed)} / ${formatBytes(n.bytesFetched)} |`);
  out.push(`| Served stale (upstream down or limiting) | ${n.staleServes} |`);
  if (n.rateLimitRemaining !== undefined) out.push(`| Docker Hub rate limit remaining (last seen) | ${escapeCell(n.rateLimitRemaining)} |`);
  out.push('');
  const local = Math.max(0, n.bytesServed - n.bytesFetched);
  if (n.bytesServed > 0) {
    out.push('```mermaid', 'pie title Where the served bytes came from', `  "Local disk" : ${local}`, `  "Upstream" : ${n.bytesFetched}`, '```', '');
  }
  return out.join('\n');
}

/** What became of the index entry, in words. */
const INDEX_OUTCOME: Record<SaveReport['index'], string> = {
  saved: 'saved',
  unchanged: 'unchanged (nothing new: no upload)',
  exists: 'not saved: another job saved an index under the same key (set the matrix input?)',
  refused: 'not saved: refused by the service (rate limit); the packs saved wait for a later job to index them',
  failed: 'not saved: the upload failed',
};

/** The Actions cache part of the summary: what was restored and saved. */
export function renderPersistence(p: PersistState, restored: RestoreReport | undefined, saved: SaveReport | undefined, pushed?: RegistryImportReport): string {
  const out: string[] = ['### GitHub Actions cache', '', '| | |', '|---|---|'];
  const none = p.unavailable ? 'none: the cache service failed or did not answer' : 'none yet';
  out.push(`| Index restored | ${p.restoredKey ? `\`${escapeCell(p.restoredKey)}\`` : none} (${p.restoreSeconds.toFixed(1)} s) |`);
  if (restored) {
    const notes: string[] = [];
    if (restored.packsMissing) notes.push(`${restored.packsMissing} evicted`);
    if (restored.packsBroken) notes.push(`${restored.packsBroken} broken (download or verification failed)`);
    if (restored.blobsRejected) notes.push(`${restored.blobsRejected} blobs failed verification and were fetched upstream`);
    if (restored.packsUnavailable) notes.push(`${restored.packsUnavailable} not restored: the cache service was failing`);
    out.push(
      `| Packs restored on demand | ${restored.packsRestored} (${restored.blobsRestored} blobs, ${formatBytes(restored.bytesRestored)}, ${restored.seconds.toFixed(1)} s)${notes.length ? `; ${notes.join('; ')}` : ''} |`,
    );
  }
  if (pushed) {
    const left = pushed.dropped ? `; ${pushed.dropped} manifests left out (their content is no longer in the cache)` : '';
    out.push(`| Pushed images restored (persist-registry) | ${pushed.tags} tags, ${pushed.manifests} manifests${left} |`);
  }
  if (saved) {
    const refused = saved.packsRefused ? `${saved.packsRefused} refused${saved.packsRateLimited ? ` (${saved.packsRateLimited} for the rate limit)` : ''}` : '0 refused';
    out.push(
      `| Saved | ${saved.packsSaved} new packs (${formatBytes(saved.bytesSaved)}), ${saved.packsExisting} already saved by another job, ${refused}${saved.packsFailed ? `, ${saved.packsFailed} failed` : ''} (${saved.seconds.toFixed(1)} s) |`,
    );
    if (saved.packsSkippedForSize) out.push(`| Not saved (over max-save-size) | ${saved.packsSkippedForSize} packs |`);
    if (saved.packsDropped) out.push(`| Dropped from the index (evicted or broken) | ${saved.packsDropped} packs |`);
    out.push(`| Index entry | ${saved.indexKey ? `\`${escapeCell(saved.indexKey)}\`` : INDEX_OUTCOME[saved.index]} |`);
    if (saved.workingSetBytes > REPOSITORY_CACHE_LIMIT) {
      out.push(`| ⚠ Working set | ${formatBytes(saved.workingSetBytes)} is larger than the repository's Actions cache (${formatBytes(REPOSITORY_CACHE_LIMIT)}): entries will evict each other |`);
    }
  } else {
    out.push(`| Saved | nothing (${p.save ? (p.unavailable ? 'the cache service failed at the start of the job' : 'save failed') : 'this run only restores'}) |`);
  }
  out.push('');
  return out.join('\n');
}
