// What the summary says, computed from a stats snapshot before any markdown: per image where
// its bytes came from, its size and what came from upstream; totals by origin; Docker Hub's
// counted pulls (the only upstream that counts them); rate limits parsed per upstream.
import { ORIGINS, noBytes, parseRateLimit, type ByOrigin, type Origin, type RateLimit, type StatsSnapshot } from '../../stats/index.js';

/** Docker Hub's namespace: the only upstream that counts manifest GETs as pulls. */
export const DOCKER_HUB = 'docker.io';

/** One image in the summary's table. */
export interface ImageRow {
  /** As docker names it: `alpine`, `owner/app`, `ghcr.io/owner/app`, `127.0.0.1:5000/team/app`. */
  name: string;
  tags: string[];
  /** The digest its (last) tag resolved to. */
  digest: string | undefined;
  /** Where its content came from, largest share first. */
  origins: Origin[];
  size: number;
  sizeByOrigin: ByOrigin;
  /** Bytes received from upstream for it. */
  fromUpstream: number;
  pushed: boolean;
}

/** One upstream's figures. */
export interface UpstreamRow {
  ns: string;
  requests: number;
  /** Requests by `METHOD STATUS`. */
  byStatus: Record<string, number>;
  manifestGets: number;
  manifestGetsAvoided: number;
  bytesFetched: number;
  errors: number;
  rateLimit: RateLimit | undefined;
}

/** Everything the summary reports. */
export interface SummaryModel {
  images: ImageRow[];
  /** Pulled through the cache (pushed images aside). */
  pulled: number;
  /** Pulled images none of whose bytes came from upstream. */
  fromCache: number;
  pushed: number;
  /** Distinct content served, by origin (a layer two images share counted once). */
  sizeByOrigin: ByOrigin;
  bytesServed: number;
  bytesFetched: number;
  upstreams: UpstreamRow[];
  staleServes: number;
}

/** An image name as docker prints it: Docker Hub's `docker.io/` and `library/` left out. */
export function displayName(canonical: string): string {
  if (!canonical.startsWith(`${DOCKER_HUB}/`)) return canonical;
  const rest = canonical.slice(DOCKER_HUB.length + 1);
  return rest.startsWith('library/') ? rest.slice('library/'.length) : rest;
}

const sumOf = (b: ByOrigin) => ORIGINS.reduce((a, o) => a + b[o], 0);

/** Origins with bytes, largest first. */
function originsOf(b: ByOrigin): Origin[] {
  return ORIGINS.filter((o) => b[o] > 0).sort((x, y) => b[y] - b[x]);
}

/** The model of a snapshot; `hidden` repositories (the mirror probe) are left out everywhere. */
export function summaryModel(s: StatsSnapshot, hidden: readonly string[] = [], registryHost?: string): SummaryModel {
  const repos = Object.entries(s.repositories).filter(([n]) => !hidden.includes(n));
  const images: ImageRow[] = repos.map(([name, r]) => {
    const sizeByOrigin = { ...noBytes(), ...r.sizeByOrigin };
    return {
      name: displayName(name),
      tags: r.references.filter((ref) => !ref.includes(':')),
      digest: r.digests[0],
      origins: originsOf(sizeByOrigin),
      size: sumOf(sizeByOrigin),
      sizeByOrigin,
      fromUpstream: r.bytesFetched,
      pushed: false,
    };
  });
  for (const [name, p] of Object.entries(s.pushes ?? {})) {
    images.push({
      name: registryHost ? `${registryHost}/${name}` : name,
      tags: p.tags,
      digest: p.digests[0],
      origins: ['pushed'],
      size: p.bytes,
      sizeByOrigin: { ...noBytes(), pushed: p.bytes },
      fromUpstream: 0,
      pushed: true,
    });
  }
  // Pulled images by name, then pushed ones by name.
  // Pulled from the registry port without being pushed in this job: restored (persist-registry) or on disk.
  for (const [name, p] of Object.entries(s.registryPulls ?? {})) {
    if (s.pushes?.[name]) continue;
    const sizeByOrigin = { ...noBytes(), ...p.sizeByOrigin };
    images.push({
      name: registryHost ? `${registryHost}/${name}` : name,
      tags: p.tags,
      digest: p.digests[0],
      origins: originsOf(sizeByOrigin),
      size: sumOf(sizeByOrigin),
      sizeByOrigin,
      fromUpstream: 0,
      pushed: false,
    });
  }
  images.sort((a, b) => Number(a.pushed) - Number(b.pushed) || a.name.localeCompare(b.name));
  const sizeByOrigin = { ...noBytes(), ...s.totals.sizeByOrigin };
  for (const [, r] of Object.entries(s.repositories).filter(([n]) => hidden.includes(n))) {
    for (const o of ORIGINS) sizeByOrigin[o] = Math.max(0, sizeByOrigin[o] - (r.sizeByOrigin?.[o] ?? 0));
  }
  for (const p of Object.values(s.pushes ?? {})) sizeByOrigin.pushed += p.bytes;
  for (const [name, p] of Object.entries(s.registryPulls ?? {})) {
    if (s.pushes?.[name]) continue;
    for (const o of ORIGINS) sizeByOrigin[o] += p.sizeByOrigin[o];
  }
  const pulledRows = images.filter((i) => !i.pushed);
  return {
    images,
    pulled: pulledRows.length,
    fromCache: pulledRows.filter((i) => i.size > 0 && i.sizeByOrigin.upstream === 0).length,
    pushed: images.length - pulledRows.length,
    sizeByOrigin,
    bytesServed: repos.reduce((a, [, r]) => a + r.bytesServed, 0),
    bytesFetched: repos.reduce((a, [, r]) => a + r.bytesFetched, 0),
    staleServes: repos.reduce((a, [, r]) => a + r.manifestStale, 0),
    upstreams: Object.entries(s.upstreams).map(([ns, u]) => ({
      ns,
      requests: Object.values(u.requests).reduce((a, b) => a + b, 0),
      byStatus: u.requests,
      manifestGets: u.countedManifestGets,
      manifestGetsAvoided: u.manifestGetsAvoided,
      bytesFetched: u.bytesFetched,
      errors: u.errors,
      rateLimit: u.rateLimit && parseRateLimit(u.rateLimit.limit, u.rateLimit.remaining),
    })),
  };
}

/** Docker Hub's figures, when Docker Hub is an upstream that was asked. */
export function dockerHub(m: SummaryModel): UpstreamRow | undefined {
  return m.upstreams.find((u) => u.ns === DOCKER_HUB);
}

/** Numbers the step outputs and the JSON file share. */
export interface SummaryNumbers {
  images: number;
  upstreamRequests: number;
  /** Manifest GETs sent to Docker Hub (what it counts as pulls). */
  countedManifestGets: number;
  manifestGetsAvoided: number;
  bytesServed: number;
  bytesFetched: number;
  staleServes: number;
  blobHits: number;
  blobMisses: number;
  /** Docker Hub's pulls left, as a number. */
  rateLimitRemaining: string | undefined;
}

/** Totals over a snapshot, leaving out `hidden` repositories (the mirror probe). */
export function summaryNumbers(s: StatsSnapshot, hidden: string[] = []): SummaryNumbers {
  const repos = Object.entries(s.repositories).filter(([n]) => !hidden.includes(n));
  const m = summaryModel(s, hidden);
  const hub = dockerHub(m);
  return {
    images: m.pulled,
    upstreamRequests: m.upstreams.reduce((a, u) => a + u.requests, 0),
    countedManifestGets: hub?.manifestGets ?? 0,
    manifestGetsAvoided: hub?.manifestGetsAvoided ?? 0,
    bytesServed: m.bytesServed,
    bytesFetched: m.bytesFetched,
    staleServes: m.staleServes,
    blobHits: repos.reduce((a, [, r]) => a + r.blobHits + r.blobPersistHits, 0),
    blobMisses: repos.reduce((a, [, r]) => a + r.blobMisses, 0),
    rateLimitRemaining: hub?.rateLimit ? String(hub.rateLimit.remaining) : undefined,
  };
}
