// Rate-limit headers as registries send them. Docker Hub sends `ratelimit-limit: 100;w=21600`
// and `ratelimit-remaining: 93;w=21600`: a count, then `;w=` and the window in seconds
// (the IETF RateLimit header draft's form). Parsed here once for the summary and /metrics.

/** A parsed rate limit: pulls left of the limit in a window. */
export interface RateLimit {
  remaining: number;
  limit: number | undefined;
  /** The window in seconds, when the header named one. */
  windowSeconds: number | undefined;
}

/** The count and `w=` window of one header value, e.g. `93;w=21600`. */
function parseValue(value: string): { n: number; w: number | undefined } | undefined {
  const [count, ...params] = value.split(';').map((p) => p.trim());
  if (!count || !/^\d+$/.test(count)) return undefined;
  let w: number | undefined;
  for (const p of params) {
    const m = /^w=(\d+)$/.exec(p);
    if (m) w = Number(m[1]);
  }
  return { n: Number(count), w };
}

/** Parses `ratelimit-limit` / `ratelimit-remaining` values; undefined when `remaining` is unreadable. */
export function parseRateLimit(limit: string | undefined, remaining: string): RateLimit | undefined {
  const r = parseValue(remaining);
  if (!r) return undefined;
  const l = limit === undefined ? undefined : parseValue(limit);
  return { remaining: r.n, limit: l?.n, windowSeconds: r.w ?? l?.w };
}

/** A window in words: `6 h`, `30 min`, `45 s`. */
export function formatWindow(seconds: number): string {
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds >= 3600) return `${(seconds / 3600).toFixed(1)} h`;
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}
