// Sizes and durations as people write them in flags, inputs and configuration: one parser
// each, so that `--max-cache-size`, `max-save-size`, `--tag-ttl` and `tag-ttl` agree.

const SIZE_UNITS = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 } as const;
const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses a size such as `10G`, `512MiB`, `2000000` (bytes; binary units). Throws with an example of the form. */
export function parseSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$/i.exec(value.trim());
  if (!m) throw new Error(`"${value}" is not a size such as 10G or 512M`);
  return Math.floor(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase() as keyof typeof SIZE_UNITS]);
}

/** Parses a duration such as `500ms`, `90s`, `5m`, `1h`, `7d`; a bare number is seconds. Returns milliseconds. */
export function parseDuration(value: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(value.trim());
  if (!m) throw new Error(`"${value}" is not a duration such as 90s, 5m, 1h`);
  return Number(m[1]) * DURATION_UNITS[(m[2] ?? 's') as keyof typeof DURATION_UNITS];
}
