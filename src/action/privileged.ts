// Writing system files and signalling system processes: directly when we may, else
// through passwordless sudo (GitHub's hosted runners), never with a prompt.
import { execFile } from 'node:child_process';
import { access, constants, mkdir, mkdtemp, readFile, rm, rmdir, writeFile, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Result of a command. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command without a shell; never throws for a non-zero exit. */
export function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 127) : 0;
      resolve({ code, stdout: stdout ?? '', stderr: stderr ?? (err?.message ?? '') });
    });
  });
}

/** True when this process runs as root. */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

let sudoChecked: boolean | undefined;

/** True when `sudo -n` works without a password. */
export async function canSudo(): Promise<boolean> {
  if (isRoot()) return true;
  sudoChecked ??= (await run('sudo', ['-n', 'true'], 10_000)).code === 0;
  return sudoChecked;
}

/** Runs a command as root: directly when root, else with `sudo -n`. */
export async function runPrivileged(cmd: string, args: string[]): Promise<CommandResult> {
  return isRoot() ? run(cmd, args) : run('sudo', ['-n', cmd, ...args]);
}

/**
 * True when this process may write `path` itself (a temp file beside it, then a rename): its
 * directory is writable, or, when directories are missing, the nearest existing ancestor is.
 */
async function writable(path: string): Promise<boolean> {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    try {
      await access(dir, constants.W_OK);
      return true;
    } catch (err) {
      // a missing directory: the nearest existing ancestor decides
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dir === dirname(dir)) return false;
    }
  }
}

/** Writes a file atomically (creating missing directories), with sudo when this user may not. */
export async function writeFilePrivileged(path: string, data: Buffer | string): Promise<void> {
  if (await writable(path)) {
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.regcache-${process.pid}`;
    await writeFile(tmp, data);
    await rename(tmp, path);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'regcache-'));
  try {
    const tmp = join(dir, 'file');
    await writeFile(tmp, data);
    await mustSucceed(runPrivileged('mkdir', ['-p', dirname(path)]), `create ${dirname(path)}`);
    await mustSucceed(runPrivileged('install', ['-m', '0644', tmp, path]), `write ${path}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Removes a file, with sudo when needed; absent is fine. */
export async function removeFilePrivileged(path: string): Promise<void> {
  try {
    await rm(path, { force: true });
  } catch {
    await mustSucceed(runPrivileged('rm', ['-f', path]), `remove ${path}`);
  }
}

/** Removes a directory if it is empty (with sudo when needed); absent or not empty is fine. */
export async function removeEmptyDirPrivileged(path: string): Promise<void> {
  try {
    await rmdir(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTEMPTY' || code === 'EEXIST') return;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
    const r = await runPrivileged('rmdir', [path]);
    if (r.code !== 0 && !/not empty|No such file/i.test(r.stderr)) throw new Error(`cannot remove ${path}: ${r.stderr.trim() || `exit ${r.code}`}`);
  }
}

/** Reads a file, or null when it does not exist (with sudo when unreadable). */
export async function readFileMaybe(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code !== 'EACCES') throw err;
    const r = await runPrivileged('cat', [path]);
    if (r.code !== 0) throw new Error(`cannot read ${path}: ${r.stderr.trim()}`);
    return Buffer.from(r.stdout);
  }
}

async function mustSucceed(p: Promise<CommandResult>, what: string): Promise<void> {
  const r = await p;
  if (r.code !== 0) throw new Error(`cannot ${what}: ${r.stderr.trim() || `exit ${r.code}`}`);
}
