// containerd's registry host configuration: one `hosts.toml` per mirrored registry under
// its `config_path` directory, pointing at the cache. containerd-based clients (nerdctl,
// ctr --hosts-dir, kind nodes, the CRI) send `?ns=<registry>`, which the cache routes on.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { removeEmptyDirPrivileged, removeFilePrivileged, writeFilePrivileged } from './privileged.js';

/** The hosts.toml that sends pulls of `registry` to the cache at `cacheUrl` (pure). */
export function hostsToml(registry: string, cacheUrl: string): string {
  const upstream = registry === 'docker.io' ? 'https://registry-1.docker.io' : `https://${registry}`;
  return [
    `# Written by regcache: pulls of ${registry} go through the cache first.`,
    `server = "${upstream}"`,
    '',
    `[host."${cacheUrl}"]`,
    '  capabilities = ["pull", "resolve"]',
    '',
  ].join('\n');
}

/**
 * Writes a hosts.toml for each registry that has none yet. Returns what post must remove, in
 * removal order: the files written, then the directories created for them (deepest first,
 * with a trailing `/`).
 */
export async function writeContainerdHosts(dir: string, registries: string[], cacheUrl: string): Promise<string[]> {
  const written: string[] = [];
  const created: string[] = [];
  for (const registry of registries) {
    const file = join(dir, registry, 'hosts.toml');
    if (existsSync(file)) continue; // the host already configures this registry: leave it alone
    const missing: string[] = [];
    for (let d = dirname(file); !existsSync(d) && d !== dirname(d); d = dirname(d)) missing.push(`${d}/`);
    await writeFilePrivileged(file, hostsToml(registry, cacheUrl));
    written.push(file);
    created.push(...missing);
  }
  return [...written, ...created.sort((a, b) => b.length - a.length)]; // a child dir's path is longer than its parent's
}

/** Removes what {@link writeContainerdHosts} wrote: its files, then its directories if empty. */
export async function removeContainerdHosts(entries: string[]): Promise<void> {
  for (const e of entries) {
    if (e.endsWith('/')) await removeEmptyDirPrivileged(e.slice(0, -1));
    else await removeFilePrivileged(e);
  }
}
