// Points the docker daemon at the cache: merges `registry-mirrors` (and, for a non-loopback
// bind address, `insecure-registries`) into daemon.json keeping every other key, reloads
// dockerd with SIGHUP (systemd's `reload` on hosted runners), and undoes exactly that in
// post, leaving the file byte-identical when nobody else touched it meanwhile.
// dockerd's reload only changes `registry-mirrors` and `insecure-registries` when the file
// sets them: a file without the key leaves the running daemon's list as it was. So post first
// writes the lists explicitly (without our entries), reloads, waits until the daemon reports
// our mirror gone, and only then puts the original bytes back.
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

/** What the host says about its docker daemons, for {@link chooseReload}. */
export interface ReloadFacts {
  /** systemd runs an active `docker` unit. */
  systemdDocker: boolean;
  /** That unit's main pid, when known. */
  systemdMainPid?: number;
  pidFileExists: boolean;
  /** The pid in the pid file when it names a running dockerd. */
  pidFileDockerd?: number;
}

/**
 * How to reload the daemon whose pid file is given (pure): systemd's reload when systemd runs
 * docker, unless the pid file names another running dockerd (a second daemon on the host, e.g.
 * one per runner); else SIGHUP by pid file; undefined when neither applies.
 */
export function chooseReload(facts: ReloadFacts, pidFile: string, sudo: boolean): ReloadMethod | undefined {
  const otherDaemon = facts.pidFileDockerd !== undefined && facts.systemdMainPid !== undefined && facts.pidFileDockerd !== facts.systemdMainPid;
  if (facts.systemdDocker && !otherDaemon) return { kind: 'systemd', sudo };
  if (facts.pidFileExists) return { kind: 'pid', pidFile, sudo };
  return undefined;
}

/** The pid in `pidFile` when it names a running dockerd (Linux: /proc/<pid>/comm), else undefined. */
export async function dockerdPid(pidFile: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt((await readFile(pidFile, 'utf8')).trim(), 10);
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    return (await readFile(`/proc/${pid}/comm`, 'utf8')).trim() === 'dockerd' ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** How to reload dockerd here (see {@link chooseReload}). */
export async function detectReload(pidFile: string): Promise<ReloadMethod | undefined> {
  const systemdDocker = existsSync('/run/systemd/system') && (await run('systemctl', ['is-active', '--quiet', 'docker'])).code === 0;
  const mainPid = systemdDocker ? Number.parseInt((await run('systemctl', ['show', '--property', 'MainPID', '--value', 'docker'])).stdout.trim(), 10) : NaN;
  const facts: ReloadFacts = {
    systemdDocker,
    ...(mainPid > 0 ? { systemdMainPid: mainPid } : {}),
    pidFileExists: existsSync(pidFile),
  };
  const pid = await dockerdPid(pidFile);
  if (pid !== undefined) facts.pidFileDockerd = pid;
  return chooseReload(facts, pidFile, !isRoot());
}

/** Tells dockerd to re-read daemon.json (registry mirrors reload without restarting containers). */
export async function reloadDocker(method: ReloadMethod): Promise<void> {
  if (method.kind === 'systemd') {
    const r = await runPrivileged('systemctl', ['reload', 'docker']);
    if (r.code !== 0) throw new Error(`systemctl reload docker failed: ${r.stderr.trim()}`);
    return;
  }
  // never signal whatever process a stale pid file names now
  const pid = await dockerdPid(method.pidFile);
  if (pid === undefined) throw new Error(`${method.pidFile} does not name a running dockerd`);
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
  try {
    await reloadDocker(reload);
  } catch (err) {
    // post never learns of a change main could not apply: put the file back now
    await withFileLock(lockPath(path), async () => {
      if (!(await readFileMaybe(path))?.equals(Buffer.from(change.written, 'base64'))) return;
      if (change.original === null) await removeFilePrivileged(path);
      else await writeFilePrivileged(path, Buffer.from(change.original, 'base64'));
    });
    throw err;
  }
  // SIGHUP is handled asynchronously: wait until the daemon uses the mirror (the proof follows)
  await waitForMirrors((mirrors) => mirrors.includes(normalizeMirror(mirror)));
  return change;
}

function normalizeMirror(url: string): string {
  return url.replace(/\/+$/, '');
}

/** The registry mirrors the docker daemon reports using now, or undefined when it does not answer. */
export async function activeMirrors(): Promise<string[] | undefined> {
  const r = await run('docker', ['info', '--format', '{{json .RegistryConfig.Mirrors}}'], 15_000);
  if (r.code !== 0) return undefined;
  try {
    return stringList(JSON.parse(r.stdout)).map(normalizeMirror);
  } catch {
    return undefined;
  }
}

/** Polls the daemon's active mirrors until `done` holds for them; false on timeout. */
export async function waitForMirrors(done: (mirrors: string[]) => boolean, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const mirrors = await activeMirrors();
    if (mirrors && done(mirrors)) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `config` with the mirror and insecure-registry lists set explicitly (so that a reload applies them). */
function withExplicitLists(config: DaemonConfig, insecure: string[]): DaemonConfig {
  const out: DaemonConfig = { ...config, 'registry-mirrors': config['registry-mirrors'] ?? [] };
  if (insecure.length) out['insecure-registries'] = config['insecure-registries'] ?? [];
  return out;
}

/**
 * Undoes {@link configureDocker}: restores the original bytes when the file is still what
 * we wrote, else removes only our entries (another job changed it since), and reloads so that
 * the running daemon forgets the mirror too. `forgotten` is false when the daemon did not
 * report the mirror gone in time (the file is restored all the same).
 */
export async function restoreDocker(change: DockerChange): Promise<{ outcome: 'restored' | 'edited'; forgotten: boolean }> {
  return withFileLock(lockPath(change.path), async () => {
    const current = await readFileMaybe(change.path);
    const unchanged = current !== null && current.equals(Buffer.from(change.written, 'base64'));
    const outcome = unchanged ? ('restored' as const) : ('edited' as const);
    const target: Buffer | null = unchanged
      ? change.original === null ? null : Buffer.from(change.original, 'base64')
      : Buffer.from(`${JSON.stringify(removeMirror(parseConfig(current, change.path), change.mirror, change.insecure), null, 2)}\n`);
    const targetConfig = parseConfig(target, change.path);
    const explicit = withExplicitLists(targetConfig, change.insecure);
    const explicitFirst = JSON.stringify(explicit) !== JSON.stringify(targetConfig);
    const forget = () => waitForMirrors((mirrors) => !mirrors.includes(normalizeMirror(change.mirror)));
    let forgotten = false;
    let reloadError: unknown;
    const reloadAndWait = async () => {
      try {
        await reloadDocker(change.reload);
        forgotten = await forget();
      } catch (err) {
        reloadError = err;
      }
    };
    if (explicitFirst) {
      // the target leaves a list unset, which a reload would not apply: set it explicitly first
      await writeFilePrivileged(change.path, `${JSON.stringify(explicit, null, 2)}\n`);
      await reloadAndWait();
    }
    // the file is put back even when dockerd could not be reloaded
    if (target === null) await removeFilePrivileged(change.path);
    else await writeFilePrivileged(change.path, target);
    if (!explicitFirst) await reloadAndWait();
    if (reloadError) throw reloadError;
    return { outcome, forgotten };
  });
}
