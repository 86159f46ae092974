// `npm run bench`: regcache and Debian's distribution registry side by side, in one run, with
// the same client and the same data, and a table of ratios against the targets.
//
// The servers run as separate processes pinned to CPU 1 (`taskset -c 1`); this process, the
// client, pins itself to CPU 0. The run is a list of sections, each returning table rows; a new
// comparison (e.g. the pull-through cache) is one more entry in SECTIONS, with servers of its
// own if it needs them (bench/servers.ts). Everything lives in one temp dir on the default
// temp filesystem, removed at the end; servers are stopped by PID, also on SIGINT/SIGTERM.
//
// Usage: npm run bench [-- --only push,manifests] [--out results.md] [--json results.json]
//        [--node /path/to/node] [--regcache-node-args="--cpu-prof --cpu-prof-dir=/tmp/prof"]
//        [--regcache-cli other/cli.js]   (an A/B build instead of dist/cli.js)
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { actionSection } from './action.js';
import { cacheSection } from './cache.js';
import { persistSection } from './persist.js';
import { launchSection } from './launch.js';
import { s3Section } from './s3.js';
import { describeMachine, measureLimits, type MachineInfo, type MachineLimits } from './limits.js';
import { REGCACHE_CLI, REPO_ROOT, nodeFlagsOf, startDistribution, startRegcache, type RegcacheOptions, type ServerHandle } from './servers.js';
import {
  imageBytes,
  layerRefs,
  makeImages,
  manifestRequests,
  measure,
  openPool,
  pullBlobs,
  pushBlob,
  pushImages,
  withMemorySampling,
  type Image,
  type Measured,
  type MemoryProfile,
  type PushFlow,
} from './workloads.js';
import type { Pool } from 'undici';

// ---- the table ----

/** What a row must meet: a minimum ratio to its baseline, or an absolute maximum. */
export type Target = { kind: 'min-ratio'; min: number } | { kind: 'max'; max: number };

/** One line of the results table. */
export interface Row {
  section: string;
  workload: string;
  unit: string;
  regcache?: number;
  /** The value regcache is compared with: distribution's, unless `baselineLabel` says otherwise. */
  baseline?: number;
  baselineLabel?: string;
  target?: Target;
  note?: string;
  /** Raw measurements, kept in the --json output only. */
  runs?: Runs;
}

/** Everything a section can use. */
export interface BenchContext {
  /** Temp dir on the filesystem of the servers' storage; removed at the end. */
  tmp: string;
  /** CPU lists for servers and client (undefined: not pinned). */
  serverCpu: string | undefined;
  clientCpu: string | undefined;
  /** The node binary regcache runs on. */
  node: string;
  regcache: ServerHandle;
  distribution: ServerHandle;
  /** --regcache-cli and --regcache-node-args, for sections that start regcache instances of their own. */
  regcacheOptions: Pick<RegcacheOptions, 'cli' | 'nodeArgs'>;
  /** Set by the limits section (the first one). */
  limits?: MachineLimits;
  /** Progress line on stderr. */
  log(message: string): void;
  /** Flushes dirty pages (`sync`) so one server's writeback does not land in the other's timing. */
  settle(): void;
}

/** A part of the benchmark. */
export interface Section {
  id: string;
  run(ctx: BenchContext): Promise<Row[]>;
}

const MB = 1e6;

// ---- sections ----

/** Every timed workload runs this many times, servers alternating which goes first; medians are reported. */
export const REPS = 3;
/** Push: 8 images x 4 random layers of 16 MiB (fresh data every repetition), 4 uploads at a time. */
export const PUSH = { images: 8, layers: 4, layerSize: 16 * 1024 * 1024, concurrency: 4 };
/** Pull: every layer of the images pushed last, twice, 4 at a time. */
export const PULL = { concurrency: 4, passes: 2 };
/** Manifests: 32 concurrent requesters for 5 s per method and server (once: the target is far from the noise). */
const MANIFESTS = { images: 8, concurrency: 32, durationMs: 5000, warmupMs: 500 };
/** Memory: 16 clients each pulling a different 64 MiB blob at once. */
const MEMORY = { blobs: 16, blobSize: 64 * 1024 * 1024, sampleMs: 10, maxRss: 150 * MB };

const limitsSection: Section = {
  id: 'limits',
  async run(ctx) {
    ctx.log('machine limits: sha256sum (tmpfs), dd conv=fdatasync, node sha256');
    const limits = await measureLimits(ctx.tmp, ctx.serverCpu, ctx.node);
    ctx.limits = limits;
    const row = (workload: string, value: number, note: string): Row => ({ section: 'machine', workload, unit: 'MB/s', regcache: value / MB, note });
    return [
      row('sha256sum, 256 MiB', limits.sha256sum, `coreutils, file in ${limits.hashFileDir}, best of 2; in the regcache column`),
      row('dd bs=1M count=256 conv=fdatasync', limits.dd, 'storage filesystem, best of 2'),
      row('node sha256 (OpenSSL), 256 MiB', limits.nodeSha256, 'in memory, best of 2: what regcache hashes with'),
    ];
  },
};

/** The runs of one workload on each server. */
export interface Runs {
  rc: Measured[];
  dist: Measured[];
}

/**
 * Runs a workload once on both servers: regcache first on even repetitions, distribution first
 * on odd ones, with the disk settled before each timed run; adds the measurements to `into`.
 */
export async function compareOnce<T>(ctx: BenchContext, what: string, rep: number, data: T, run: (s: ServerHandle, data: T) => Promise<Measured>, into: Runs): Promise<void> {
  const order = rep % 2 === 0 ? [ctx.regcache, ctx.distribution] : [ctx.distribution, ctx.regcache];
  for (const s of order) {
    ctx.settle();
    ctx.log(`${what} (run ${rep + 1}): ${s.name}`);
    const m = await run(s, data);
    (s === ctx.regcache ? into.rc : into.dist).push(m);
  }
}

/** {@link compareOnce} `reps` times over the same data. */
export async function compare<T>(ctx: BenchContext, what: string, reps: number, data: T, run: (s: ServerHandle, data: T) => Promise<Measured>): Promise<Runs> {
  const out: Runs = { rc: [], dist: [] };
  for (let rep = 0; rep < reps; rep++) await compareOnce(ctx, what, rep, data, run, out);
  return out;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const perSecond = (m: Measured, of: 'bytes' | 'requests') => (of === 'bytes' ? m.bytes / MB : m.requests) / m.seconds;
/** Work per CPU-second of the server: what it would do with its core to itself. */
const perServerCpuSecond = (m: Measured, of: 'bytes' | 'requests') => perSecond(m, of) / (m.serverCpu ?? Number.NaN);

/** Other processes using more than this (cores) during a run make its row suspect. */
const NOISY_OTHER_CPU = 0.5;

/** Medians of the CPU figures, regcache's run / distribution's (100% = one core). */
function cpuNote(runs: Runs): string {
  const pct = (ms: Measured[], f: (m: Measured) => number | undefined) => `${(median(ms.map((m) => f(m) ?? Number.NaN)) * 100).toFixed(0)}%`;
  const both = (f: (m: Measured) => number | undefined) => `${pct(runs.rc, f)} / ${pct(runs.dist, f)}`;
  const reps = runs.rc.length > 1 ? `median of ${runs.rc.length}; ` : '';
  const all = [...runs.rc, ...runs.dist];
  const clientBound = all.some((m) => m.clientCpu > 0.9) ? '; client-bound (client CPU > 90%)' : '';
  const noisy = all.some((m) => m.otherCpu > NOISY_OTHER_CPU) ? `; NOISY (rest of machine > ${NOISY_OTHER_CPU * 100}% in some run)` : '';
  return `${reps}CPU server ${both((m) => m.serverCpu)}, client ${both((m) => m.clientCpu)}, rest of machine ${both((m) => m.otherCpu)}${clientBound}${noisy}`;
}

/** The throughput row and the per-server-CPU-second row of a comparison. */
export function rateRows(section: string, workload: string, unit: 'MB/s' | 'req/s', runs: Runs, target: Target | undefined): Row[] {
  const of = unit === 'MB/s' ? 'bytes' : 'requests';
  const med = (ms: Measured[], f: (m: Measured, of: 'bytes' | 'requests') => number) => median(ms.map((m) => f(m, of)));
  return [
    { section, workload, unit, regcache: med(runs.rc, perSecond), baseline: med(runs.dist, perSecond), ...(target ? { target } : {}), note: cpuNote(runs), runs },
    {
      section,
      workload: `  same, per server CPU-second`,
      unit: unit === 'MB/s' ? 'MB/CPU-s' : 'req/CPU-s',
      regcache: med(runs.rc, perServerCpuSecond),
      baseline: med(runs.dist, perServerCpuSecond),
      note: 'throughput / server CPU use: the rate with a whole core and an infinitely fast client',
    },
  ];
}

/** A short push and pull of the same shape, so that neither server is timed cold. */
async function warmUp(ctx: BenchContext): Promise<void> {
  const images = makeImages({ count: 2, layers: 4, layerSize: 1024 * 1024, repo: (i) => `bench/warmup-${i}`, tag: 'latest' });
  for (const s of [ctx.regcache, ctx.distribution]) {
    const pool = openPool(s.url, PUSH.concurrency);
    try {
      await pushImages(pool, images.slice(0, 1), 'docker', PUSH.concurrency);
      await pushImages(pool, images.slice(1), 'containerd', PUSH.concurrency);
      await pullBlobs(pool, layerRefs(images), PULL.concurrency, 3);
    } finally {
      await pool.close();
    }
  }
}

/** Opens a pool to `s`, runs `fn` with it, closes it. */
export async function withPool<T>(s: ServerHandle, connections: number, fn: (pool: Pool) => Promise<T>): Promise<T> {
  const pool = openPool(s.url, connections);
  try {
    return await fn(pool);
  } finally {
    await pool.close();
  }
}

const pushPullSection: Section = {
  id: 'push',
  async run(ctx) {
    ctx.log('warm-up');
    await warmUp(ctx);
    const rows: Row[] = [];
    const limit = ctx.limits ? Math.min(ctx.limits.sha256sum, ctx.limits.dd) : undefined;
    let lastImages: Image[] = [];
    const flows: { flow: PushFlow; how: string; runs: Runs }[] = [
      { flow: 'docker', how: 'HEAD, POST, PATCH chunked, PUT ?digest=', runs: { rc: [], dist: [] } },
      { flow: 'containerd', how: 'HEAD, POST, PUT ?digest= with body', runs: { rc: [], dist: [] } },
    ];
    // Repetitions outside, flows inside: whatever drifts during the run (page cache, the
    // filesystem's free-inode search) weighs on both flows alike.
    for (let rep = 0; rep < REPS; rep++) {
      for (const { flow, runs } of flows) {
        ctx.log(`generating ${PUSH.images} images x ${PUSH.layers} layers x ${PUSH.layerSize >> 20} MiB`);
        lastImages = makeImages({ ...PUSH, count: PUSH.images, repo: (i) => `bench/${flow}-${rep}-${i}`, tag: 'v1' });
        await compareOnce(ctx, `push (${flow} flow)`, rep, lastImages, (s, images) =>
          withPool(s, PUSH.concurrency, (pool) => measure(() => pushImages(pool, images, flow, PUSH.concurrency), s.pid)), runs);
      }
    }
    for (const { flow, how, runs } of flows) {
      const workload = `push, ${flow} flow (${how}), ${PUSH.images} images x ${PUSH.layers} x 16 MiB, c=${PUSH.concurrency}`;
      const [rate, capacity] = rateRows('push', workload, 'MB/s', runs, { kind: 'min-ratio', min: 1.8 });
      rows.push(rate!);
      if (limit !== undefined) {
        rows.push({
          section: 'push',
          workload: `  same, vs machine limit`,
          unit: 'MB/s',
          regcache: rate!.regcache!,
          baseline: limit / MB,
          baselineLabel: `min(sha256sum, dd) ${(limit / MB).toFixed(0)}`,
          target: { kind: 'min-ratio', min: 0.8 },
          note: `distribution: ${((rate!.baseline! * MB) / limit).toFixed(2)}x of the limit`,
        });
      }
      rows.push(capacity!);
    }
    const refs = layerRefs(lastImages);
    const runs = await compare(ctx, 'pull', REPS, refs, (s, r) =>
      withPool(s, PULL.concurrency, (pool) => measure(() => pullBlobs(pool, r, PULL.concurrency, PULL.passes), s.pid)));
    rows.push(...rateRows('pull', `pull, GET ${refs.length} blobs of 16 MiB x ${PULL.passes}, sha256 verified, c=${PULL.concurrency}`, 'MB/s', runs, { kind: 'min-ratio', min: 1.5 }));
    return rows;
  },
};

const manifestSection: Section = {
  id: 'manifests',
  async run(ctx) {
    const images = makeImages({ count: MANIFESTS.images, layers: 4, layerSize: 4096, repo: (i) => `bench/manifest-${i}`, tag: 'v1' });
    const refs = images.map((img) => ({ repo: img.repo, tag: img.tag, digest: img.manifestDigest, size: img.manifest.byteLength }));
    for (const s of [ctx.regcache, ctx.distribution]) await withPool(s, 4, (pool) => pushImages(pool, images, 'containerd', 4));
    const rows: Row[] = [];
    for (const method of ['GET', 'HEAD'] as const) {
      const runs = await compare(ctx, `manifest ${method}`, 1, refs, (s, r) =>
        withPool(s, MANIFESTS.concurrency, async (pool) => {
          await manifestRequests(pool, r, method, MANIFESTS.concurrency, MANIFESTS.warmupMs);
          return measure(() => manifestRequests(pool, r, method, MANIFESTS.concurrency, MANIFESTS.durationMs), s.pid);
        }));
      const workload = `manifest ${method} by tag (${MANIFESTS.images} tags), c=${MANIFESTS.concurrency}, ${MANIFESTS.durationMs / 1000} s`;
      rows.push(...rateRows('manifests', workload, 'req/s', runs, { kind: 'min-ratio', min: 5 }));
    }
    return rows;
  },
};

const memorySection: Section = {
  id: 'memory',
  async run(ctx) {
    ctx.log(`generating ${MEMORY.blobs} blobs x ${MEMORY.blobSize >> 20} MiB`);
    const images = makeImages({ count: 1, layers: MEMORY.blobs, layerSize: MEMORY.blobSize, repo: () => 'bench/memory', tag: 'v1' });
    const refs = layerRefs(images);
    const results: { mem: MemoryProfile; m: Measured }[] = [];
    for (const s of [ctx.regcache, ctx.distribution]) {
      ctx.log(`memory: pushing ${(imageBytes(images) / MB).toFixed(0)} MB to ${s.name}`);
      await withPool(s, MEMORY.blobs, async (pool) => {
        for (const l of images[0]!.layers) await pushBlob(pool, 'bench/memory', l, 'containerd');
        ctx.settle();
        ctx.log(`memory: ${MEMORY.blobs} concurrent pulls from ${s.name}`);
        const { value, memory } = await withMemorySampling(s.pid, MEMORY.sampleMs, () => measure(() => pullBlobs(pool, refs, MEMORY.blobs, 1), s.pid));
        results.push({ mem: memory, m: value });
      });
    }
    const [rc, dist] = results as [(typeof results)[0], (typeof results)[0]];
    const peak = (r: typeof rc) => Math.max(r.mem.hwm, r.mem.sampledPeak);
    const hwmNote = rc.mem.hwmReset ? 'VmHWM reset just before' : 'VmHWM since start (reset refused)';
    return [
      {
        section: 'memory',
        workload: `peak RSS while ${MEMORY.blobs} clients pull ${MEMORY.blobSize >> 20} MiB blobs at once`,
        unit: 'MB',
        regcache: peak(rc) / MB,
        baseline: peak(dist) / MB,
        target: { kind: 'max', max: MEMORY.maxRss / MB },
        note: `max(VmHWM, VmRSS every ${MEMORY.sampleMs} ms), ${hwmNote}; RSS before ${(rc.mem.before / MB).toFixed(0)} / ${(dist.mem.before / MB).toFixed(0)} MB`,
      },
      {
        section: 'memory',
        workload: `  pull rate during that (c=${MEMORY.blobs})`,
        unit: 'MB/s',
        regcache: perSecond(rc.m, 'bytes'),
        baseline: perSecond(dist.m, 'bytes'),
        note: cpuNote({ rc: [rc.m], dist: [dist.m] }),
      },
    ];
  },
};

/**
 * The benchmark, in order. The limits section comes first (the push rows compare with it).
 * A section that starts its own servers stops them before returning (bench/cache.ts).
 */
const SECTIONS: Section[] = [limitsSection, pushPullSection, manifestSection, memorySection, launchSection, cacheSection, actionSection, persistSection, s3Section];

// ---- output ----

function fmt(value: number | undefined, unit: string): string {
  if (value === undefined) return '';
  if (unit === 'MB') return value.toFixed(1);
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

function verdict(row: Row): { ratio?: number; target: string; result: string } {
  const ratio = row.regcache !== undefined && row.baseline ? row.regcache / row.baseline : undefined;
  const t = row.target;
  if (!t) return { ...(ratio !== undefined ? { ratio } : {}), target: '', result: '' };
  if (t.kind === 'min-ratio') {
    return { ...(ratio !== undefined ? { ratio } : {}), target: `>= ${t.min}x`, result: ratio !== undefined && ratio >= t.min ? 'PASS' : 'FAIL' };
  }
  return { ...(ratio !== undefined ? { ratio } : {}), target: `< ${t.max} ${row.unit}`, result: row.regcache !== undefined && row.regcache < t.max ? 'PASS' : 'FAIL' };
}

/** The results as Markdown: the machine, then the table. */
export function renderMarkdown(machine: MachineInfo, rows: Row[], warnings: string[], load: { start: string; end: string }): string {
  const lines: string[] = [];
  lines.push(`Run ${machine.date}, ${((performance.now() / 1000) | 0)} s`, '');
  lines.push(
    `- CPU: ${machine.nproc} x ${machine.cpuModel} @ ${machine.cpuMHz} MHz (${machine.cpuFlags}); servers on CPU 1, client on CPU 0`,
    `- Memory: ${machine.memory}`,
    `- Disk: ${machine.disk}`,
    `- Kernel: ${machine.kernel}`,
    `- Node: ${machine.serverNode} runs regcache, ${machine.benchNode} runs the client`,
    `- regcache: ${machine.regcache}`,
    `- distribution: ${machine.distribution} (Debian docker-registry, bench/distribution.yml)`,
    `- Load average (1, 5, 15 min) at start: ${load.start}; at end: ${load.end}`,
    '',
  );
  lines.push('| Section | Workload | Unit | regcache | distribution / baseline | Ratio | Target | Result | Notes |');
  lines.push('|---|---|---|--:|--:|--:|---|---|---|');
  for (const row of rows) {
    const v = verdict(row);
    const baseline = row.baselineLabel ?? fmt(row.baseline, row.unit);
    const ratio = v.ratio !== undefined ? `${v.ratio.toFixed(2)}x` : '';
    lines.push(`| ${row.section} | ${row.workload} | ${row.unit} | ${fmt(row.regcache, row.unit)} | ${baseline} | ${ratio} | ${v.target} | ${v.result} | ${row.note ?? ''} |`);
  }
  const judged = rows.filter((r) => r.target);
  const passed = judged.filter((r) => verdict(r).result === 'PASS').length;
  lines.push(
    '',
    `${passed} of ${judged.length} targets met. MB = 10^6 bytes. Ratio = regcache / baseline. CPU: 100% = one core busy;`,
    '"rest of machine" is what every other process and the kernel used meanwhile (interference).',
  );
  for (const w of warnings) lines.push('', `Warning: ${w}`);
  return `${lines.join('\n')}\n`;
}

// ---- orchestration ----

/** Pins every thread of this process to `cpu`; threads started later inherit it. */
function pinSelf(cpu: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpu, String(process.pid)], { stdio: 'ignore' });
}

/** Warns when some file under src/ is newer than dist/cli.js (the bench runs dist). */
function staleDistWarning(): string | undefined {
  const built = statSync(REGCACHE_CLI).mtimeMs;
  const newer: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (statSync(p).mtimeMs > built) newer.push(p.slice(REPO_ROOT.length));
    }
  };
  walk(join(REPO_ROOT, 'src'));
  return newer.length ? `dist/cli.js is older than ${newer.slice(0, 3).join(', ')}${newer.length > 3 ? ', ...' : ''}: \`npm run build\` to bench the current source` : undefined;
}

/** The first three fields of /proc/loadavg. */
function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** A whole run takes 6-12 min (longer on a busy machine); past this something hangs. */
const WATCHDOG_MS = 25 * 60 * 1000;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'string' },
      node: { type: 'string' },
      'regcache-node-args': { type: 'string' },
      'regcache-cli': { type: 'string' },
    },
  });
  const log = (m: string) => process.stderr.write(`[bench ${(performance.now() / 1000).toFixed(1)}s] ${m}\n`);
  const pin = availableParallelism() >= 2;
  const serverCpu = pin ? '1' : undefined;
  const clientCpu = pin ? '0' : undefined;
  if (clientCpu) pinSelf(clientCpu);
  const warnings: string[] = [];
  if (!pin) warnings.push('fewer than 2 CPUs: servers and client are not pinned');
  const stale = values['regcache-cli'] ? undefined : staleDistWarning();
  if (stale) warnings.push(stale);
  for (const w of warnings) log(`warning: ${w}`);

  const only = values.only?.split(',').map((s) => s.trim());
  const unknown = only?.filter((id) => !SECTIONS.some((s) => s.id === id)) ?? [];
  if (unknown.length) throw new Error(`--only: no section ${unknown.join(', ')} (sections: ${SECTIONS.map((s) => s.id).join(', ')})`);
  const sections = SECTIONS.filter((s) => !only || only.includes(s.id));
  const node = values.node ?? process.execPath;
  const tmp = await mkdtemp(join(tmpdir(), 'regcache-bench-'));
  const servers: ServerHandle[] = [];
  const cleanup = async () => {
    await Promise.allSettled(servers.map((s) => s.stop()));
    await rm(tmp, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping servers`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  const watchdog = setTimeout(() => {
    log(`still running after ${WATCHDOG_MS / 60000} minutes: giving up`);
    void cleanup().finally(() => process.exit(2));
  }, WATCHDOG_MS);
  watchdog.unref();

  const loadStart = loadAverage();
  try {
    const machine = await describeMachine(tmp, node, values['regcache-cli']);
    const nodeArgs = values['regcache-node-args']?.split(/\s+/).filter(Boolean);
    const cli = values['regcache-cli'];
    const regcache = await startRegcache({ parentDir: tmp, cpu: serverCpu, node, ...(nodeArgs ? { nodeArgs } : {}), ...(cli ? { cli } : {}) });
    servers.push(regcache);
    machine.regcache += `; run as \`node ${[...nodeFlagsOf(regcache.pid), 'cli.js'].join(' ')} serve\``;
    const distribution = await startDistribution({ parentDir: tmp, cpu: serverCpu });
    servers.push(distribution);
    log(`regcache ${regcache.url} (pid ${regcache.pid}), distribution ${distribution.url} (pid ${distribution.pid})`);
    const ctx: BenchContext = {
      tmp,
      serverCpu,
      clientCpu,
      node,
      regcache,
      distribution,
      regcacheOptions: { ...(cli ? { cli } : {}), ...(nodeArgs ? { nodeArgs } : {}) },
      log,
      settle: () => execFileSync('sync'),
    };
    const rows: Row[] = [];
    for (const section of sections) rows.push(...(await section.run(ctx)));
    await cleanup();
    const markdown = renderMarkdown(machine, rows, warnings, { start: loadStart, end: loadAverage() });
    process.stdout.write(markdown);
    if (values.out) writeFileSync(values.out, markdown);
    if (values.json) writeFileSync(values.json, `${JSON.stringify({ machine, rows: rows.map((r) => ({ ...r, ...verdict(r) })), warnings }, null, 2)}\n`);
    log(`done in ${(performance.now() / 1000).toFixed(0)} s`);
  } finally {
    clearTimeout(watchdog);
    await cleanup();
  }
}

await main();
