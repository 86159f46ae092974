// Section `s3` (issue 14): storage in a bucket of a real S3 service, a throwaway single-node Ceph
// RADOS Gateway (test/helpers/s3-ceph.ts: mon + one memstore OSD + radosgw on 127.0.0.1, Ceph 16).
//
// - push and pull: regcache (`--storage s3://<bucket>/regcache --s3-endpoint ... --s3-path-style`,
//   credentials from AWS_* variables, `--cache-dir` its local read-through disk cache when the
//   build has one) vs Debian's distribution 2.8 with its s3 driver on another bucket of the same
//   gateway, the push section's images and flows, the pull section's pulls; side by side,
//   alternating which goes first, ratios and per-server-CPU-second rows as everywhere.
//   distribution serves blobs itself (storage.redirect.disable: a client of a registry need not
//   reach its bucket; by default 2.8 answers GET blob with a 307 to a presigned gateway URL).
// - manifest GET by tag: what a tag read costs when the tags live in the bucket.
// - warm pulls with and without local copies: the same layers pulled (after one pass that fills
//   the copies) through the regcache above and through a second replica on the same bucket and
//   prefix started with `--cache-dir-size 0`, which reads every blob from the bucket.
//
// When `regcache serve --help` has no `--s3-endpoint`, the build has no S3 backend: the section
// runs distribution's half alone and every row says so. The gateway is not pinned (it stands for
// a remote service): its CPU use (all its daemons) is given apart in the notes, not in "rest of
// machine". Its memstore holds the data in RAM (GATEWAY_GB at most).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startCeph, type CephS3 } from '../test/helpers/s3-ceph.js';
import { PULL, PUSH, REPS, rateRows, withPool, type BenchContext, type Row, type Runs, type Section } from './run.js';
import { REGCACHE_CLI, startDistribution, startRegcache, type ServerHandle } from './servers.js';
import { cpuSeconds, layerRefs, makeImages, manifestRequests, measure, pullBlobs, pushImages, type Image, type Measured, type PushFlow } from './workloads.js';

const SECTION = 's3';
/** Capacity of the gateway's memstore, GB: every repetition's images on both servers, plus uploads not yet collected. */
const GATEWAY_GB = 12;
const MANIFESTS = { images: 8, concurrency: 32, durationMs: 5000, warmupMs: 500 };
const NO_S3 = 'regcache has no S3 backend in this build (`regcache serve --help` lacks --s3-endpoint): distribution only';

/** What the regcache build under test offers, from `regcache serve --help`. */
interface S3Features {
  s3: boolean;
  cacheDir: boolean;
}

function s3Features(ctx: BenchContext): S3Features {
  const cli = ctx.regcacheOptions.cli ?? REGCACHE_CLI;
  const help = execFileSync(ctx.node, [cli, 'serve', '--help'], { encoding: 'utf8', timeout: 30_000 });
  return { s3: help.includes('--s3-endpoint'), cacheDir: help.includes('--cache-dir') };
}

/** distribution 2.8's s3 driver (s3-aws) on `bucket`, as keys of `storage:` in bench/distribution.yml. */
export function distributionS3Driver(ceph: CephS3, bucket: string, rootDirectory: string): string {
  const q = (v: string) => JSON.stringify(v); // a YAML double-quoted string: no key read as a number
  return [
    '  s3:',
    `    accesskey: ${q(ceph.accessKeyId)}`,
    `    secretkey: ${q(ceph.secretAccessKey)}`,
    `    region: ${q(ceph.region)}`,
    // 2.8 has no forcepathstyle: a regionendpoint always means path-style requests.
    `    regionendpoint: ${q(ceph.endpoint)}`,
    `    bucket: ${q(bucket)}`,
    `    rootdirectory: ${q(rootDirectory)}`,
    `    secure: ${ceph.endpoint.startsWith('https:')}`,
    '    v4auth: true',
    '  redirect:',
    '    disable: true',
  ].join('\n');
}

/** The PIDs of the gateway's daemons (mon, osd, rgw), from the pid files s3-ceph.sh keeps. */
function gatewayPids(ceph: CephS3): number[] {
  const names = readFileSync(join(ceph.dir, 'pids', 'order'), 'utf8').split('\n').filter(Boolean);
  return names.map((n) => Number(readFileSync(join(ceph.dir, 'pids', n), 'utf8').trim()));
}

/** A measurement with the gateway's CPU use apart from the rest of the machine's. */
interface GatewayMeasured extends Measured {
  gatewayCpu: number;
}

async function timed(pids: number[], serverPid: number, fn: () => Promise<{ bytes: number; requests: number }>): Promise<GatewayMeasured> {
  const sum = () => pids.reduce((n, pid) => n + cpuSeconds(pid), 0);
  const g0 = sum();
  const m = await measure(fn, serverPid);
  const gatewayCpu = (sum() - g0) / m.seconds;
  return { ...m, otherCpu: Math.max(0, m.otherCpu - gatewayCpu), gatewayCpu };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const pct = (ms: Measured[], f: (m: GatewayMeasured) => number) => `${(median(ms.map((m) => f(m as GatewayMeasured))) * 100).toFixed(0)}%`;

/**
 * The rows of one workload: rateRows' pair when regcache ran, else distribution's figures alone
 * (in the baseline column) and why; the gateway's CPU in the notes.
 */
function rows(workload: string, unit: 'MB/s' | 'req/s', runs: Runs, baselineLabel?: string): Row[] {
  const gateway = runs.rc.length ? `gateway CPU ${pct(runs.rc, (m) => m.gatewayCpu)} / ${pct(runs.dist, (m) => m.gatewayCpu)}` : `gateway CPU ${pct(runs.dist, (m) => m.gatewayCpu)}`;
  if (runs.rc.length) {
    return rateRows(SECTION, workload, unit, runs, undefined).map((r, i) => ({
      ...r,
      ...(baselineLabel ? { baselineLabel } : {}),
      note: i === 0 ? `${r.note}; ${gateway}` : r.note,
    }));
  }
  const of = (m: Measured) => (unit === 'MB/s' ? m.bytes / 1e6 : m.requests) / m.seconds;
  const noisy = runs.dist.some((m) => m.otherCpu > 0.5) ? '; NOISY (rest of machine > 50% in some run)' : '';
  const cpu = `CPU server ${pct(runs.dist, (m) => m.serverCpu ?? Number.NaN)}, client ${pct(runs.dist, (m) => m.clientCpu)}, rest of machine ${pct(runs.dist, (m) => m.otherCpu)}${noisy}`;
  return [
    { section: SECTION, workload, unit, baseline: median(runs.dist.map(of)), note: `${NO_S3}; median of ${runs.dist.length}; ${cpu}, ${gateway}`, runs },
    {
      section: SECTION,
      workload: '  same, per server CPU-second',
      unit: unit === 'MB/s' ? 'MB/CPU-s' : 'req/CPU-s',
      baseline: median(runs.dist.map((m) => of(m) / (m.serverCpu ?? Number.NaN))),
      note: 'throughput / server CPU use',
    },
  ];
}

/** The servers of a comparison: `rc` absent when the build has no S3 backend. */
interface Pair {
  rc: ServerHandle | undefined;
  dist: ServerHandle;
}

/** Runs a workload once on each server (rc first on even repetitions), the disk settled before each. */
async function once<T>(ctx: BenchContext, pair: Pair, pids: number[], what: string, rep: number, data: T, run: (s: ServerHandle, data: T) => Promise<{ bytes: number; requests: number }>, into: Runs): Promise<void> {
  const sides: ['rc' | 'dist', ServerHandle][] = pair.rc ? [['rc', pair.rc], ['dist', pair.dist]] : [['dist', pair.dist]];
  if (rep % 2 === 1) sides.reverse();
  for (const [side, s] of sides) {
    ctx.settle();
    ctx.log(`s3: ${what} (run ${rep + 1}): ${s.name}`);
    into[side].push(await timed(pids, s.pid, () => run(s, data)));
  }
}

export const s3Section: Section = {
  id: SECTION,
  async run(ctx) {
    const features = s3Features(ctx);
    if (!features.s3) ctx.log(`s3: ${NO_S3}`);
    const parentDir = join(ctx.tmp, 's3');
    await mkdir(parentDir, { recursive: true });
    ctx.log(`s3: starting a Ceph RADOS Gateway (memstore, at most ${GATEWAY_GB} GB)`);
    const ceph = await startCeph({ storeGb: GATEWAY_GB });
    const servers: ServerHandle[] = [];
    try {
      const pids = gatewayPids(ceph);
      const distBucket = await ceph.createBucket('bench-dist');
      const dist = await startDistribution({ parentDir, driverConfig: distributionS3Driver(ceph, distBucket, '/distribution'), ...(ctx.serverCpu !== undefined ? { cpu: ctx.serverCpu } : {}) });
      servers.push(dist);
      let rc: ServerHandle | undefined;
      let rcStorage = '';
      const s3Args = ['--s3-endpoint', ceph.endpoint, '--s3-region', ceph.region, '--s3-path-style'];
      // Each replica needs a local directory of its own (its lock); `copies: false` keeps no local
      // copies of blobs (--cache-dir-size 0): every read goes to the bucket.
      const startReplica = (name: string, cacheDir: string | undefined, copies = true) =>
        startRegcache({
          parentDir,
          node: ctx.node,
          ...ctx.regcacheOptions,
          ...(ctx.serverCpu !== undefined ? { cpu: ctx.serverCpu } : {}),
          name,
          storage: rcStorage,
          serveArgs: [...s3Args, ...(cacheDir ? ['--cache-dir', cacheDir] : []), ...(copies ? [] : ['--cache-dir-size', '0'])],
          env: ceph.env,
        });
      if (features.s3) {
        rcStorage = `s3://${await ceph.createBucket('bench-rc')}/regcache`;
        rc = await startReplica('regcache (s3)', features.cacheDir ? join(parentDir, 'disk-cache') : undefined);
        servers.push(rc);
      }
      ctx.log(`s3: gateway ${ceph.endpoint}, distribution ${dist.url}${rc ? `, regcache ${rc.url} on ${rcStorage}` : ''}`);
      const pair: Pair = { rc, dist };
      const out: Row[] = [];

      // Warm-up: a short push and pull on each, so that neither is timed cold.
      const warm = makeImages({ count: 2, layers: 4, layerSize: 1024 * 1024, repo: (i) => `s3/warmup-${i}`, tag: 'latest' });
      for (const s of [rc, dist]) {
        if (!s) continue;
        await withPool(s, PUSH.concurrency, async (pool) => {
          await pushImages(pool, warm, 'containerd', PUSH.concurrency);
          await pullBlobs(pool, layerRefs(warm), PULL.concurrency, 2);
        });
      }

      // Push: the push section's images and flows, fresh data every repetition.
      const flows: { flow: PushFlow; runs: Runs }[] = [
        { flow: 'docker', runs: { rc: [], dist: [] } },
        { flow: 'containerd', runs: { rc: [], dist: [] } },
      ];
      let last: Image[] = [];
      for (let rep = 0; rep < REPS; rep++) {
        for (const { flow, runs } of flows) {
          last = makeImages({ ...PUSH, count: PUSH.images, repo: (i) => `s3/${flow}-${rep}-${i}`, tag: 'v1' });
          await once(ctx, pair, pids, `push (${flow} flow)`, rep, last, (s, images) => withPool(s, PUSH.concurrency, (pool) => pushImages(pool, images, flow, PUSH.concurrency)), runs);
        }
      }
      for (const { flow, runs } of flows) out.push(...rows(`push to S3, ${flow} flow, ${PUSH.images} images x ${PUSH.layers} x 16 MiB, c=${PUSH.concurrency}`, 'MB/s', runs));

      // Pull: every layer of the last images, twice.
      const refs = layerRefs(last);
      const pull: Runs = { rc: [], dist: [] };
      for (let rep = 0; rep < REPS; rep++) {
        await once(ctx, pair, pids, 'pull', rep, refs, (s, r) => withPool(s, PULL.concurrency, (pool) => pullBlobs(pool, r, PULL.concurrency, PULL.passes)), pull);
      }
      const cacheNote = rc && features.cacheDir ? ' (regcache with --cache-dir)' : '';
      out.push(...rows(`pull from S3${cacheNote}, GET ${refs.length} blobs of 16 MiB x ${PULL.passes}, sha256 verified, c=${PULL.concurrency}`, 'MB/s', pull));

      // Manifest GET by tag.
      const mImages = makeImages({ count: MANIFESTS.images, layers: 4, layerSize: 4096, repo: (i) => `s3/manifest-${i}`, tag: 'v1' });
      const mRefs = mImages.map((img) => ({ repo: img.repo, tag: img.tag, digest: img.manifestDigest, size: img.manifest.byteLength }));
      for (const s of [rc, dist]) if (s) await withPool(s, 4, (pool) => pushImages(pool, mImages, 'containerd', 4));
      const manifests: Runs = { rc: [], dist: [] };
      await once(ctx, pair, pids, 'manifest GET', 0, mRefs, (s, r) =>
        withPool(s, MANIFESTS.concurrency, async (pool) => {
          await manifestRequests(pool, r, 'GET', MANIFESTS.concurrency, MANIFESTS.warmupMs);
          return manifestRequests(pool, r, 'GET', MANIFESTS.concurrency, MANIFESTS.durationMs);
        }), manifests);
      out.push(...rows(`manifest GET by tag on S3 (${MANIFESTS.images} tags), c=${MANIFESTS.concurrency}, ${MANIFESTS.durationMs / 1000} s`, 'req/s', manifests));

      // Warm pulls: the read-through cache vs a replica without one, on the same bucket and prefix.
      if (rc && features.cacheDir) {
        const bare = await startReplica('regcache (s3, --cache-dir-size 0)', join(parentDir, 'no-copies'), false);
        servers.push(bare);
        for (const s of [rc, bare]) await withPool(s, PULL.concurrency, (pool) => pullBlobs(pool, refs, PULL.concurrency, 1));
        const warmPulls: Runs = { rc: [], dist: [] };
        for (let rep = 0; rep < REPS; rep++) {
          await once(ctx, { rc, dist: bare }, pids, 'warm pull, --cache-dir vs none', rep, refs, (s, r) => withPool(s, PULL.concurrency, (pool) => pullBlobs(pool, r, PULL.concurrency, PULL.passes)), warmPulls);
        }
        out.push(...rows(`warm pull, local copies vs a second replica with --cache-dir-size 0 (same bucket), ${refs.length} x 16 MiB x ${PULL.passes}`, 'MB/s', warmPulls, 'no local copies'));
      } else if (rc) {
        out.push({ section: SECTION, workload: 'warm pull with vs without the read-through cache', unit: '', note: 'not run: `regcache serve --help` lacks --cache-dir' });
      } else {
        out.push({ section: SECTION, workload: 'warm pull with vs without the read-through cache', unit: '', note: `not run: ${NO_S3}` });
      }
      return out;
    } finally {
      await Promise.allSettled(servers.map((s) => s.stop()));
      await ceph.stop();
    }
  },
};
