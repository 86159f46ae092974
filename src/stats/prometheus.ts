// Renders a stats snapshot in the Prometheus text exposition format.
import { ORIGINS, type StatsSnapshot } from './stats.js';
import { parseRateLimit } from './rate-limit.js';

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** The snapshot as Prometheus metrics text. */
export function toPrometheus(s: StatsSnapshot): string {
  const out: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', help: string, rows: Array<[Record<string, string>, number]>) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of rows) {
      const l = Object.entries(labels).map(([k, v]) => `${k}="${esc(v)}"`).join(',');
      out.push(`${name}${l ? `{${l}}` : ''} ${value}`);
    }
  };
  const repos = Object.entries(s.repositories);
  metric('regcache_requests_total', 'counter', 'Client requests received.', [[{}, s.totals.requests]]);
  metric('regcache_manifest_requests_total', 'counter', 'Manifests served by source.', repos.flatMap(([repository, r]) => [
    [{ repository, source: 'local' }, r.manifestHits],
    [{ repository, source: 'upstream' }, r.manifestMisses],
    [{ repository, source: 'stale' }, r.manifestStale],
    // docker's by-digest request for a manifest this server just fetched by tag: not a hit.
    [{ repository, source: 'repeat' }, r.manifestRepeats ?? 0],
  ] as Array<[Record<string, string>, number]>));
  metric('regcache_blob_requests_total', 'counter', 'Blobs served by source.', repos.flatMap(([repository, r]) => [
    [{ repository, source: 'local' }, r.blobHits],
    [{ repository, source: 'upstream' }, r.blobMisses],
    [{ repository, source: 'persist' }, r.blobPersistHits],
  ] as Array<[Record<string, string>, number]>));
  metric('regcache_blob_joins_total', 'counter', 'Blob requests that joined an in-flight upstream download.', repos.map(([repository, r]) => [{ repository }, r.blobJoins]));
  metric('regcache_bytes_served_total', 'counter', 'Bytes sent to clients.', repos.map(([repository, r]) => [{ repository }, r.bytesServed]));
  metric('regcache_bytes_served_by_origin_total', 'counter', 'Bytes sent to clients by where the content came from (upstream, actionsCache, disk, pushed).', repos.flatMap(([repository, r]) =>
    ORIGINS.map((origin) => [{ repository, origin }, r.bytesServedByOrigin?.[origin] ?? 0] as [Record<string, string>, number]),
  ));
  metric('regcache_bytes_fetched_total', 'counter', 'Bytes received from upstreams.', repos.map(([repository, r]) => [{ repository }, r.bytesFetched]));
  const ups = Object.entries(s.upstreams);
  metric('regcache_upstream_requests_total', 'counter', 'Requests sent upstream by method and status (0: no response).', ups.flatMap(([upstream, u]) =>
    Object.entries(u.requests).map(([k, v]) => {
      const [method, status] = k.split(' ');
      return [{ upstream, method: method!, status: status! }, v] as [Record<string, string>, number];
    }),
  ));
  metric('regcache_upstream_counted_manifest_gets_total', 'counter', 'Manifest GETs sent upstream (counted as pulls by Docker Hub).', ups.map(([upstream, u]) => [{ upstream }, u.countedManifestGets]));
  metric('regcache_upstream_manifest_gets_avoided_total', 'counter', 'Manifest GETs avoided by TTL or HEAD revalidation.', ups.map(([upstream, u]) => [{ upstream }, u.manifestGetsAvoided]));
  const limits = ups.flatMap(([upstream, u]) => {
    const parsed = u.rateLimit && parseRateLimit(u.rateLimit.limit, u.rateLimit.remaining);
    return parsed ? [{ upstream, ...parsed }] : [];
  });
  metric('regcache_upstream_ratelimit_remaining', 'gauge', 'Last ratelimit-remaining an upstream sent.', limits.map((l) => [{ upstream: l.upstream }, l.remaining]));
  metric('regcache_upstream_ratelimit_limit', 'gauge', 'Last ratelimit-limit an upstream sent.', limits.flatMap((l) => (l.limit === undefined ? [] : [[{ upstream: l.upstream }, l.limit] as [Record<string, string>, number]])));
  return `${out.join('\n')}\n`;
}
