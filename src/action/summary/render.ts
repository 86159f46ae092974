// The job summary: a headline that answers "did the cache help?", a compact table per image
// (tags, short digest, where its bytes came from, size, what came from upstream), a chart of
// bytes by source when there is more than one, and the rest in collapsed sections. A job
// nothing went through gets one line. Rows are capped so the summary stays far below GitHub's
// 1 MiB per step, however many images.
import type { Origin, StatsSnapshot } from '../../stats/index.js';
import { formatWindow, ORIGINS } from '../../stats/index.js';
import type { RegistryImportReport, RestoreReport, SaveReport } from '../../persist/index.js';
import type { ClientSetup, PersistState } from '../state.js';
import { code, count, details, escapeCell, formatBytes, shortDigest, table } from './markdown.js';
import { DOCKER_HUB, dockerHub, summaryModel, type ImageRow, type SummaryModel, type UpstreamRow } from './model.js';
import { persistenceItems, whyNotSaved, workingSetWarning, type JobEvent } from './persistence.js';

/** Everything the summary is made of; all but the statistics optional. */
export interface SummaryInput {
  /** The server's statistics (undefined when it wrote none). */
  stats: StatsSnapshot | undefined;
  /** Repositories left out (the mirror probe). */
  hidden?: string[];
  /** HOST:PORT of the registry port, prefixed to pushed images. */
  registryHost?: string;
  persist?: PersistState;
  restored?: RestoreReport;
  saved?: SaveReport;
  registryImport?: RegistryImportReport;
  docker?: ClientSetup;
  containerd?: ClientSetup;
  event?: JobEvent;
  /** Most image rows shown (the rest are counted). Default 100. */
  maxRows?: number;
}

/** Where bytes came from, in the summary's words. */
export const ORIGIN_LABEL: Record<Origin, string> = {
  upstream: 'upstream',
  actionsCache: 'Actions cache',
  disk: "this runner's disk",
  pushed: 'pushed here',
};

/** The same, capitalized, as the chart's legend shows them. */
const CHART_LABEL: Record<Origin, string> = {
  upstream: 'Upstream',
  actionsCache: 'Actions cache',
  disk: "This runner's disk",
  pushed: 'Pushed here',
};

const DEFAULT_MAX_ROWS = 100;

/** A rate limit in words: `93 of 100 left in the 6 h window`. */
export function rateLimitText(u: UpstreamRow, left = 'left'): string | undefined {
  const r = u.rateLimit;
  if (!r) return undefined;
  const of = r.limit !== undefined ? ` of ${r.limit}` : '';
  const window = r.windowSeconds !== undefined ? ` in the ${formatWindow(r.windowSeconds)} window` : '';
  return `${r.remaining}${of} ${left}${window}`;
}

/** The two-second answer: images and bytes not downloaded, pushes, Docker Hub's pulls. */
function headline(m: SummaryModel): string {
  const groups: string[] = [];
  if (m.pulled > 0) {
    const saved = m.sizeByOrigin.actionsCache + m.sizeByOrigin.disk;
    const cached = m.fromCache === 0 ? 'none from cache' : m.fromCache === m.pulled && m.pulled > 1 ? 'all from cache' : `${m.fromCache} from cache`;
    groups.push(`${count(m.pulled, 'image')} pulled, ${cached}${saved > 0 ? ` (${formatBytes(saved)} not downloaded)` : ''}`);
  }
  if (m.pushed > 0) groups.push(`${count(m.pushed, 'image')} pushed`);
  const hub = dockerHub(m);
  if (hub) {
    const parts: string[] = [];
    if (hub.manifestGetsAvoided > 0) parts.push(`${count(hub.manifestGetsAvoided, 'pull')} avoided`);
    if (hub.manifestGets > 0) parts.push(hub.manifestGetsAvoided > 0 ? `${hub.manifestGets} counted` : `${count(hub.manifestGets, 'pull')} counted`);
    const left = rateLimitText(hub, 'left');
    if (left) parts.push(left);
    if (parts.length) groups.push(`Docker Hub: ${parts.join(', ')}`);
  }
  return `**${groups.join(' · ')}**`;
}

/** The "Bytes from" cell: origins with their share when there are several. */
function sourceCell(i: ImageRow): string {
  if (i.origins.length === 0) return '-';
  if (i.origins.length === 1) return ORIGIN_LABEL[i.origins[0]!];
  const share = (o: Origin) => {
    const pct = (100 * i.sizeByOrigin[o]) / i.size;
    return pct < 1 ? '<1%' : pct > 99 && pct < 100 ? '>99%' : `${Math.round(pct)}%`;
  };
  return i.origins.map((o) => `${ORIGIN_LABEL[o]} ${share(o)}`).join(', ');
}

/** Tags as code spans, at most 3, then `+N`. */
function tagsCell(tags: string[]): string {
  if (tags.length === 0) return '-';
  const shown = tags.slice(0, 3).map(code).join(' ');
  return tags.length > 3 ? `${shown} +${tags.length - 3}` : shown;
}

/** The per-image table, capped at `maxRows`. */
function imageTable(m: SummaryModel, maxRows: number): string[] {
  const rows = m.images.slice(0, maxRows).map((i) => [
    escapeCell(i.name),
    tagsCell(i.tags),
    i.digest ? code(shortDigest(i.digest)) : '-',
    sourceCell(i),
    formatBytes(i.size),
    formatBytes(i.fromUpstream),
  ]);
  const out = table(['Image', 'Tags', 'Digest', 'Bytes from', 'Size', 'From upstream'], rows, ['l', 'l', 'l', 'l', 'r', 'r']);
  const more = m.images.length - rows.length;
  if (more > 0) out.push('', `…and ${count(more, 'more image')} (every image is in the stats file).`);
  return [...out, ''];
}

/**
 * A mermaid pie of bytes by source, when three or more sources had bytes: with one or two, the
 * headline and the table already say it in fewer pixels.
 */
function chart(m: SummaryModel): string[] {
  const slices = ORIGINS.filter((o) => m.sizeByOrigin[o] > 0);
  if (slices.length < 3) return [];
  const largest = Math.max(...slices.map((o) => m.sizeByOrigin[o]));
  const unit = largest >= 1024 ** 3 ? ['GiB', 1024 ** 3] as const : largest >= 1024 ** 2 ? ['MiB', 1024 ** 2] as const : ['KiB', 1024] as const;
  // One decimal, as the table's sizes; a slice too small for it keeps two significant digits.
  const value = (n: number) => {
    const v = n / unit[1];
    return v >= 0.05 ? Number(v.toFixed(1)) : Number(v.toPrecision(2));
  };
  return [
    '```mermaid',
    `pie showData title Bytes by source (${unit[0]})`,
    ...slices.map((o) => `  "${CHART_LABEL[o]}" : ${value(m.sizeByOrigin[o])}`),
    '```',
    '',
  ];
}

/** The upstreams section: requests by name, Docker Hub's counted pulls, rate limits. */
function upstreamSection(m: SummaryModel): string[] {
  if (m.upstreams.length === 0) return [];
  const rows = [...m.upstreams].sort((a, b) => (a.ns === DOCKER_HUB ? -1 : b.ns === DOCKER_HUB ? 1 : a.ns.localeCompare(b.ns))).map((u) => [
    escapeCell(u.ns),
    String(u.requests),
    Object.entries(u.byStatus).sort().map(([k, v]) => `${v}× ${k}`).join(', '),
    u.ns === DOCKER_HUB ? `${u.manifestGets} counted, ${u.manifestGetsAvoided} avoided` : `${u.manifestGets} sent, ${u.manifestGetsAvoided} avoided`,
    formatBytes(u.bytesFetched),
    u.rateLimit ? `${u.rateLimit.remaining}${u.rateLimit.limit !== undefined ? ` of ${u.rateLimit.limit}` : ''} left${u.rateLimit.windowSeconds !== undefined ? `, ${formatWindow(u.rateLimit.windowSeconds)} window` : ''}` : '-',
  ]);
  const body = table(['Upstream', 'Requests', 'By status', 'Manifest GETs', 'Received', 'Rate limit'], rows, ['l', 'r', 'l', 'l', 'r', 'l']);
  body.push('', 'Docker Hub counts each manifest GET as a pull; a cached tag is confirmed with a HEAD, which it does not count.');
  if (m.staleServes > 0) body.push('', `${count(m.staleServes, 'manifest')} served stale while the upstream failed or refused.`);
  return details('Upstreams', body);
}

/** `3 upstream, 1 cached`: the counts that are not zero, or `-`. */
function nonZero(parts: Array<[number, string]>): string {
  return parts.filter(([n]) => n > 0).map(([n, what]) => `${n} ${what}`).join(', ') || '-';
}

/** Per-image request counts and timings. */
function requestSection(s: StatsSnapshot, hidden: readonly string[], maxRows: number): string[] {
  const repos = Object.entries(s.repositories).filter(([n]) => !hidden.includes(n)).sort(([a], [b]) => a.localeCompare(b));
  if (repos.length === 0) return [];
  const rows = repos.slice(0, maxRows).map(([name, r]) => [
    escapeCell(name),
    nonZero([
      [r.manifestMisses, 'upstream'],
      [r.manifestHits, r.manifestRevalidated ? `cached (${r.manifestRevalidated} confirmed by HEAD)` : 'cached'],
      [r.manifestStale, 'stale'],
      [r.manifestRepeats, 'again by digest'],
    ]),
    nonZero([
      ...ORIGINS.map((o): [number, string] => [r.blobsByOrigin?.[o] ?? 0, ORIGIN_LABEL[o]]),
      [r.blobJoins, 'joined a download'],
    ]),
    formatBytes(r.bytesServed),
    `${((r.lastSeenMs - r.firstSeenMs) / 1000).toFixed(1)} s`,
  ]);
  const body = table(['Repository', 'Manifest requests', 'Blob requests', 'Sent', 'First to last request'], rows, ['l', 'l', 'l', 'r', 'r']);
  if (repos.length > rows.length) body.push('', `…and ${count(repos.length - rows.length, 'more repository', 'more repositories')}.`);
  return details('Requests by image', body);
}

/** The setup: whether docker and containerd were pointed at the cache. */
function setupLines(input: SummaryInput): { visible: string[]; hidden: string[] } {
  const visible: string[] = [];
  const hidden: string[] = [];
  for (const [who, s] of [['docker', input.docker], ['containerd', input.containerd]] as const) {
    if (!s) continue;
    if (s.configured) hidden.push(`- ${who}: pointed at the cache (${escapeCell(s.detail)})`);
    else if (s.detail === `configure-${who} is false`) hidden.push(`- ${who}: left alone (${code(`configure-${who}: false`)})`);
    else visible.push(`⚠ ${who} was not pointed at the cache: ${escapeCell(s.detail.replace(/\.$/, ''))}.`);
  }
  return { visible, hidden };
}

/** The job summary as markdown. */
export function renderJobSummary(input: SummaryInput): string {
  const hidden = input.hidden ?? [];
  const maxRows = input.maxRows ?? DEFAULT_MAX_ROWS;
  const setup = setupLines(input);
  const m = input.stats ? summaryModel(input.stats, hidden, input.registryHost) : undefined;
  if (!m || m.images.length === 0) {
    // One line; what the Actions cache did (restored pushed images, saved) folded under it.
    const why = setup.visible.length ? ` ${setup.visible.join(' ')}` : '';
    const line = `regcache: no image went through the cache or the registry in this job.${why}`;
    if (!input.persist) return `**${line.slice(0, 8)}**${line.slice(8)}\n`;
    const items = persistenceItems(input.persist, input.restored, input.saved, input.registryImport, input.event ?? {}, 0);
    return `${details(line, items).join('\n').trimEnd()}\n`;
  }
  const out: string[] = ['### regcache', '', headline(m), ''];
  out.push(...setup.visible.map((l) => `${l}\n`));
  const event = input.event ?? {};
  const why = input.persist ? whyNotSaved(input.persist, input.saved, event) : undefined;
  if (why) out.push(`Nothing was saved to the Actions cache: ${why}.`, '');
  const warn = workingSetWarning(input.saved);
  if (warn) out.push(warn, '');
  out.push(...imageTable(m, maxRows), ...chart(m));
  out.push(...upstreamSection(m), ...requestSection(input.stats!, hidden, maxRows));
  if (input.persist) {
    out.push(...details('GitHub Actions cache', persistenceItems(input.persist, input.restored, input.saved, input.registryImport, event, m.pushed)));
  }
  if (setup.hidden.length) out.push(...details('Setup', setup.hidden));
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd()}\n`;
}
