// Preloaded into a regcache server process by the load test (`node --import <this file> ...`):
// once a second, one line to stderr (the server's log file) with node's own account of its
// memory, so that a peak of VmRSS can be split into V8 heap, external memory (Buffers) and the
// rest (code, native allocations, fragmentation):
//   REGCACHE-MEMORY {"t":1234,"rss":...,"heapTotal":...,"heapUsed":...,"external":...,"arrayBuffers":...,"newSpace":...}
// (newSpace: the capacity of V8's young generation). It observes only: it reads no file and
// changes no answer.
import { getHeapSpaceStatistics } from 'node:v8';

const started = Date.now();
setInterval(() => {
  const m = process.memoryUsage();
  const newSpace = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
  process.stderr.write(`REGCACHE-MEMORY ${JSON.stringify({ t: Date.now() - started, rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, newSpace })}\n`);
}, 1000).unref();
