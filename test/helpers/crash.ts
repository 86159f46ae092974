// What the crash, durability, ENOSPC and limits tests share: a seeded PRNG (the seed printed,
// REGCACHE_SEED replays it), regcache's CLI as a child process that can be SIGKILLed and restarted
// on the same storage (optionally under a wrapper such as strace), the server's memory and file
// descriptors read from /proc, and a check of every on-disk invariant of a storage root:
// blobs hash to their names, records parse, tags lead to complete manifests, links to blobs,
// upload sessions are whole, tmp/ is empty.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, open, readFile, readdir, stat, statfs } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ChildHandle, run, startProcess, stopPid, waitFor } from './proc.js';
import { SERVER_NODE_FLAGS } from '../../src/server/node-flags.js';

/** The built CLI (REGCACHE_TEST_CLI points the tests at another build, e.g. an older one to compare). */
export const CLI = process.env.REGCACHE_TEST_CLI ?? fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** True under `npm run test:long`. */
export const LONG = !!process.env.REGCACHE_LONG && process.env.REGCACHE_LONG !== '0';

// ---- seeded randomness ----

/** The run's seed: REGCACHE_SEED when set (a replay), else random. Printed by the caller. */
export function seedFromEnv(): number {
  const env = process.env.REGCACHE_SEED;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isSafeInteger(n)) throw new Error(`REGCACHE_SEED must be an integer, got ${env}`);
    return n >>> 0;
  }
  return randomBytes(4).readUInt32LE();
}

/** A small deterministic PRNG (mulberry32) with the helpers the tests need. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }

  /** `n` pseudo-random bytes (the content of a test blob; fast enough for megabytes). */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) out.writeUInt32LE((this.next() * 4294967296) >>> 0, i);
    for (; i < n; i++) out[i] = (this.next() * 256) & 0xff;
    return out;
  }

  /** A fresh seed for a sub-generator. */
  fork(): Rng {
    return new Rng((this.next() * 4294967296) >>> 0);
  }
}

/** `sha256:<hex>` of `data`. */
export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

// ---- the server as a child process ----

/** Environment of a server under test: no developer credentials, no docker config. */
export function serverEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: '/nonexistent/regcache-test-docker-config', ...extra };
  delete env.REGCACHE_UPSTREAM_AUTH;
  return env;
}

/** A running `regcache serve`. */
export interface ServeHandle {
  /** pid of the node process (not of a wrapper). */
  pid: number;
  registry: string;
  cache: string;
  storage: string;
  /** The spawned process (the wrapper, when there is one). */
  child: ChildHandle;
}

/** Options of {@link startServe}. */
export interface ServeOptions {
  storage: string;
  /** Directory for the ready file and the log. */
  dir: string;
  /** `--upstream` values. */
  upstreams?: string[];
  /** More `serve` flags. */
  args?: string[];
  /** A command the server runs under (e.g. `strace -f -o FILE`); the CLI follows it. */
  wrapper?: string[];
  env?: NodeJS.ProcessEnv;
  /** Default: error (ENOSPC and kills make noise the tests expect). */
  logLevel?: string;
}

let serial = 0;

/**
 * Starts `node <server flags> dist/cli.js serve` on 127.0.0.1:0 (both ports), as the Action, `npm
 * start` and the image start it (so the process started is the server, on every Node), and waits
 * for its ready file.
 */
export async function startServe(o: ServeOptions): Promise<ServeHandle> {
  const n = ++serial;
  const readyFile = join(o.dir, `ready-${process.pid}-${n}.json`);
  const args = [
    ...SERVER_NODE_FLAGS,
    CLI,
    'serve',
    '--registry-addr',
    '127.0.0.1:0',
    '--cache-addr',
    '127.0.0.1:0',
    '--storage',
    o.storage,
    '--ready-file',
    readyFile,
    '--log-level',
    o.logLevel ?? 'error',
    ...(o.upstreams ?? ['docker.io=http://127.0.0.1:9']).flatMap((u) => ['--upstream', u]),
    ...(o.args ?? []),
  ];
  const argv = [...(o.wrapper ?? []), process.execPath, ...args];
  const child = await startProcess(argv[0]!, argv.slice(1), { name: 'regcache', logFile: join(o.dir, 'server.log'), env: serverEnv(o.env) });
  const ready = await waitFor(async () => {
    if (!existsSync(readyFile)) return undefined;
    return JSON.parse(await readFile(readyFile, 'utf8')) as { registry: string; cache: string; pid: number };
  }, { what: `ready file of server #${n}`, process: child, timeoutMs: 30_000, intervalMs: 10 });
  return { pid: ready.pid, registry: ready.registry, cache: ready.cache, storage: o.storage, child };
}

/** SIGKILLs the server and waits until it is reaped (so that its lock reads as dead). */
export async function kill9(s: ServeHandle): Promise<void> {
  try {
    process.kill(s.pid, 'SIGKILL');
  } catch {
    // gone already
  }
  await s.child.exited;
}

/** SIGTERM (drain), SIGKILL after timeoutMs; waits for the process (and its wrapper) to end. */
export async function stopServe(s: ServeHandle, timeoutMs = 15_000): Promise<void> {
  await stopPid(s.pid, timeoutMs);
  const wait = new AbortController();
  await Promise.race([s.child.exited, sleep(timeoutMs, undefined, { signal: wait.signal }).catch(() => {})]);
  wait.abort();
  await s.child.stop(5_000);
}

// ---- /proc ----

/** Memory (bytes) and open descriptors of a live process. */
export interface ProcUsage {
  rss: number;
  /** Peak RSS since the process started (VmHWM). */
  hwm: number;
  fds: number;
  /** Soft limit on open files. */
  fdLimit: number;
}

/** Reads /proc/<pid>/status, fd and limits. */
export function procUsage(pid: number): ProcUsage {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  const fdLimit = Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1] ?? NaN);
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), fds: readdirSync(`/proc/${pid}/fd`).length, fdLimit };
}

/** MiB, one decimal, for messages. */
export function mib(n: number): string {
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

// ---- storage invariants ----

/** One upload session found on disk. */
export interface DiskUpload {
  id: string;
  repository: string | undefined;
  /** Bytes in its data file (undefined: no data file). */
  size: number | undefined;
}

/** What {@link checkStorage} found. */
export interface StorageReport {
  /** Blob files (digest → size). */
  blobs: Map<string, number>;
  /** Blob files hashed in this check (the others were verified before and are unchanged). */
  hashed: number;
  tags: number;
  revisions: number;
  links: number;
  tmpEntries: string[];
  uploads: DiskUpload[];
  /** Every broken invariant, one line each; empty when all hold. */
  problems: string[];
}

/** Remembers which blob files were verified (by size, mtime, inode) so later checks hash only new ones. */
export type VerifiedCache = Map<string, string>;

/** Where the blob `alg:hex` lives under a storage root. */
export function blobPath(root: string, digest: string): string {
  const [alg, hex] = digest.split(':') as [string, string];
  return join(root, 'blobs', alg, hex.slice(0, 2), hex);
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

async function parseJson(path: string, problems: string[], root: string): Promise<unknown> {
  const text = await readFile(path, 'utf8');
  try {
    return JSON.parse(text);
  } catch {
    problems.push(`${relative(root, path)}: not whole JSON (${JSON.stringify(text.slice(0, 80))})`);
    return undefined;
  }
}

/** Repository directories (those holding `_`-records) under a tree, as names relative to it. */
async function repositoriesUnder(tree: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await listDir(join(tree, rel));
    if (rel && entries.some((e) => e.startsWith('_'))) out.push(rel);
    for (const e of entries) if (!e.startsWith('_')) await walk(rel ? `${rel}/${e}` : e);
  };
  await walk('');
  return out;
}

interface ManifestDoc {
  config?: { digest: string };
  layers?: Array<{ digest: string; urls?: string[] }>;
  manifests?: Array<{ digest: string }>;
}

/**
 * Checks every invariant a crash must not break, on the storage root `root` (the server may be
 * running, but idle):
 * - every file under blobs/ hashes to its name;
 * - every record (tag, manifest revision, layer link) is whole; a link names its own digest and
 *   its blob exists;
 * - every tag points at a revision of its repository whose manifest blob exists and parses, and
 *   in pushed repositories (`repositories/`) every blob and child manifest it references exists
 *   and is linked (cached repositories may hold a manifest before its layers);
 * - tmp/ holds nothing when `expectEmptyTmp`;
 * - upload sessions are listed with their size for the caller to probe (and flagged when they
 *   miss their record or data, which the startup scan removes).
 */
export async function checkStorage(root: string, verified: VerifiedCache, opts: { expectEmptyTmp?: boolean } = {}): Promise<StorageReport> {
  const problems: string[] = [];
  const blobs = new Map<string, number>();
  let hashed = 0;
  const blobsDir = join(root, 'blobs');
  for (const alg of await listDir(blobsDir)) {
    for (const prefix of await listDir(join(blobsDir, alg))) {
      for (const hex of await listDir(join(blobsDir, alg, prefix))) {
        const path = join(blobsDir, alg, prefix, hex);
        const s = await stat(path);
        blobs.set(`${alg}:${hex}`, s.size);
        if (!hex.startsWith(prefix)) problems.push(`blob ${alg}/${prefix}/${hex} is under the wrong prefix`);
        const key = `${s.size}:${s.mtimeMs}:${s.ino}`;
        if (verified.get(path) === key) continue;
        if (alg !== 'sha256') continue;
        hashed++;
        const got = await hashFile(path);
        if (got !== hex) problems.push(`blob sha256:${hex} (${s.size} bytes) hashes to sha256:${got}`);
        else verified.set(path, key);
      }
    }
  }

  let tags = 0;
  let revisions = 0;
  let links = 0;
  for (const tree of ['repositories', 'cache']) {
    const treeDir = join(root, tree);
    for (const name of await repositoriesUnder(treeDir)) {
      const repo = join(treeDir, name);
      const linked = new Set<string>();
      for (const alg of await listDir(join(repo, '_layers'))) {
        for (const hex of await listDir(join(repo, '_layers', alg))) {
          links++;
          const d = `${alg}:${hex}`;
          linked.add(d);
          const text = await readFile(join(repo, '_layers', alg, hex), 'utf8');
          if (text !== d) problems.push(`${tree}/${name}: layer link ${d} holds ${JSON.stringify(text.slice(0, 80))}`);
          if (!blobs.has(d)) problems.push(`${tree}/${name}: layer link ${d} without its blob`);
        }
      }
      const revs = new Set<string>();
      for (const alg of await listDir(join(repo, '_manifests'))) {
        for (const hex of await listDir(join(repo, '_manifests', alg))) {
          revisions++;
          revs.add(`${alg}:${hex}`);
          const rec = (await parseJson(join(repo, '_manifests', alg, hex), problems, root)) as { size?: number } | undefined;
          if (rec && blobs.has(`${alg}:${hex}`) && rec.size !== blobs.get(`${alg}:${hex}`)) {
            problems.push(`${tree}/${name}: revision ${alg}:${hex} records size ${rec.size}, blob has ${blobs.get(`${alg}:${hex}`)}`);
          }
        }
      }
      for (const tag of await listDir(join(repo, '_tags'))) {
        tags++;
        const rec = (await parseJson(join(repo, '_tags', tag), problems, root)) as { digest?: string } | undefined;
        const d = rec?.digest;
        if (!rec) continue;
        if (typeof d !== 'string') {
          problems.push(`${tree}/${name}:${tag}: tag record without a digest`);
          continue;
        }
        if (!revs.has(d)) problems.push(`${tree}/${name}:${tag} -> ${d}: no manifest revision`);
        if (!blobs.has(d)) {
          problems.push(`${tree}/${name}:${tag} -> ${d}: manifest blob missing`);
          continue;
        }
        let doc: ManifestDoc;
        try {
          doc = JSON.parse(await readFile(blobPath(root, d), 'utf8')) as ManifestDoc;
        } catch {
          problems.push(`${tree}/${name}:${tag} -> ${d}: manifest blob does not parse`);
          continue;
        }
        if (tree !== 'repositories') continue;
        const refs = [...(doc.config ? [doc.config] : []), ...(doc.layers ?? []).filter((l) => !l.urls?.length)].map((b) => b.digest);
        for (const r of refs) {
          if (!blobs.has(r)) problems.push(`${tree}/${name}:${tag} -> ${d}: references blob ${r}, which is missing`);
          else if (!linked.has(r)) problems.push(`${tree}/${name}:${tag} -> ${d}: references blob ${r}, not linked into the repository`);
        }
        for (const c of doc.manifests ?? []) if (!revs.has(c.digest)) problems.push(`${tree}/${name}:${tag} -> ${d}: child manifest ${c.digest} unknown`);
      }
    }
  }

  const tmpEntries = await listDir(join(root, 'tmp'));
  if (opts.expectEmptyTmp && tmpEntries.length > 0) problems.push(`tmp/ not empty after the startup scan: ${tmpEntries.join(', ')}`);

  const uploads: DiskUpload[] = [];
  for (const id of await listDir(join(root, 'uploads'))) {
    const dir = join(root, 'uploads', id);
    const rec = await readFile(join(dir, 'session.json'), 'utf8').then((t) => JSON.parse(t) as { repository?: string }, () => undefined);
    const size = await stat(join(dir, 'data')).then((s) => s.size, () => undefined);
    uploads.push({ id, repository: rec?.repository, size });
    if (!rec || size === undefined) problems.push(`uploads/${id}: ${!rec ? 'no session record' : 'no data file'} after the startup scan`);
  }
  return { blobs, hashed, tags, revisions, links, tmpEntries, uploads, problems };
}

// ---- kill points ----

/**
 * Kills a server once, at the first trigger that fires: a timer, or a byte count the test reports
 * as its clients send or receive. Records where it fired (for the message of a failure).
 */
export class KillSwitch {
  /** Where the kill happened, once it has. */
  where: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly pid: number) {}

  get fired(): boolean {
    return this.where !== undefined;
  }

  /** SIGKILLs the server now (once). */
  fire(where: string): void {
    if (this.where !== undefined) return;
    this.where = where;
    if (this.timer) clearTimeout(this.timer);
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }

  /** Fires after `ms`. */
  after(ms: number, where: string): void {
    this.timer = setTimeout(() => this.fire(where), ms);
  }

  /** Stops the timer (the kill did not happen through it). */
  disarm(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}

/**
 * A request body that reports how much of it was handed to the socket: `onProgress(sent)` runs
 * before each slice (with the bytes sent before it) and once at the end, so a test can SIGKILL the
 * server when a given byte of a given request is on its way.
 */
export async function* slicedBody(data: Buffer, onProgress: (sent: number) => void, slice = 16 * 1024): AsyncGenerator<Buffer> {
  for (let off = 0; off < data.length; off += slice) {
    onProgress(off);
    yield data.subarray(off, Math.min(off + slice, data.length));
  }
  onProgress(data.length);
}

// ---- a small file system ----

/** Mounts a tmpfs of `sizeMiB` at `dir` (created if needed); needs root. tempDir's cleanup unmounts it. */
export async function mountTmpfs(dir: string, sizeMiB: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0755`, 'tmpfs', dir]);
}

/** Bytes an unprivileged writer may still write on the file system of `path`. */
export async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

/** Writes `path` until the file system is full (ENOSPC); returns the bytes it holds. */
export async function fillUp(path: string): Promise<number> {
  const fh = await open(path, 'w');
  let written = 0;
  try {
    for (const size of [1024 * 1024, 4096, 1]) {
      const buf = Buffer.alloc(size, 0x5a);
      for (;;) {
        try {
          const { bytesWritten } = await fh.write(buf, 0, size, written);
          written += bytesWritten;
          if (bytesWritten < size) break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    await fh.close();
  }
  return written;
}
