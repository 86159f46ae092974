// Where regcache keeps its storage when told nothing: $REGCACHE_STORAGE, else the user's
// cache directory of the platform.
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The default storage root for this user and platform. */
export function defaultStorageDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.REGCACHE_STORAGE) return env.REGCACHE_STORAGE;
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Caches', 'regcache');
  if (process.platform === 'win32') return join(env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'), 'regcache');
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'regcache');
}

/**
 * The default local directory of a server whose storage is the bucket `url` (s3://bucket/prefix):
 * its temp files, lock and local copies of blobs, under the default storage root.
 */
export function defaultLocalDir(url: string, env: NodeJS.ProcessEnv = process.env): string {
  const name = url.replace(/^s3:\/\//, '').replace(/\/+$/, '').replace(/[^A-Za-z0-9._-]+/g, '_');
  return join(defaultStorageDir(env), 's3', name);
}
