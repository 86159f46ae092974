// The client side of the benchmark: one undici keep-alive pool per server, and workloads
// that drive any registry the same way over the OCI distribution API: push images as docker
// does (HEAD blob, POST upload, PATCH with the streamed body, PUT ?digest=; or, as containerd
// does, POST then PUT ?digest= with the streamed body) and then PUT the manifest; pull blobs
// verifying each one's sha256; hammer manifest GET/HEAD by tag; pull many large blobs at
// once while sampling the server's resident memory. Every request's status is checked; a
// workload that meets an unexpected answer throws rather than reporting a number.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { readMemory, resetPeakRss } from './servers.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const MANIFEST_ACCEPT = [
  OCI_MANIFEST,
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');
/** Size of the pieces a streamed request body is written in. */
const BODY_CHUNK = 1024 * 1024;

/** Bytes and their digest. */
export interface BlobData {
  digest: string;
  data: Buffer;
}

/** An image held by the client: config, layers and the manifest that names them. */
export interface Image {
  repo: string;
  tag: string;
  config: BlobData;
  layers: BlobData[];
  manifest: Buffer;
  manifestDigest: string;
}

/** A blob to pull: where, which, and how big. */
export interface BlobRef {
  repo: string;
  digest: string;
  size: number;
}

/** How blobs are uploaded. */
export type PushFlow = 'docker' | 'containerd';

/** What a timed workload did, with the CPU use of client and server (1.0 = one core busy). */
export interface Measured {
  bytes: number;
  requests: number;
  seconds: number;
  clientCpu: number;
  /** CPU time of the server process (all its threads) per second of the workload. */
  serverCpu?: number;
  /**
   * CPU time the rest of the machine used per second of the workload (all CPUs not idle, minus
   * server and client; includes the kernel's interrupt work): a measure of interference.
   */
  otherCpu: number;
}

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function blob(data: Buffer): BlobData {
  return { digest: sha256(data), data };
}

/** An image of random layers of the given sizes (bytes), with its config and OCI manifest. */
export function makeImage(repo: string, tag: string, layerSizes: readonly number[]): Image {
  const layers = layerSizes.map((size) => blob(randomBytes(size)));
  const config = blob(Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    config: { Labels: { 'bench.nonce': randomBytes(8).toString('hex') } },
  })));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.data.byteLength },
    layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: l.digest, size: l.data.byteLength })),
  }));
  return { repo, tag, config, layers, manifest, manifestDigest: sha256(manifest) };
}

/** Makes `count` images of `layers` random layers of `layerSize` bytes each. */
export function makeImages(opts: { count: number; layers: number; layerSize: number; repo: (i: number) => string; tag: string }): Image[] {
  return Array.from({ length: opts.count }, (_, i) => makeImage(opts.repo(i), opts.tag, Array.from({ length: opts.layers }, () => opts.layerSize)));
}

/** Every layer of `images` as blobs to pull. */
export function layerRefs(images: Image[]): BlobRef[] {
  return images.flatMap((img) => img.layers.map((l) => ({ repo: img.repo, digest: l.digest, size: l.data.byteLength })));
}

/** Total bytes of the images' blobs and manifests. */
export function imageBytes(images: Image[]): number {
  return images.reduce((n, img) => n + img.config.data.byteLength + img.manifest.byteLength + img.layers.reduce((m, l) => m + l.data.byteLength, 0), 0);
}

/**
 * A keep-alive connection pool to one server. undici closes the connection after every HEAD
 * unless the request says `reset: false` (its guard against servers that send a body with
 * HEAD); docker's and containerd's Go clients keep it, so every HEAD here passes `reset: false`.
 */
export function openPool(url: string, connections: number): Pool {
  return new Pool(url, {
    connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
}

/** Times `fn`, with this process's CPU use and (given its PID) the server's over the same interval. */
export async function measure(fn: () => Promise<{ bytes: number; requests: number }>, serverPid?: number): Promise<Measured> {
  const server0 = serverPid === undefined ? undefined : cpuSeconds(serverPid);
  const idle0 = machineIdleSeconds();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const { bytes, requests } = await fn();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const client = (cpu.user + cpu.system) / 1e6;
  const server = server0 === undefined ? 0 : cpuSeconds(serverPid!) - server0;
  const busy = seconds * idle0.cpus - (machineIdleSeconds().idle - idle0.idle);
  const out: Measured = { bytes, requests, seconds, clientCpu: client / seconds, otherCpu: Math.max(0, busy - client - server) / seconds };
  if (server0 !== undefined) out.serverCpu = server / seconds;
  return out;
}

/**
 * CPU seconds a process has run so far, all its threads, from the scheduler's own clock
 * (/proc/<pid>/task/<tid>/schedstat). Not utime + stime of /proc/<pid>/stat: those are sampled
 * at the timer tick and, for a server that wakes in step with its client, were seen to read 2.5x
 * the truth.
 */
export function cpuSeconds(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ', 1)[0]);
    } catch {
      /* the thread ended meanwhile */
    }
  }
  return ns / 1e9;
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** Idle + iowait seconds of all CPUs since boot (/proc/stat; measured, not sampled, on NO_HZ kernels), and the CPU count. */
function machineIdleSeconds(): { idle: number; cpus: number } {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const fields = lines[0]!.trim().split(/\s+/).slice(1).map(Number);
  const cpus = lines.filter((l) => /^cpu\d+ /.test(l)).length;
  return { idle: (fields[3]! + fields[4]!) / CLK_TCK, cpus };
}

/** A counting semaphore. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** Sends a request and checks its status; on any other status throws with the body's text. */
async function call(pool: Pool, opts: Dispatcher.RequestOptions, expected: number): Promise<Dispatcher.ResponseData> {
  const res = await pool.request(opts);
  if (res.statusCode !== expected) {
    const text = await res.body.text().catch(() => '');
    throw new Error(`${opts.method} ${opts.path}: expected ${expected}, got ${res.statusCode} ${text.slice(0, 300)}`);
  }
  return res;
}

/** The path and query of a Location header (absolute or relative). */
function locationPath(res: Dispatcher.ResponseData, what: string): string {
  const loc = res.headers.location;
  if (typeof loc !== 'string') throw new Error(`${what}: no Location header`);
  const u = new URL(loc, 'http://placeholder');
  return `${u.pathname}${u.search}`;
}

function withDigest(path: string, digest: string): string {
  return `${path}${path.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
}

/** The bytes as a stream of 1 MiB pieces (no copies); undici sends it as it is read. */
function streamOf(data: Buffer): Readable {
  return Readable.from(
    (function* pieces() {
      for (let off = 0; off < data.byteLength; off += BODY_CHUNK) yield data.subarray(off, off + BODY_CHUNK);
    })(),
    { objectMode: false },
  );
}

/** Uploads one blob unless the repository has it; returns the requests made. */
export async function pushBlob(pool: Pool, repo: string, b: BlobData, flow: PushFlow): Promise<number> {
  const head = await pool.request({ method: 'HEAD', path: `/v2/${repo}/blobs/${b.digest}`, reset: false });
  await head.body.dump();
  if (head.statusCode === 200) return 1;
  if (head.statusCode !== 404) throw new Error(`HEAD blob ${b.digest}: ${head.statusCode}`);
  const post = await call(pool, { method: 'POST', path: `/v2/${repo}/blobs/uploads/`, headers: { 'content-length': '0' } }, 202);
  await post.body.dump();
  let path = locationPath(post, 'POST upload');
  if (flow === 'docker') {
    // docker's distribution client: the body in one PATCH of unknown length (chunked), then PUT.
    const patch = await call(pool, { method: 'PATCH', path, body: streamOf(b.data), headers: { 'content-type': 'application/octet-stream' } }, 202);
    await patch.body.dump();
    path = locationPath(patch, 'PATCH upload');
    const put = await call(pool, { method: 'PUT', path: withDigest(path, b.digest), headers: { 'content-length': '0' } }, 201);
    await put.body.dump();
    return 4;
  }
  const put = await call(pool, {
    method: 'PUT',
    path: withDigest(path, b.digest),
    body: streamOf(b.data),
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(b.data.byteLength) },
  }, 201);
  await put.body.dump();
  return 3;
}

/** PUTs an image's manifest by tag. */
export async function putManifest(pool: Pool, img: Image): Promise<void> {
  const res = await call(pool, {
    method: 'PUT',
    path: `/v2/${img.repo}/manifests/${img.tag}`,
    body: img.manifest,
    headers: { 'content-type': OCI_MANIFEST },
  }, 201);
  await res.body.dump();
}

/**
 * Pushes every image, at most `concurrency` requests' worth of blob uploads at a time across
 * all images (docker uploads an image's layers in parallel); each image's manifest follows
 * its blobs.
 */
export async function pushImages(pool: Pool, images: Image[], flow: PushFlow, concurrency: number): Promise<{ bytes: number; requests: number }> {
  const limiter = new Limiter(concurrency);
  let requests = 0;
  await Promise.all(images.map(async (img) => {
    await Promise.all([img.config, ...img.layers].map(async (b) => {
      const n = await limiter.run(() => pushBlob(pool, img.repo, b, flow));
      requests += n; // not `requests += await ...`: that would read `requests` before the await
    }));
    await limiter.run(() => putManifest(pool, img));
    requests++;
  }));
  return { bytes: imageBytes(images), requests };
}

/** GETs one blob and checks its size and sha256; returns its size. */
export async function pullBlob(pool: Pool, ref: BlobRef): Promise<number> {
  const res = await call(pool, { method: 'GET', path: `/v2/${ref.repo}/blobs/${ref.digest}` }, 200);
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of res.body) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).byteLength;
  }
  const got = `sha256:${hash.digest('hex')}`;
  if (got !== ref.digest || size !== ref.size) throw new Error(`GET ${ref.digest}: received ${size} bytes hashing to ${got}`);
  return size;
}

/** Pulls every blob `passes` times, `concurrency` at a time. */
export async function pullBlobs(pool: Pool, refs: BlobRef[], concurrency: number, passes = 1): Promise<{ bytes: number; requests: number }> {
  const queue = Array.from({ length: passes }, () => refs).flat();
  let next = 0;
  let bytes = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
    while (next < queue.length) {
      const n = await pullBlob(pool, queue[next++]!);
      bytes += n; // not `bytes += await ...`: that would read `bytes` before the await
    }
  }));
  return { bytes, requests: queue.length };
}

/** A manifest reference to request by tag, with the digest it must resolve to. */
export interface ManifestRef {
  repo: string;
  tag: string;
  digest: string;
  size: number;
}

/**
 * Sends manifest GET or HEAD requests by tag, `concurrency` at a time, for `durationMs`,
 * cycling through `refs`; checks status, Docker-Content-Digest and (GET) the body length.
 */
export async function manifestRequests(pool: Pool, refs: ManifestRef[], method: 'GET' | 'HEAD', concurrency: number, durationMs: number): Promise<{ bytes: number; requests: number }> {
  const deadline = performance.now() + durationMs;
  let requests = 0;
  let bytes = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < deadline) {
      const ref = refs[requests++ % refs.length]!;
      const res = await call(pool, { method, path: `/v2/${ref.repo}/manifests/${ref.tag}`, headers: { accept: MANIFEST_ACCEPT }, reset: false }, 200);
      const digest = res.headers['docker-content-digest'];
      if (method === 'GET') {
        const body = await res.body.bytes();
        bytes += body.byteLength;
        if (body.byteLength !== ref.size) throw new Error(`GET manifest ${ref.repo}:${ref.tag}: ${body.byteLength} bytes, expected ${ref.size}`);
      } else {
        await res.body.dump();
      }
      if (digest !== ref.digest) throw new Error(`${method} manifest ${ref.repo}:${ref.tag}: digest ${String(digest)}, expected ${ref.digest}`);
    }
  }));
  return { bytes, requests };
}

/** Memory of a server over a workload, in bytes. */
export interface MemoryProfile {
  /** RSS just before the workload. */
  before: number;
  /** Highest RSS seen by sampling during the workload. */
  sampledPeak: number;
  /** VmHWM after the workload (reset just before it when the kernel allows). */
  hwm: number;
  hwmReset: boolean;
  samples: number;
}

/** Runs `fn` while sampling the VmRSS of `pid` every `intervalMs`. */
export async function withMemorySampling<T>(pid: number, intervalMs: number, fn: () => Promise<T>): Promise<{ value: T; memory: MemoryProfile }> {
  const hwmReset = resetPeakRss(pid);
  const before = readMemory(pid).rss;
  let sampledPeak = before;
  let samples = 0;
  const timer = setInterval(() => {
    try {
      sampledPeak = Math.max(sampledPeak, readMemory(pid).rss);
      samples++;
    } catch {
      /* the process went away: the workload will fail on its own */
    }
  }, intervalMs);
  try {
    const value = await fn();
    sampledPeak = Math.max(sampledPeak, readMemory(pid).rss);
    return { value, memory: { before, sampledPeak, hwm: readMemory(pid).hwm, hwmReset, samples } };
  } finally {
    clearInterval(timer);
  }
}
