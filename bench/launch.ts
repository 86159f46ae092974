// Section `launch` (issue 13): regcache started as its bin starts it (`dist/cli.js serve` with no
// node flag, what `regcache serve` and `npx regcache serve` run: the bin puts the server's own
// flag in place, by re-executing itself on Node 22.15 and later, or on Node 20 by running the
// server as its child) against `npm start` (`node --initial-old-space-size=64 dist/cli.js
// serve`, the bench's own regcache), side by side, as the push and pull sections run them. The
// two should match: whichever way a user starts it, the server is the same. The bin's server is
// measured by its own pid (from its ready file), pinned like the others.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PULL, PUSH, REPS, compare, compareOnce, rateRows, withPool, type BenchContext, type Row, type Runs, type Section } from './run.js';
import { nodeFlagsOf, startRegcache } from './servers.js';
import { layerRefs, makeImages, measure, pullBlobs, pushImages, type Image } from './workloads.js';

/** The rows of one workload, labelled against `npm start` instead of distribution. */
function againstNpmStart(rows: Row[]): Row[] {
  return rows.map((r) => ({ ...r, section: 'launch', baselineLabel: 'npm start' }));
}

export const launchSection: Section = {
  id: 'launch',
  async run(ctx) {
    const parentDir = join(ctx.tmp, 'launch');
    await mkdir(parentDir, { recursive: true });
    const bin = await startRegcache({ parentDir, node: ctx.node, bin: true, name: 'regcache bin', ...(ctx.serverCpu !== undefined ? { cpu: ctx.serverCpu } : {}) });
    try {
      // The bin's server in the regcache column, `npm start`'s (the bench's regcache) as the baseline.
      const pair: BenchContext = { ...ctx, regcache: bin, distribution: ctx.regcache };
      const push: Runs = { rc: [], dist: [] };
      let images: Image[] = [];
      for (let rep = 0; rep < REPS; rep++) {
        images = makeImages({ ...PUSH, count: PUSH.images, repo: (i) => `launch/push-${rep}-${i}`, tag: 'v1' });
        await compareOnce(pair, 'launch: push', rep, images, (s, imgs) =>
          withPool(s, PUSH.concurrency, (pool) => measure(() => pushImages(pool, imgs, 'containerd', PUSH.concurrency), s.pid)), push);
      }
      const pull = await compare(pair, 'launch: pull', REPS, layerRefs(images), (s, refs) =>
        withPool(s, PULL.concurrency, (pool) => measure(() => pullBlobs(pool, refs, PULL.concurrency, PULL.passes), s.pid)));
      const flags = nodeFlagsOf(bin.pid).join(' ') || 'none';
      const target = { kind: 'min-ratio', min: 0.9 } as const;
      return [
        ...againstNpmStart(rateRows('launch', `push through the bin vs npm start (containerd flow, ${PUSH.images} images x ${PUSH.layers} x 16 MiB)`, 'MB/s', push, target)),
        ...againstNpmStart(rateRows('launch', 'pull through the bin vs npm start (every layer twice)', 'MB/s', pull, target)),
        { section: 'launch', workload: "  the bin's server ran with", unit: '', note: `node flags: ${flags} (pid ${bin.pid})` },
      ];
    } finally {
      await bin.stop();
    }
  },
};
