// containerd's registry host configuration: one `hosts.toml` per mirrored registry under
// its `config_path` directory, pointing at the cache. containerd-based clients (nerdctl,
// ctr --hosts-dir, kind nodes, the CRI) send `?ns=<registry>`, which the cache routes on.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { removeFilePrivileged, writeFilePrivileged } from './privileged.js';

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

/** Writes a hosts.toml for each registry that has none yet; returns the files written. */
export async function writeContainerdHosts(dir: string, registries: string[], cacheUrl: string): Promise<string[]> {
  const written: string[] = [];
  for (const registry of registries) {
    const file = join(dir, registry, 'hosts.toml');
    if (existsSync(file)) continue; // the host already configures this registry: leave it alone
    await writeFilePrivileged(file, hostsToml(registry, cacheUrl));
    written.push(file);
  }
  return written;
}

/** Removes the files {@link writeContainerdHosts} wrote. */
export async function removeContainerdHosts(files: string[]): Promise<void> {
  for (const f of files) await removeFilePrivileged(f);
}
