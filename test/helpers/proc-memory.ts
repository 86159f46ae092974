// Memory of another process, sampled from /proc/<pid>/status: VmRSS (resident now) every
// `intervalMs`, and VmHWM (the kernel's own peak of VmRSS, which sees between samples too).
import { readFileSync } from 'node:fs';

/** Resident set size and its high-water mark, in bytes (undefined once the process is gone). */
export function readMemory(pid: number): { rss: number; hwm: number } | undefined {
  let text: string;
  try {
    // Synchronous on purpose: a read of /proc is a few microseconds and keeps the sampler simple.
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** A running sampler. */
export interface MemorySampler {
  /** Stops sampling; returns the peak VmRSS seen, the last VmHWM read, and the samples taken. */
  stop(): { peakRss: number; hwm: number; samples: number; series: number[] };
}

/** Samples VmRSS of `pid` every `intervalMs` (default 100 ms). */
export function sampleMemory(pid: number, intervalMs = 100): MemorySampler {
  let peakRss = 0;
  let hwm = 0;
  const series: number[] = [];
  const take = () => {
    const m = readMemory(pid);
    if (!m) return;
    series.push(m.rss);
    peakRss = Math.max(peakRss, m.rss);
    hwm = Math.max(hwm, m.hwm);
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return { peakRss, hwm, samples: series.length, series };
    },
  };
}
