// The `cache` section of `npm run bench` (issue 3): pulls through regcache's pull-through cache
// port vs Debian's distribution in proxy mode (`proxy: remoteurl:`), both in front of the same
// upstream, a plain distribution seeded with images. A pull is what docker does: GET the
// manifest by tag with docker's Accept header, then GET the config and every layer, 3 at a
// time (dockerd's max-concurrent-downloads), the client checking each blob's size and sha256.
//
// - loopback: the caches reach the upstream directly. Direct = the same pull from the upstream
//   itself; cold = the first pull through a cache with fresh storage; warm = the pulls after it
//   (WARM_PULLS of them per cache instance: they are short, so more samples for the median).
// - shaped: the upstream behind bench/shaper.ts (15 ms each way, i.e. 30 ms added round trip,
//   and 50 MB/s shared by all connections per direction), for direct, cold and warm alike.
// - concurrent: 16 independent clients (one undici Pool each) pull one image at once through a
//   fresh cache; a counting proxy in front of the upstream gives the bytes the cache fetched, as
//   a multiple of the image's size.
// Every cache instance is started for its repetition with empty storage and primed with a pull
// of a small other image (its upstream connections, auth ping, JIT), so "cold" means the content
// is not cached, not that the process just started. The upstream is not pinned (it stands for a
// remote machine); the caches run on the servers' CPU, the client and the proxy in this process.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Pool } from 'undici';
import type { BenchContext, Row, Section } from './run.js';
import { startDistribution, startRegcache, type ServerHandle } from './servers.js';
import { startShaper, type Shaper, type Shaping } from './shaper.js';
import { OCI_MANIFEST, cpuSeconds, imageBytes, makeImage, measure, openPool, pullBlobs, pushImages, sha256, type BlobRef, type Image, type Measured } from './workloads.js';

const MB = 1e6;
const MiB = 1024 * 1024;
/** Repetitions of every timed pull (servers alternating which goes first); medians are reported. */
const REPS = 3;
/** Warm pulls per cache instance, after its cold pull. */
const WARM_PULLS = 3;
/** Blobs fetched at a time by one client: dockerd's default max-concurrent-downloads. */
const PULL_CONCURRENCY = 3;
/** Layer sizes of an image in the shape of a real one: a few big layers, a tail of small ones. */
const LAYERS_MIB = [24, 16, 12, 6, 3, 2, 0.5, 0.03];
/** Loopback pulls take ~0.1 s at this size; the loopback image is this many times bigger. */
const LOOPBACK_SCALE = 4;
const SHAPING: Shaping = { oneWayDelayMs: 15, bytesPerSecond: 50 * MB };
/** Clients of the concurrent cold pull, each with its own connection pool. */
const CONCURRENT_CLIENTS = 16;
/** Upstream bytes may exceed the image's size by the HTTP headers, not by a blob. */
const MAX_UPSTREAM_RATIO = 1.01;

const MANIFEST_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  OCI_MANIFEST,
  'application/vnd.oci.image.index.v1+json',
].join(', ');

/** An image of random layers of the given sizes (MiB) with its config and OCI manifest. */
function makeImageMiB(repo: string, tag: string, layersMiB: number[]): Image {
  return makeImage(repo, tag, layersMiB.map((mib) => Math.round(mib * MiB)));
}


/**
 * One pull of `img` by tag from the registry behind `pool`: the manifest (its digest checked),
 * then the config and layers it names, `PULL_CONCURRENCY` at a time, each verified.
 */
async function pullImage(pool: Pool, img: Image): Promise<{ bytes: number; requests: number }> {
  const res = await pool.request({ method: 'GET', path: `/v2/${img.repo}/manifests/${img.tag}`, headers: { accept: MANIFEST_ACCEPT } });
  const body = Buffer.from(await res.body.arrayBuffer());
  if (res.statusCode !== 200) throw new Error(`GET manifest ${img.repo}:${img.tag}: ${res.statusCode} ${body.toString('utf8', 0, 300)}`);
  if (sha256(body) !== img.manifestDigest) throw new Error(`GET manifest ${img.repo}:${img.tag}: digest ${sha256(body)}, expected ${img.manifestDigest}`);
  const manifest = JSON.parse(body.toString('utf8')) as { config: { digest: string; size: number }; layers: { digest: string; size: number }[] };
  const refs: BlobRef[] = [manifest.config, ...manifest.layers].map((d) => ({ repo: img.repo, digest: d.digest, size: d.size }));
  const blobs = await pullBlobs(pool, refs, PULL_CONCURRENCY);
  return { bytes: blobs.bytes + body.byteLength, requests: blobs.requests + 1 };
}

/** A timed pull, with the upstream's CPU use apart from the rest of the machine's. */
interface Pull extends Measured {
  /** CPU time of the upstream registry per second of the pull. */
  upstreamCpu: number;
}

/**
 * A pull with a client of its own (a fresh pool: new connections, as a new `docker pull` job),
 * timed with the CPU use of the server it goes to (`serverPid`) and of the upstream.
 */
async function timedPull(url: string, img: Image, upstreamPid: number, serverPid?: number): Promise<Pull> {
  const pool = openPool(url, PULL_CONCURRENCY);
  try {
    const u0 = cpuSeconds(upstreamPid);
    const m = await measure(() => pullImage(pool, img), serverPid);
    const upstreamCpu = serverPid === upstreamPid ? 0 : (cpuSeconds(upstreamPid) - u0) / m.seconds;
    return { ...m, otherCpu: Math.max(0, m.otherCpu - upstreamCpu), upstreamCpu };
  } finally {
    await pool.close();
  }
}

/** Where the upstream is reached (directly, or through a proxy) and its process, for its CPU use. */
interface Upstream {
  url: string;
  pid: number;
}

/** A pull-through cache under test: regcache's cache port or distribution in proxy mode. */
interface Cache {
  server: ServerHandle;
  /** Where clients pull from. */
  url: string;
}

type Kind = 'regcache' | 'distribution';

/** Starts a cache of `kind` with empty storage in front of `upstream` and primes it with a pull of `primer`. */
async function startCache(ctx: BenchContext, kind: Kind, upstream: Upstream, primer: Image): Promise<Cache> {
  let cache: Cache;
  if (kind === 'regcache') {
    const server = await startRegcache({
      parentDir: ctx.tmp,
      cpu: ctx.serverCpu,
      node: ctx.node,
      ...ctx.regcacheOptions,
      serveArgs: ['--upstream', `docker.io=${upstream.url}`],
    });
    const ready = JSON.parse(await readFile(join(server.dir, 'ready.json'), 'utf8')) as { cache: string };
    cache = { server, url: ready.cache.replace(/\/$/, '') };
  } else {
    const server = await startDistribution({ parentDir: ctx.tmp, cpu: ctx.serverCpu, extraConfig: `proxy:\n  remoteurl: ${upstream.url}\n` });
    cache = { server, url: server.url };
  }
  try {
    await timedPull(cache.url, primer, upstream.pid);
  } catch (err) {
    await cache.server.stop();
    throw err;
  }
  return cache;
}

/** A cold pull of `img` through a fresh cache of `kind`, then WARM_PULLS warm ones (with the upstream bytes of each). */
async function coldAndWarm(ctx: BenchContext, kind: Kind, upstream: Upstream, primer: Image, img: Image, shaper?: Shaper): Promise<{ cold: Pull; warm: Pull[]; warmUpstreamBytes: number[] }> {
  const cache = await startCache(ctx, kind, upstream, primer);
  try {
    ctx.settle();
    const cold = await timedPull(cache.url, img, upstream.pid, cache.server.pid);
    const warm: Pull[] = [];
    const warmUpstreamBytes: number[] = [];
    for (let i = 0; i < WARM_PULLS; i++) {
      ctx.settle();
      shaper?.reset();
      warm.push(await timedPull(cache.url, img, upstream.pid, cache.server.pid));
      if (shaper) warmUpstreamBytes.push(shaper.bytesDown());
    }
    return { cold, warm, warmUpstreamBytes };
  } finally {
    await cache.server.stop();
  }
}

/** The measurements of one network setting. */
interface Series {
  /** Pulls from the upstream itself (their serverCpu is the upstream's). */
  direct: Pull[];
  cold: Record<Kind, Pull[]>;
  warm: Record<Kind, Pull[]>;
  warmUpstreamBytes: Record<Kind, number[]>;
}

/** REPS x (direct pull, then cold + warm through each cache, the caches alternating order). */
async function series(ctx: BenchContext, label: string, upstream: Upstream, primer: Image, img: Image, shaper?: Shaper): Promise<Series> {
  const out: Series = { direct: [], cold: { regcache: [], distribution: [] }, warm: { regcache: [], distribution: [] }, warmUpstreamBytes: { regcache: [], distribution: [] } };
  for (let rep = 0; rep < REPS; rep++) {
    ctx.settle();
    ctx.log(`cache ${label} (run ${rep + 1}): direct from the upstream`);
    out.direct.push(await timedPull(upstream.url, img, upstream.pid, upstream.pid));
    const order: Kind[] = rep % 2 === 0 ? ['regcache', 'distribution'] : ['distribution', 'regcache'];
    for (const kind of order) {
      ctx.log(`cache ${label} (run ${rep + 1}): cold and warm through ${kind}`);
      const r = await coldAndWarm(ctx, kind, upstream, primer, img, shaper);
      out.cold[kind].push(r.cold);
      out.warm[kind].push(...r.warm);
      out.warmUpstreamBytes[kind].push(...r.warmUpstreamBytes);
    }
  }
  return out;
}

/** 16 clients with a pool each pull `img` at once through a fresh cache; upstream bytes / image size. */
async function concurrentCold(ctx: BenchContext, kind: Kind, counter: Shaper, upstreamPid: number, primer: Image, img: Image): Promise<{ ratio: number; blobGets: number; seconds: number }> {
  const cache = await startCache(ctx, kind, { url: counter.url, pid: upstreamPid }, primer);
  try {
    ctx.settle();
    counter.reset();
    ctx.log(`cache concurrent: ${CONCURRENT_CLIENTS} clients pull one image through ${kind}`);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: CONCURRENT_CLIENTS }, () => timedPull(cache.url, img, upstreamPid)));
    const seconds = (performance.now() - t0) / 1000;
    const blobGets = counter.requests().filter((line) => /^GET \S+\/blobs\/sha256:/.test(line)).length;
    return { ratio: counter.bytesDown() / imageBytes([img]), blobGets, seconds };
  } finally {
    await cache.server.stop();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const rate = (ms: Pull[]) => median(ms.map((m) => m.bytes / MB / m.seconds));
/** MB pulled per CPU-second of the cache: the rate with a core to itself (the steadier number on a shared machine). */
const perCpu = (ms: Pull[]) => median(ms.map((m) => m.bytes / MB / m.seconds / (m.serverCpu ?? Number.NaN)));
const pct = (ms: Pull[], f: (m: Pull) => number | undefined) => `${(median(ms.map((m) => f(m) ?? Number.NaN)) * 100).toFixed(0)}%`;
/** Other processes using more than this (cores) during a run make its row suspect (as in run.ts). */
const NOISY_OTHER_CPU = 0.5;

/** CPU figures of a comparison, regcache / distribution, flagged like the other sections' notes. */
function cpu(rc: Pull[], dist: Pull[]): string {
  const both = (f: (m: Pull) => number | undefined) => `${pct(rc, f)} / ${pct(dist, f)}`;
  const all = [...rc, ...dist];
  const clientBound = all.some((m) => m.clientCpu > 0.9) ? '; client-bound (client CPU > 90%)' : '';
  const noisy = all.some((m) => m.otherCpu > NOISY_OTHER_CPU) ? `; NOISY (rest of machine > ${NOISY_OTHER_CPU * 100}% in some run)` : '';
  return `CPU server ${both((m) => m.serverCpu)}, upstream ${both((m) => m.upstreamCpu)}, client ${both((m) => m.clientCpu)}, rest of machine ${both((m) => m.otherCpu)}${clientBound}${noisy}`;
}

export const cacheSection: Section = {
  id: 'cache',
  async run(ctx) {
    ctx.log('cache: generating images, starting and seeding the upstream');
    const primer = makeImageMiB('bench/cache-primer', 'v1', [1, 0.01]);
    const small = makeImageMiB('bench/cache-image', 'v1', LAYERS_MIB);
    const big = makeImageMiB('bench/cache-image-big', 'v1', LAYERS_MIB.map((m) => m * LOOPBACK_SCALE));
    const upstream = await startDistribution({ parentDir: ctx.tmp });
    const shaped = await startShaper(upstream.url, SHAPING);
    const counter = await startShaper(upstream.url);
    try {
      const pool = openPool(upstream.url, 4);
      try {
        await pushImages(pool, [primer, small, big], 'containerd', 4);
      } finally {
        await pool.close();
      }
      const loop = await series(ctx, 'loopback', { url: upstream.url, pid: upstream.pid }, primer, big);
      const slow = await series(ctx, 'shaped', { url: shaped.url, pid: upstream.pid }, primer, small, shaped);
      const conc = {
        regcache: await concurrentCold(ctx, 'regcache', counter, upstream.pid, primer, small),
        distribution: await concurrentCold(ctx, 'distribution', counter, upstream.pid, primer, small),
      };

      const size = (img: Image) => `${(imageBytes([img]) / MB).toFixed(0)} MB`;
      const pullOf = (img: Image) => `manifest by tag + config + ${img.layers.length} layers, ${size(img)}, c=${PULL_CONCURRENCY}`;
      const link = `${SHAPING.oneWayDelayMs * 2} ms round trip, ${SHAPING.bytesPerSecond / MB} MB/s shared`;
      const vsDirect = (ms: Pull[], direct: Pull[]) => `${(rate(ms) / rate(direct)).toFixed(2)}x direct`;
      const warmBytes = (k: Kind) => `${median(slow.warmUpstreamBytes[k]).toFixed(0)} B (max ${Math.max(...slow.warmUpstreamBytes[k])})`;
      const rows: Row[] = [
        {
          section: 'cache',
          workload: `cold pull through the cache vs direct from the upstream, loopback (${pullOf(big)})`,
          unit: 'MB/s',
          regcache: rate(loop.cold.regcache),
          baseline: rate(loop.direct),
          baselineLabel: `direct ${rate(loop.direct).toFixed(0)}`,
          target: { kind: 'min-ratio', min: 0.9 },
          note: `median of ${REPS}, fresh storage each; distribution proxy: ${rate(loop.cold.distribution).toFixed(0)} MB/s, ${vsDirect(loop.cold.distribution, loop.direct)}; direct: CPU upstream ${pct(loop.direct, (m) => m.serverCpu)}, client ${pct(loop.direct, (m) => m.clientCpu)}, rest of machine ${pct(loop.direct, (m) => m.otherCpu)}`,
        },
        {
          section: 'cache',
          workload: '  same, regcache vs distribution proxy',
          unit: 'MB/s',
          regcache: rate(loop.cold.regcache),
          baseline: rate(loop.cold.distribution),
          note: cpu(loop.cold.regcache, loop.cold.distribution),
        },
        {
          section: 'cache',
          workload: '  same, per cache CPU-second',
          unit: 'MB/CPU-s',
          regcache: perCpu(loop.cold.regcache),
          baseline: perCpu(loop.cold.distribution),
          note: 'rate / the cache process\'s CPU use (the upstream\'s not included)',
        },
        {
          section: 'cache',
          workload: `warm pull (the same tag again), loopback`,
          unit: 'MB/s',
          regcache: rate(loop.warm.regcache),
          baseline: rate(loop.warm.distribution),
          target: { kind: 'min-ratio', min: 1.5 },
          note: `median of ${REPS * WARM_PULLS} (${WARM_PULLS} per instance); ${cpu(loop.warm.regcache, loop.warm.distribution)}`,
        },
        {
          section: 'cache',
          workload: '  same, per cache CPU-second',
          unit: 'MB/CPU-s',
          regcache: perCpu(loop.warm.regcache),
          baseline: perCpu(loop.warm.distribution),
          note: 'rate / the cache process\'s CPU use',
        },
        {
          section: 'cache',
          workload: `cold pull, shaped upstream (${link}; ${pullOf(small)}), vs direct from it`,
          unit: 'MB/s',
          regcache: rate(slow.cold.regcache),
          baseline: rate(slow.direct),
          baselineLabel: `direct ${rate(slow.direct).toFixed(1)}`,
          note: `distribution proxy: ${rate(slow.cold.distribution).toFixed(1)} MB/s, ${vsDirect(slow.cold.distribution, slow.direct)}`,
        },
        {
          section: 'cache',
          workload: '  warm pull, shaped, vs direct from the shaped upstream',
          unit: 'MB/s',
          regcache: rate(slow.warm.regcache),
          baseline: rate(slow.direct),
          baselineLabel: `direct ${rate(slow.direct).toFixed(1)}`,
          target: { kind: 'min-ratio', min: 5 },
          note: `median of ${REPS * WARM_PULLS}; distribution proxy: ${rate(slow.warm.distribution).toFixed(0)} MB/s, ${vsDirect(slow.warm.distribution, slow.direct)}; upstream bytes per warm pull: ${warmBytes('regcache')} / ${warmBytes('distribution')}`,
        },
        {
          section: 'cache',
          workload: '  warm pull, shaped, regcache vs distribution proxy',
          unit: 'MB/s',
          regcache: rate(slow.warm.regcache),
          baseline: rate(slow.warm.distribution),
          note: cpu(slow.warm.regcache, slow.warm.distribution),
        },
        {
          section: 'cache',
          workload: `${CONCURRENT_CLIENTS} concurrent cold pulls of one image (${size(small)}), one client each: upstream bytes / image size`,
          unit: 'x',
          regcache: conc.regcache.ratio,
          baseline: conc.distribution.ratio,
          target: { kind: 'max', max: MAX_UPSTREAM_RATIO },
          note: `${conc.regcache.ratio.toFixed(3)}x / ${conc.distribution.ratio.toFixed(2)}x, once, loopback through a counting proxy (headers included); upstream blob GETs ${conc.regcache.blobGets} / ${conc.distribution.blobGets} for ${small.layers.length + 1} blobs; all pulls done in ${conc.regcache.seconds.toFixed(1)} / ${conc.distribution.seconds.toFixed(1)} s`,
        },
      ];
      return rows;
    } finally {
      await Promise.allSettled([shaped.close(), counter.close()]);
      await upstream.stop();
    }
  },
};
