// Names in the Actions cache. Entries are found again only with the same key and the same
// version, which @actions/cache derives from the path strings passed in (and the
// compression): so paths are fixed relative names inside a staging directory that is made
// the workspace for the call, and never the runner's absolute paths.
import { createHash } from 'node:crypto';

/** The path string of every pack entry. */
export const PACK_PATH = 'regcache-pack';
/** The path string of every index entry. */
export const INDEX_PATH = 'regcache-index';
/** The index file inside the index entry. */
export const INDEX_FILE = 'index.json';

/**
 * Key of the pack holding exactly these blobs: matrix legs fetching the same image agree on it.
 * Keys in `avoid` (packs found missing or broken: a broken entry keeps its key until evicted)
 * are stepped over deterministically, so legs that found the same pack broken agree again.
 */
export function packKey(prefix: string, digests: string[], avoid: ReadonlySet<string> = new Set()): string {
  const base = [...digests].sort().join('\n');
  let key = `${prefix}-pack-${createHash('sha256').update(base).digest('hex').slice(0, 40)}`;
  while (avoid.has(key)) key = `${prefix}-pack-${createHash('sha256').update(`${base}\n${key}`).digest('hex').slice(0, 40)}`;
  return key;
}

/** The prefix under which index entries are restored, newest first. */
export function indexPrefix(prefix: string): string {
  return `${prefix}-index-`;
}

/** A job's own index key: prefix, run id, attempt, job, and a hash of the matrix values. */
export function indexKey(prefix: string, env: NodeJS.ProcessEnv, matrix = ''): string {
  const m = createHash('sha256').update(matrix).digest('hex').slice(0, 12);
  const run = env.GITHUB_RUN_ID ?? `${Date.now()}`;
  const attempt = env.GITHUB_RUN_ATTEMPT ?? '1';
  const job = (env.GITHUB_JOB ?? 'job').replace(/[^A-Za-z0-9_.-]/g, '_');
  return `${indexPrefix(prefix)}${run}-${attempt}-${job}-${m}`;
}
