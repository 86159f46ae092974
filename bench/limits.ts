// What the machine itself can do, measured in the same run as the servers: `sha256sum`
// over a 256 MiB file in tmpfs (the hashing a registry must do on every byte pushed), `dd
// ... conv=fdatasync` into the filesystem that holds the servers' storage (the durable write
// it must do), and node's own SHA-256 (OpenSSL) for reference. All run pinned to the servers'
// CPU. Also describes the machine (CPU, memory, disk, kernel, versions) for the results.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, statfsSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { cpus, release } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { DISTRIBUTION_BIN, REGCACHE_CLI, REPO_ROOT, pinned } from './servers.js';

const run = promisify(execFile);

/** Size of the files the limits are measured over. */
export const LIMIT_BYTES = 256 * 1024 * 1024;
/** Each limit is measured this many times and the best kept (it is a ceiling). */
const LIMIT_RUNS = 2;

/** The machine's limits, in bytes per second. */
export interface MachineLimits {
  sha256sum: number;
  dd: number;
  nodeSha256: number;
  /** Where the tmpfs file for the hashing runs lived. */
  hashFileDir: string;
}

/** Measures the limits; `storageParent` must be on the servers' storage filesystem. */
export async function measureLimits(storageParent: string, cpu: string | undefined, node: string): Promise<MachineLimits> {
  const hashFileDir = existsSync('/dev/shm') ? '/dev/shm' : storageParent;
  const dir = await mkdtemp(join(hashFileDir, 'regcache-bench-'));
  try {
    const file = join(dir, 'random');
    await writeRandom(file, LIMIT_BYTES);
    const sha256sum = await best(() => timeCommand(cpu, 'sha256sum', [file]).then((s) => LIMIT_BYTES / s));
    const nodeSha256 = await best(() => nodeHashRate(cpu, node, file));
    const ddFile = join(storageParent, 'dd-limit');
    const dd = await best(() => ddRate(cpu, ddFile)).finally(() => rm(ddFile, { force: true }));
    return { sha256sum, dd, nodeSha256, hashFileDir };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function best(measure: () => Promise<number>): Promise<number> {
  let top = 0;
  for (let i = 0; i < LIMIT_RUNS; i++) top = Math.max(top, await measure());
  return top;
}

async function writeRandom(file: string, size: number): Promise<void> {
  const fh = await open(file, 'w');
  try {
    for (let off = 0; off < size; off += 16 << 20) await fh.write(randomBytes(Math.min(16 << 20, size - off)));
  } finally {
    await fh.close();
  }
}

/** Wall-clock seconds a pinned command takes (spawn cost included; it is milliseconds). */
async function timeCommand(cpu: string | undefined, cmd: string, args: string[]): Promise<number> {
  const [c, a] = pinned(cpu, cmd, args);
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(c, a, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} failed (${code}): ${err}`))));
  });
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** `dd if=/dev/zero of=<file> bs=1M count=256 conv=fdatasync`, rate as dd reports its time. */
async function ddRate(cpu: string | undefined, file: string): Promise<number> {
  const [c, a] = pinned(cpu, 'dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${LIMIT_BYTES >> 20}`, 'conv=fdatasync']);
  const { stderr } = await run(c, a, { env: { ...process.env, LC_ALL: 'C' } });
  const m = /^(\d+) bytes .* copied, ([\d.]+) s/m.exec(stderr);
  if (!m) throw new Error(`cannot read dd's output: ${stderr}`);
  return Number(m[1]) / Number(m[2]);
}

/** node's createHash('sha256') over the file already in memory (OpenSSL; SHA-NI if the CPU has it). */
async function nodeHashRate(cpu: string | undefined, node: string, file: string): Promise<number> {
  const script = [
    "const { createHash } = require('node:crypto');",
    `const buf = require('node:fs').readFileSync(${JSON.stringify(file)});`,
    'const t0 = process.hrtime.bigint();',
    "const h = createHash('sha256');",
    'for (let off = 0; off < buf.length; off += 65536) h.update(buf.subarray(off, off + 65536));',
    "h.digest('hex');",
    'process.stdout.write(String(buf.length / (Number(process.hrtime.bigint() - t0) / 1e9)));',
  ].join('\n');
  const [c, a] = pinned(cpu, node, ['-e', script]);
  const { stdout } = await run(c, a);
  return Number(stdout);
}

/** The machine, as the results describe it. */
export interface MachineInfo {
  date: string;
  nproc: number;
  cpuModel: string;
  cpuMHz: string;
  cpuFlags: string;
  memory: string;
  kernel: string;
  disk: string;
  benchNode: string;
  serverNode: string;
  distribution: string;
  /** Which regcache: the commit checked out and when dist/cli.js was built. */
  regcache: string;
}

/** Describes the machine; `storageParent` is the directory that holds the servers' storage. */
export async function describeMachine(storageParent: string, serverNode: string, cli?: string): Promise<MachineInfo> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(cpuinfo)?.[1]?.trim() ?? '?';
  const flags = field('flags').split(/\s+/);
  const interesting = ['sha_ni', 'avx2', 'avx512f', 'aes'].filter((f) => flags.includes(f));
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
  const serverNodeVersion = (await run(serverNode, ['--version'])).stdout.trim();
  const distribution = (await run(DISTRIBUTION_BIN, ['--version']).catch(() => ({ stdout: '?' }))).stdout.trim();
  return {
    date: new Date().toISOString(),
    // Not availableParallelism(): the benchmark has pinned itself to one CPU by now.
    nproc: cpus().length,
    cpuModel: field('model name'),
    cpuMHz: field('cpu MHz'),
    cpuFlags: interesting.join(' ') || 'none of sha_ni avx2 avx512f aes',
    memory: `${(memKb / 1024 / 1024).toFixed(1)} GiB`,
    kernel: release(),
    disk: describeDisk(storageParent),
    benchNode: process.version,
    serverNode: serverNodeVersion,
    distribution: distribution.replace(/^.*?github\.com\//, ''),
    regcache: cli ? `${cli} (given with --regcache-cli)` : await describeRegcache(),
  };
}

async function describeRegcache(): Promise<string> {
  const git = (args: string[]) => run('git', ['-C', REPO_ROOT, ...args]).then((r) => r.stdout.trim(), () => '?');
  const head = await git(['rev-parse', '--short', 'HEAD']);
  const dirty = (await git(['status', '--porcelain', '--', 'src', 'dist'])) ? ', src/ or dist/ modified' : '';
  return `dist/cli.js built ${statSync(REGCACHE_CLI).mtime.toISOString()}, checkout ${head}${dirty}`;
}

/** The filesystem holding `dir`: device, type, size, and whether the block device rotates. */
function describeDisk(dir: string): string {
  let best: { mount: string; dev: string; type: string; opts: string } | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    // id parent major:minor root mount opts [optional...] - type source superopts
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const mount = left.split(' ')[4]!;
    const [type, dev] = right.split(' ');
    const inside = dir === mount || dir.startsWith(mount.endsWith('/') ? mount : `${mount}/`);
    if (inside && (!best || mount.length > best.mount.length)) best = { mount, dev: dev!, type: type!, opts: left.split(' ')[5]! };
  }
  if (!best) return '?';
  const fs = statfsSync(dir);
  const size = `${((fs.blocks * fs.bsize) / 1e9).toFixed(0)} GB`;
  const block = basename(best.dev);
  const rotational = readSys(`/sys/block/${block}/queue/rotational`);
  const virt = block.startsWith('vd') ? 'virtio block device, ' : '';
  // ext4 shows its journal thread here; "<none>" means a journal-less filesystem (cheap fsync).
  const journalTask = best.type === 'ext4' ? readSys(`/sys/fs/ext4/${block}/journal_task`) : undefined;
  const journal = journalTask === undefined ? '' : journalTask === '<none>' ? ' without journal' : ' with journal';
  return `${best.dev} (${virt}queue/rotational=${rotational ?? '?'}) ${best.type}${journal} ${size}, mounted at ${best.mount} (${best.opts})`;
}

function readSys(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}
