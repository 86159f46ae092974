// Property of the lifetime owner (src/storage/blob-lifetime.ts): pushes (upload sessions and
// monolithic puts), mounts, manifest puts, cache fills from an upstream, reads, eviction passes,
// garbage collections (grace 0), blob and manifest deletes and upload purges, interleaved on one
// store, never lose a blob of a manifest the registry accepted, and every blob served matches
// its digest. fast-check generates rounds of operations started together (each after a few
// event-loop turns of its own); the invariant is checked after every round. A fixed seed in
// `npm test`, a fresh one (printed) and many runs under REGCACHE_LONG=1 (`npm run test:long`).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import fc from 'fast-check';
import { openStorage, type Storage } from '../../src/storage/index.js';
import { CacheEvictor, createCache } from '../../src/proxy/index.js';
import { Stats } from '../../src/stats/index.js';
import { OCI_MANIFEST, parseReference, type Digest } from '../../src/oci/index.js';
import { startServer } from '../../src/server/index.js';
import { chunks, digest } from './fixtures.js';
import { pushBlob } from '../helpers/upstream-images.js';

const LONG = !!process.env.REGCACHE_LONG;
const SEED = LONG ? Number(process.env.REGCACHE_SEED ?? Date.now() % 2 ** 31) : 20261205;
const RUNS = LONG ? 300 : 20;
const REPOS = ['app', 'lib', 'tools'];
const POOL = [100, 233, 4096, 30_000, 70_000, 200_000].map((size, i) => {
  const data = randomBytes(size);
  data[0] = i;
  return { data, digest: digest(data) };
});

type Op =
  | { kind: 'push'; repo: number; blob: number; session: boolean }
  | { kind: 'mount'; repo: number; from: number; blob: number }
  | { kind: 'manifest'; repo: number; blobs: number[] }
  | { kind: 'fill'; blob: number }
  | { kind: 'read'; repo: number; blob: number }
  | { kind: 'evict' }
  | { kind: 'gc' }
  | { kind: 'deleteBlob'; repo: number; blob: number }
  | { kind: 'deleteManifest'; pick: number }
  | { kind: 'purge' };

const repo = fc.integer({ min: 0, max: REPOS.length - 1 });
const blob = fc.integer({ min: 0, max: POOL.length - 1 });
const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
const op: fc.Arbitrary<Op> = fc.oneof(
  w(4, fc.record({ kind: fc.constant('push' as const), repo, blob, session: fc.boolean() })),
  w(2, fc.record({ kind: fc.constant('mount' as const), repo, from: repo, blob })),
  w(4, fc.record({ kind: fc.constant('manifest' as const), repo, blobs: fc.uniqueArray(blob, { minLength: 1, maxLength: 2 }) })),
  w(4, fc.record({ kind: fc.constant('fill' as const), blob })),
  w(2, fc.record({ kind: fc.constant('read' as const), repo, blob })),
  w(2, fc.constant({ kind: 'evict' as const })),
  w(2, fc.constant({ kind: 'gc' as const })),
  w(1, fc.record({ kind: fc.constant('deleteBlob' as const), repo, blob })),
  w(1, fc.record({ kind: fc.constant('deleteManifest' as const), pick: fc.nat(20) })),
  w(1, fc.constant({ kind: 'purge' as const })),
);
/** Rounds of operations started together, each after 0-3 event-loop turns. */
const scenario = fc.array(fc.array(fc.record({ op, turns: fc.integer({ min: 0, max: 3 }) }), { minLength: 2, maxLength: 8, size: 'max' }), {
  minLength: 2,
  maxLength: 6,
  size: 'max',
});

interface Accepted {
  repo: string;
  digest: Digest;
  body: Buffer;
  refs: Digest[];
}

/** Totals over all runs: the property is not vacuous only if these happened. */
const seen = { accepted: 0, served: 0, evicted: 0, collected: 0 };

async function hashOf(stream: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const c of stream) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

function manifestOf(refs: Digest[]): Buffer {
  const d = (x: Digest) => ({ mediaType: 'application/octet-stream', digest: x.value, size: POOL.find((p) => p.digest.value === x.value)!.data.byteLength });
  return Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: d(refs[0]!), layers: refs.slice(1).map(d), annotations: { nonce: randomBytes(8).toString('hex') } }),
  );
}

/** Runs one operation; failures a client could see (a 404, a blob gone) are fine, wrong bytes are not. */
async function run(storage: Storage, cache: ReturnType<typeof createCache>, evictor: CacheEvictor, accepted: Accepted[], o: Op): Promise<void> {
  const reg = storage.registry;
  switch (o.kind) {
    case 'push': {
      const b = POOL[o.blob]!;
      if (!o.session) return void (await reg.putBlob(REPOS[o.repo]!, b.digest, chunks(b.data), b.data.byteLength));
      const session = await storage.uploads.create(REPOS[o.repo]!);
      await storage.uploads.append(session, chunks(b.data.subarray(0, 50)));
      session.size = 50;
      return void (await reg.completeUpload(REPOS[o.repo]!, session, b.digest, chunks(b.data.subarray(50))));
    }
    case 'mount':
      return void (await reg.mountBlob(REPOS[o.repo]!, POOL[o.blob]!.digest, REPOS[o.from]));
    case 'manifest': {
      const refs = o.blobs.map((i) => POOL[i]!.digest);
      const body = manifestOf(refs);
      const { digest: d } = await reg.putManifest(REPOS[o.repo]!, parseReference(digest(body).value, 'write'), body, OCI_MANIFEST);
      accepted.push({ repo: REPOS[o.repo]!, digest: d, body, refs });
      seen.accepted++;
      return;
    }
    case 'fill': {
      const b = POOL[o.blob]!;
      const handle = await cache.backend.openBlob(cache.resolveName('pool', {}), b.digest);
      if (!handle) return;
      assert.equal(await hashOf(handle.read()), b.digest.value, 'the cache served bytes of another digest');
      seen.served++;
      return;
    }
    case 'read': {
      const b = POOL[o.blob]!;
      const handle = await reg.openBlob(REPOS[o.repo]!, b.digest);
      if (!handle) return;
      assert.equal(await hashOf(handle.read()), b.digest.value, 'the registry served bytes of another digest');
      seen.served++;
      return;
    }
    case 'evict':
      seen.evicted += (await evictor.evict()).evicted;
      return;
    case 'gc':
      seen.collected += (await storage.gc({ gracePeriodMs: 0, uploadMaxAgeMs: 60_000 })).deleted;
      return;
    case 'deleteBlob':
      return void (await reg.deleteBlob(REPOS[o.repo]!, POOL[o.blob]!.digest));
    case 'deleteManifest': {
      const victim = accepted[o.pick % Math.max(1, accepted.length)];
      if (!victim) return;
      accepted.splice(accepted.indexOf(victim), 1);
      await reg.deleteManifest(victim.repo, parseReference(victim.digest.value, 'read'));
      return;
    }
    case 'purge':
      await storage.uploads.purgeStale(0);
      return;
  }
}

async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

/** Every accepted manifest and every blob it names are in the store with the right bytes. */
async function assertWhole(storage: Storage, accepted: Accepted[]): Promise<void> {
  for (const m of accepted) {
    assert.ok((await storage.blobs.readSmall(m.digest, 1 << 20)).equals(m.body), `manifest ${m.digest.value} lost its bytes`);
    for (const r of m.refs) {
      const path = storage.layout.blob(r);
      const got = await hashOf(createReadStream(path)).catch((err: Error) => `missing (${err.message})`);
      assert.equal(got, r.value, `blob ${r.value} of accepted manifest ${m.repo}@${m.digest.value} is ${got}`);
    }
  }
}

test(`interleaved pushes, mounts, manifest puts, fills, evictions, gc and deletes never lose an accepted manifest's blobs (seed ${SEED}, ${RUNS} runs)`, async (t) => {
  console.log(`blob-lifetime property: seed ${SEED}, ${RUNS} runs (REGCACHE_SEED=${SEED} with REGCACHE_LONG=1 repeats a long run)`);
  const upstreamDir = await mkdtemp(join(tmpdir(), 'regcache-lifetime-up-'));
  const upstream = await startServer({ registryAddr: '127.0.0.1:0', cacheAddr: '127.0.0.1:0', storage: upstreamDir, logLevel: 'silent' });
  t.after(async () => {
    await upstream.close();
    await rm(upstreamDir, { recursive: true, force: true });
  });
  for (const b of POOL) await pushBlob(upstream.registryUrl, 'library/pool', { digest: b.digest.value, size: b.data.byteLength, data: b.data, mediaType: 'application/octet-stream' });

  await fc.assert(
    fc.asyncProperty(scenario, async (rounds) => {
      const dir = await mkdtemp(join(tmpdir(), 'regcache-lifetime-'));
      const storage = await openStorage(dir);
      const cache = createCache({ storage, stats: new Stats(), upstreams: [`docker.io=${upstream.registryUrl}`], maxCacheBytes: 100_000, retries: 0 });
      const evictor = new CacheEvictor(storage.blobs, storage.cacheRepositories, storage.repositories, 1);
      const accepted: Accepted[] = [];
      try {
        for (const round of rounds) {
          await Promise.all(round.map(async ({ op: o, turns: n }) => {
            await turns(n);
            await run(storage, cache, evictor, accepted, o).catch((err: unknown) => {
              if (err instanceof assert.AssertionError) throw err;
            });
          }));
          await assertWhole(storage, accepted);
        }
      } finally {
        await cache.close();
        await storage.close();
        await rm(dir, { recursive: true, force: true });
      }
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: !LONG },
  );
  console.log(`blob-lifetime property: ${seen.accepted} manifests accepted, ${seen.served} blobs served, ${seen.evicted} evicted, ${seen.collected} collected`);
  assert.ok(seen.accepted > 0 && seen.served > 0 && seen.evicted > 0 && seen.collected > 0, `a scenario did not happen: ${JSON.stringify(seen)}`);
});
