// Points the docker daemon at the cache: merges `registry-mirrors` (and, for a non-loopback
// bind address, `insecure-registries`) into daemon.json keeping every other key, reloads
// dockerd with SIGHUP (systemd's `reload` on hosted runners), and undoes exactly that in
// post, leaving the file byte-identical when nobody else touched it meanwhile.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withFileLock } from './file-lock.js';
import { readFileMaybe, removeFilePrivileged, run, runPrivileged, writeFilePrivileged, isRoot } from './privileged.js';
import type { DockerChange, ReloadMethod } from './state.js';

type DaemonConfig = Record<string, unknown>;

function lockPath(daemonJson: string): string {
  return join(tmpdir(), `regcache-${createHash('sha256').update(daemonJson).digest('hex').slice(0, 12)}.lock`);
}

function parseConfig(bytes: Buffer | null, path: string): DaemonConfig {
  if (!bytes || bytes.toString('utf8').trim() === '') return {};
  const doc: unknown = JSON.parse(bytes.toString('utf8'));
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error(`${path} is not a JSON object`);
  return doc as DaemonConfig;
}

function stringList(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** daemon.json with our mirror first and our insecure registries added (pure). */
export function mergeMirror(config: DaemonConfig, mirror: string, insecure: string[]): DaemonConfig {
  const mirrors = [mirror, ...stringList(config['registry-mirrors']).filter((m) => m !== mirror)];
  const out: DaemonConfig = { ...config, 'registry-mirrors': mirrors };
  if (insecure.length) out['insecure-registries'] = [...new Set([...stringList(config['insecure-registries']), ...insecure])];
  return out;
}

/** daemon.json without what {@link mergeMirror} added (pure). */
export function removeMirror(config: DaemonConfig, mirror: string, insecure: string[]): DaemonConfig {
  const out: DaemonConfig = { ...config };
  const mirrors = stringList(config['registry-mirrors']).filter((m) => m !== mirror);
  if (mirrors.length) out['registry-mirrors'] = mirrors;
  else delete out['registry-mirrors'];
  if (insecure.length) {
    const rest = stringList(config['insecure-registries']).filter((r) => !insecure.includes(r));
    if (rest.length) out['insecure-registries'] = rest;
    else delete out['insecure-registries'];
  }
  return out;
}

/** How to reload dockerd here: systemd's reload when it manages docker, else SIGHUP by pid file. */
export async function detectReload(pidFile: string): Promise<ReloadMethod | undefined> {
  const sudo = !isRoot();
  if (existsSync('/run/systemd/system') && (await run('systemctl', ['is-active', '--quiet', 'docker'])).code === 0) {
    return { kind: 'systemd', sudo };
  }
  if (existsSync(pidFile)) return { kind: 'pid', pidFile, sudo };
  return undefined;
}

/** Tells dockerd to re-read daemon.json (registry mirrors reload without restarting containers). */
export async function reloadDocker(method: ReloadMethod): Promise<void> {
  if (method.kind === 'systemd') {
    const r = await runPrivileged('systemctl', ['reload', 'docker']);
    if (r.code !== 0) throw new Error(`systemctl reload docker failed: ${r.stderr.trim()}`);
    return;
  }
  const pid = Number.parseInt((await readFile(method.pidFile, 'utf8')).trim(), 10);
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`${method.pidFile} holds no pid`);
  if (isRoot()) {
    process.kill(pid, 'SIGHUP');
    return;
  }
  const r = await runPrivileged('kill', ['-HUP', String(pid)]);
  if (r.code !== 0) throw new Error(`kill -HUP ${pid} failed: ${r.stderr.trim()}`);
}

/** Adds the mirror to daemon.json under a lock and reloads dockerd. */
export async function configureDocker(path: string, mirror: string, insecure: string[], reload: ReloadMethod): Promise<DockerChange> {
  const change = await withFileLock(lockPath(path), async () => {
    const original = await readFileMaybe(path);
    const merged = mergeMirror(parseConfig(original, path), mirror, insecure);
    const written = Buffer.from(`${JSON.stringify(merged, null, 2)}\n`);
    await writeFilePrivileged(path, written);
    return { path, original: original ? original.toString('base64') : null, written: written.toString('base64'), mirror, insecure, reload };
  });
  await reloadDocker(reload);
  return change;
}

/**
 * Undoes {@link configureDocker}: restores the original bytes when the file is still what
 * we wrote, else removes only our entries (another job changed it since). Then reloads.
 */
export async function restoreDocker(change: DockerChange): Promise<'restored' | 'edited'> {
  const outcome = await withFileLock(lockPath(change.path), async () => {
    const current = await readFileMaybe(change.path);
    if (current && current.equals(Buffer.from(change.written, 'base64'))) {
      if (change.original === null) await removeFilePrivileged(change.path);
      else await writeFilePrivileged(change.path, Buffer.from(change.original, 'base64'));
      return 'restored' as const;
    }
    const cleaned = removeMirror(parseConfig(current, change.path), change.mirror, change.insecure);
    await writeFilePrivileged(change.path, `${JSON.stringify(cleaned, null, 2)}\n`);
    return 'edited' as const;
  });
  await reloadDocker(change.reload);
  return outcome;
}
