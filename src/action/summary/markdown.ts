// Markdown building blocks of the job summary: text escaped for outside code spans, code spans
// (nothing escaped inside but the table pipe), humanized bytes and counts, short digests.

/**
 * Escapes text for a markdown table cell or a line, outside code spans: HTML, the table pipe,
 * line breaks and markdown's emphasis, link and heading characters.
 */
export function escapeCell(text: string): string {
  return text
    .replace(/[\r\n]+/g, ' ')
    .replace(/([\\`*_[\]#!~])/g, '\\$1')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/\|/g, '\\|');
}

/**
 * A code span of `text`: its content is shown as it is (no backslash escapes inside), fenced
 * by more backticks than it holds; a pipe is still escaped (GFM tables split on it first).
 */
export function code(text: string): string {
  const flat = text.replace(/[\r\n]+/g, ' ').replace(/\|/g, '\\|');
  const longest = Math.max(0, ...(flat.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longest + 1);
  const pad = flat.startsWith('`') || flat.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${flat}${pad}${fence}`;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Bytes in a binary unit: `512 B`, `2.1 MiB`, `10 GiB`. */
export function formatBytes(n: number): string {
  let v = n;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${v} B`;
  const s = v.toFixed(1);
  return `${s.endsWith('.0') ? s.slice(0, -2) : s} ${UNITS[i]}`;
}

/** `1 pack`, `2 packs` (`plural` when the plural is not `singular + s`). */
export function count(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}

/** A digest cut to its algorithm and 12 hex digits, as docker prints image IDs. */
export function shortDigest(digest: string): string {
  const colon = digest.indexOf(':');
  return colon < 0 ? digest.slice(0, 12) : digest.slice(0, colon + 13);
}

/** Seconds with one decimal: `1.2 s`. */
export function seconds(s: number): string {
  return `${s.toFixed(1)} s`;
}

/** A markdown table; every row gets the header's column count. */
export function table(header: string[], rows: string[][], align: Array<'l' | 'r'> = []): string[] {
  const sep = header.map((_, i) => (align[i] === 'r' ? '---:' : '---'));
  const line = (cells: string[]) => `| ${header.map((_, i) => cells[i] ?? '').join(' | ')} |`;
  return [line(header), `|${sep.join('|')}|`, ...rows.map(line)];
}

/** A collapsed section. */
export function details(summary: string, body: string[]): string[] {
  return ['<details>', `<summary>${summary}</summary>`, '', ...body, '', '</details>', ''];
}
