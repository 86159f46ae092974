// Load: 200 concurrent clients (each its own undici Agent, so its own connections) push and pull
// against regcache running as a child process, on loopback, for a bounded time: small blobs
// (monolithic), 1-8 MiB blobs (chunked PATCHes streamed as they are generated, or one PUT),
// image manifests over them, and pulls of blobs and manifests pushed by any client, from the
// registry port and through the cache port (whose upstream is the registry port itself).
// Every byte is verified: each pulled blob and manifest is hashed and compared with its digest
// (and a manifest with the digest its push returned). Zero errors are allowed, and the server's
// VmRSS, sampled every 100 ms from /proc/<pid>/status, stays under 250 MB (VmHWM is reported).
// 10 s in `npm test`, 60 s under REGCACHE_LONG=1 (REGCACHE_LOAD_SECONDS overrides); the seed
// (REGCACHE_SEED) decides each client's operations and every blob's bytes.
import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes, type Hash } from 'node:crypto';
import { test } from 'node:test';
import { Agent, type Dispatcher } from 'undici';
import { freePort, tempDir } from '../helpers/proc.js';
import { sampleMemory } from '../helpers/proc-memory.js';
import { MEMORY_PROBE, type ServerChild, startServerChild } from '../helpers/server-child.js';

const LONG = !!process.env.REGCACHE_LONG;
const SECONDS = Number(process.env.REGCACHE_LOAD_SECONDS ?? (LONG ? 60 : 10));
const CLIENTS = Number(process.env.REGCACHE_LOAD_CLIENTS ?? 200);
const SEED = process.env.REGCACHE_SEED !== undefined ? Number(process.env.REGCACHE_SEED) : randomBytes(4).readInt32LE();
const RSS_LIMIT = 250 * 1000 * 1000;
const MIB = 1024 * 1024;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const CHUNK = 256 * 1024;

/** A small, seeded PRNG (mulberry32): each client's choices. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The bytes of blob `key`: AES-CTR keystream, so any blob can be made again without storing it. */
function* blobBytes(key: string, size: number): Generator<Buffer> {
  const k = createHash('sha256').update(`${SEED}:${key}`).digest();
  const cipher = createCipheriv('aes-128-ctr', k.subarray(0, 16), k.subarray(16, 32));
  const zeros = Buffer.alloc(Math.min(CHUNK, size));
  for (let off = 0; off < size; off += CHUNK) yield cipher.update(zeros.subarray(0, Math.min(CHUNK, size - off)));
}

function digestOf(key: string, size: number): string {
  const h = createHash('sha256');
  for (const c of blobBytes(key, size)) h.update(c);
  return `sha256:${h.digest('hex')}`;
}

interface Pushed {
  name: string;
  digest: string;
  size: number;
}

interface PushedManifest extends Pushed {
  tag: string;
}

interface Totals {
  requests: number;
  pushedBytes: number;
  pulledBytes: number;
  verified: number;
  ops: Record<string, number>;
  errors: string[];
  latencies: number[];
}

class LoadClient {
  // One request at a time per client, so one connection per port, as a simple client has.
  readonly agent = new Agent({ connections: 1, headersTimeout: 60_000, bodyTimeout: 60_000 });
  private readonly rand: () => number;
  private readonly mine: Pushed[] = [];
  private n = 0;

  constructor(
    readonly id: number,
    private readonly server: ServerChild,
    private readonly shared: { blobs: Pushed[]; manifests: PushedManifest[] },
    private readonly totals: Totals,
  ) {
    this.rand = prng(SEED ^ (id * 0x9e3779b1));
  }

  private get name(): string {
    return this.id % 10 === 0 ? 'load/shared' : `load/client-${this.id}`;
  }

  private async call(origin: string, method: string, path: string, body?: Buffer | Iterable<Buffer> | AsyncIterable<Buffer>, headers: Record<string, string> = {}, sink?: Hash): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; bytes: number; text: string }> {
    const started = performance.now();
    this.totals.requests++;
    const res = await this.agent.request({ origin, path, method: method as Dispatcher.HttpMethod, headers, body: (body ?? null) as Dispatcher.DispatchOptions['body'] });
    let bytes = 0;
    const keep: Buffer[] = [];
    for await (const c of res.body) {
      bytes += (c as Buffer).length;
      if (sink) sink.update(c as Buffer);
      else if (bytes <= 64 * 1024) keep.push(c as Buffer);
    }
    this.totals.latencies.push(performance.now() - started);
    return { status: res.statusCode, headers: res.headers, bytes, text: sink ? '' : Buffer.concat(keep).toString() };
  }

  private expect(what: string, got: number, want: number, text: string): void {
    if (got !== want) throw new Error(`${what}: ${got} (wanted ${want}) ${text.slice(0, 200)}`);
  }

  async run(deadline: number): Promise<void> {
    while (Date.now() < deadline) {
      const r = this.rand();
      const op = this.mine.length < 2 || r < 0.3 ? 'push-small' : r < 0.4 ? 'push-large' : r < 0.5 ? 'push-manifest' : r < 0.75 ? 'pull-blob' : r < 0.9 ? 'pull-manifest' : 'pull-cache';
      this.totals.ops[op] = (this.totals.ops[op] ?? 0) + 1;
      try {
        if (op === 'push-small') await this.pushSmall();
        else if (op === 'push-large') await this.pushLarge();
        else if (op === 'push-manifest') await this.pushManifest();
        else if (op === 'pull-blob') await this.pullBlob(this.server.registryUrl);
        else if (op === 'pull-manifest') await this.pullManifest(this.server.registryUrl);
        else await (this.rand() < 0.5 ? this.pullManifest(this.server.cacheUrl) : this.pullBlob(this.server.cacheUrl));
      } catch (err) {
        this.totals.errors.push(`client ${this.id} ${op}: ${(err as Error).message}`);
      }
    }
  }

  private newKey(): string {
    // Now and then a blob another client pushes too (same key): concurrent writers of one digest.
    return this.rand() < 0.05 ? `common-${Math.floor(this.rand() * 8)}` : `c${this.id}-${this.n++}`;
  }

  private record(p: Pushed): void {
    this.mine.push(p);
    this.shared.blobs.push(p);
  }

  private async pushSmall(): Promise<void> {
    const key = this.newKey();
    const size = 1 + Math.floor(this.rand() * 64 * 1024);
    const data = Buffer.concat([...blobBytes(key, size)]);
    const digest = digestOf(key, size);
    const r = await this.call(this.server.registryUrl, 'POST', `/v2/${this.name}/blobs/uploads/?digest=${digest}`, data, { 'content-type': 'application/octet-stream' });
    this.expect('monolithic push', r.status, 201, r.text);
    this.totals.pushedBytes += size;
    this.record({ name: this.name, digest, size });
  }

  private async pushLarge(): Promise<void> {
    const key = this.newKey();
    const size = MIB + Math.floor(this.rand() * 7 * MIB);
    const reg = this.server.registryUrl;
    const post = await this.call(reg, 'POST', `/v2/${this.name}/blobs/uploads/`);
    this.expect('upload start', post.status, 202, post.text);
    let location = post.headers.location as string;
    let digest: string;
    if (this.rand() < 0.6) {
      // Chunked: PATCHes of 1-4 MiB streamed as generated, the digest computed on the way.
      const hash = createHash('sha256');
      const gen = blobBytes(key, size);
      let offset = 0;
      while (offset < size) {
        const len = Math.min(size - offset, MIB * (1 + Math.floor(this.rand() * 4)));
        const chunk = function* () {
          let left = len;
          while (left > 0) {
            const c = gen.next().value as Buffer;
            hash.update(c);
            left -= c.length;
            yield c;
          }
        };
        const patch = await this.call(reg, 'PATCH', location, chunk(), { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + len - 1}`, 'content-length': String(len) });
        this.expect('PATCH', patch.status, 202, patch.text);
        if (patch.headers.range !== `0-${offset + len - 1}`) throw new Error(`PATCH: Range ${String(patch.headers.range)} after ${offset + len} bytes`);
        offset += len;
        location = patch.headers.location as string;
        this.totals.pushedBytes += len;
      }
      digest = `sha256:${hash.digest('hex')}`;
      const put = await this.call(reg, 'PUT', `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`);
      this.expect('PUT', put.status, 201, put.text);
    } else {
      // The whole blob with the completing PUT.
      digest = digestOf(key, size);
      const put = await this.call(reg, 'PUT', `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`, blobBytes(key, size), { 'content-type': 'application/octet-stream', 'content-length': String(size) });
      this.expect('PUT with body', put.status, 201, put.text);
      this.totals.pushedBytes += size;
    }
    this.record({ name: this.name, digest, size });
  }

  private async pushManifest(): Promise<void> {
    const pick = () => this.mine[Math.floor(this.rand() * this.mine.length)]!;
    const config = pick();
    const layers = Array.from({ length: 1 + Math.floor(this.rand() * 3) }, pick);
    // Every blob of mine is in my repository, or in load/shared for every tenth client.
    const body = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l.digest, size: l.size })),
      annotations: { client: String(this.id), n: String(this.n++) },
    }));
    const tag = `c${this.id}-${this.n++}`;
    const r = await this.call(this.server.registryUrl, 'PUT', `/v2/${this.name}/manifests/${tag}`, body, { 'content-type': OCI_MANIFEST });
    this.expect('manifest push', r.status, 201, r.text);
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (r.headers['docker-content-digest'] !== digest) throw new Error(`manifest push: digest ${String(r.headers['docker-content-digest'])}, bytes hash to ${digest}`);
    this.totals.pushedBytes += body.length;
    this.shared.manifests.push({ name: this.name, digest, size: body.length, tag });
  }

  private async pullBlob(origin: string): Promise<void> {
    const all = this.shared.blobs;
    const b = all[Math.floor(this.rand() * all.length)]!;
    const hash = createHash('sha256');
    const r = await this.call(origin, 'GET', `/v2/${b.name}/blobs/${b.digest}`, undefined, {}, hash);
    this.expect(`blob pull ${b.digest}`, r.status, 200, r.text);
    const got = `sha256:${hash.digest('hex')}`;
    if (got !== b.digest || r.bytes !== b.size) throw new Error(`blob pull ${b.name}@${b.digest}: ${r.bytes} bytes hashing to ${got}`);
    this.totals.pulledBytes += r.bytes;
    this.totals.verified++;
  }

  private async pullManifest(origin: string): Promise<void> {
    const all = this.shared.manifests;
    if (all.length === 0) return this.pullBlob(origin);
    const m = all[Math.floor(this.rand() * all.length)]!;
    const ref = this.rand() < 0.5 ? m.tag : m.digest;
    const hash = createHash('sha256');
    const r = await this.call(origin, 'GET', `/v2/${m.name}/manifests/${ref}`, undefined, { accept: OCI_MANIFEST }, hash);
    this.expect(`manifest pull ${m.name}:${ref}`, r.status, 200, r.text);
    const got = `sha256:${hash.digest('hex')}`;
    if (got !== m.digest || r.headers['docker-content-digest'] !== m.digest) throw new Error(`manifest pull ${m.name}:${ref}: bytes hash to ${got}, header ${String(r.headers['docker-content-digest'])}, pushed ${m.digest}`);
    this.totals.pulledBytes += r.bytes;
    this.totals.verified++;
  }
}

/** The largest value of each 10 s window of a series sampled every `intervalMs`. */
function windows(series: number[], intervalMs: number): number[] {
  const per = Math.round(10_000 / intervalMs);
  const out: number[] = [];
  for (let i = 0; i < series.length; i += per) out.push(Math.max(...series.slice(i, i + per)));
  return out;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

test(`load: ${CLIENTS} concurrent clients push and pull for ${SECONDS} s; no error, every byte verified, RSS under 250 MB`, { timeout: (SECONDS + 180) * 1000 }, async (t) => {
  const dir = await tempDir('rc-load-', t);
  const registryPort = await freePort();
  const server = await startServerChild(dir.path, {
    registryPort,
    args: ['--upstream', `docker.io=http://127.0.0.1:${registryPort}`],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir.path },
    preload: [MEMORY_PROBE],
  });
  t.after(() => server.stop());
  console.log(`load seed ${SEED}: ${CLIENTS} clients for ${SECONDS} s (replay: REGCACHE_SEED=${SEED})`);
  t.diagnostic(`seed ${SEED} (replay with REGCACHE_SEED=${SEED})`);

  const totals: Totals = { requests: 0, pushedBytes: 0, pulledBytes: 0, verified: 0, ops: {}, errors: [], latencies: [] };
  const shared = { blobs: [] as Pushed[], manifests: [] as PushedManifest[] };
  const clients = Array.from({ length: CLIENTS }, (_, i) => new LoadClient(i, server, shared, totals));
  const closeAll = () => Promise.all(clients.map((c) => (c.agent.closed || c.agent.destroyed ? undefined : c.agent.close())));
  t.after(closeAll);

  const memory = sampleMemory(server.pid, 100);
  const started = Date.now();
  await Promise.all(clients.map((c) => c.run(started + SECONDS * 1000)));
  const elapsed = (Date.now() - started) / 1000;
  const mem = memory.stop();
  await closeAll();

  assert.ok(server.alive(), `the server died\n${server.log().slice(-4000)}`);
  const exit = await server.stop();
  assert.equal(exit.code, 0, `the server did not drain and exit cleanly: ${JSON.stringify(exit)}`);

  const MB = (n: number) => (n / 1e6).toFixed(1);
  // Node's own account at its largest RSS: V8 heap (live and not yet collected), external memory
  // (Buffers), and the rest (code, native allocations, fragmentation).
  const accounts = server.log().split('\n').filter((l) => l.startsWith('REGCACHE-MEMORY ')).map((l) => JSON.parse(l.slice(16)) as Record<string, number>);
  const top = accounts.reduce<Record<string, number> | undefined>((a, b) => (a && a.rss! >= b.rss! ? a : b), undefined);
  const breakdown = top ? `; at node's largest RSS (${MB(top.rss!)} MB): heap ${MB(top.heapTotal!)} MB (${MB(top.heapUsed!)} used), external ${MB(top.external!)} MB (${MB(top.arrayBuffers!)} in Buffers), other ${MB(top.rss! - top.heapTotal! - top.external!)} MB; young generation at most ${MB(Math.max(...accounts.map((a) => a.newSpace ?? 0)))} MB` : '';
  const ops = Object.entries(totals.ops).map(([k, v]) => `${k} ${v}`).join(', ');
  const summary = `load seed ${SEED}: ${CLIENTS} clients, ${elapsed.toFixed(1)} s: ${totals.requests} requests (${ops}); pushed ${MB(totals.pushedBytes)} MB, pulled ${MB(totals.pulledBytes)} MB, ${totals.verified} pulls verified by sha256; ${totals.errors.length} errors; latency p50 ${percentile(totals.latencies, 50).toFixed(0)} ms, p99 ${percentile(totals.latencies, 99).toFixed(0)} ms; server VmRSS peak ${MB(mem.peakRss)} MB over ${mem.samples} samples, VmHWM ${MB(mem.hwm)} MB (largest VmRSS per 10 s: ${windows(mem.series, 100).map(MB).join(', ')})${breakdown}`;
  console.log(summary);
  t.diagnostic(summary);
  assert.deepEqual(totals.errors.slice(0, 20), [], `${totals.errors.length} errors`);
  assert.ok(totals.verified > CLIENTS, `too few pulls verified (${totals.verified}): the run did not get going`);
  assert.ok(mem.samples >= SECONDS * 5, `too few memory samples (${mem.samples})`);
  assert.ok(mem.peakRss < RSS_LIMIT, `server VmRSS peaked at ${MB(mem.peakRss)} MB (limit 250 MB)`);
  assert.ok(mem.hwm < RSS_LIMIT, `server VmHWM ${MB(mem.hwm)} MB (limit 250 MB)`);
  assert.doesNotMatch(server.log(), /"level":(50|60)/, 'errors in the server log');
  // The server keeps V8's young generation small (src/server/run.ts); Node 24 would let it grow to 128 MB.
  const newSpace = Math.max(...accounts.map((a) => a.newSpace ?? 0));
  assert.ok(accounts.length > 0 && newSpace <= 16 * MIB, `V8's young generation grew to ${MB(newSpace)} MB`);
});
