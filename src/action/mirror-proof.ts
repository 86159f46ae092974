// Proves that the docker daemon pulls through the cache: `docker pull` of the probe image
// the cache serves itself, then a look at the cache's statistics for that very request.
import { PROBE_REPOSITORY, PROBE_TAG } from '../proxy/index.js';
import { run } from './privileged.js';

/** The outcome of the proof. */
export interface Proof {
  ok: boolean;
  detail: string;
}

async function probeHits(cacheUrl: string): Promise<number> {
  const res = await fetch(`${cacheUrl}/_regcache/stats`, { signal: AbortSignal.timeout(5000) });
  const s = (await res.json()) as { repositories: Record<string, { manifestHits: number }> };
  return Object.entries(s.repositories)
    .filter(([name]) => name.endsWith(`/${PROBE_REPOSITORY}`))
    .reduce((a, [, r]) => a + r.manifestHits, 0);
}

/** Pulls the probe image with the docker CLI and checks that the cache served it. */
export async function proveMirror(cacheUrl: string): Promise<Proof> {
  const before = await probeHits(cacheUrl);
  const ref = `${PROBE_REPOSITORY}:${PROBE_TAG}`;
  const pull = await run('docker', ['pull', '--quiet', ref], 60_000);
  const after = await probeHits(cacheUrl);
  await run('docker', ['rmi', '--force', ref], 30_000);
  if (pull.code === 0 && after > before) return { ok: true, detail: `the pull of ${ref} was served by the cache` };
  if (pull.code === 0) return { ok: false, detail: `docker pull ${ref} succeeded but not through the cache` };
  return { ok: false, detail: `docker pull ${ref} failed: ${pull.stderr.trim().split('\n').pop() ?? ''}` };
}
