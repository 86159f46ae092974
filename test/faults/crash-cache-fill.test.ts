// Crash safety of the pull-through cache: the real server (dist/cli.js) fills blobs and manifests
// from a distribution upstream behind a throttling fault proxy (one blob there is always served
// corrupted) and is SIGKILLed at random points: by time, or once a client has received N bytes of
// a blob it is being streamed while the fill runs. After each restart on the same storage: every
// blob file hashes to its name, no trace of the corrupted blob exists, every fill a client received
// whole is in the store, cached tags lead to whole manifests, tmp/ is empty after the startup scan,
// and the cache fills again. The corrupted blob is asked for on a fixed schedule (every third
// kill point, from the first) and once more at the end with no kill pending, and the test asserts
// that the cache fetched it from the upstream (the proxy's count): it is tried in every run.
// Seeded (printed; REGCACHE_SEED=<n> replays); 8 kill points in `npm test`, 50 under
// REGCACHE_LONG=1.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KillSwitch, LONG, Rng, type ServeHandle, type VerifiedCache, blobPath, checkStorage, kill9, seedFromEnv, sha256, startServe, stopServe } from '../helpers/crash.js';
import { type Distribution, startDistribution } from '../helpers/distribution.js';
import { type FaultProxy, type RawResponse, fetchRaw, pushBlob, startFaultProxy } from '../helpers/fault-proxy.js';
import { tempDir } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';
import { OCI_MANIFEST, pushManifest } from '../helpers/upstream-images.js';

const KILLS = Number(process.env.REGCACHE_CRASH_KILLS ?? (LONG ? 50 : 8));
const SEED = seedFromEnv();
const POOL = LONG ? 16 : 10;
/** The corrupted blob is asked for at kill points 0, 3, 6, ... */
const POISON_EVERY = 3;
/** Upstream blob answers are throttled so that a fill takes 50-150 ms and kills land inside. */
const BYTES_PER_SECOND = 24 * 1024 * 1024;

interface PoolBlob {
  digest: string;
  size: number;
}

describe('crash safety: kill -9 during cache fills', { skip: skipUnless(['docker-registry']) }, () => {
  const rng = new Rng(SEED);
  let upstream: Distribution;
  let proxy: FaultProxy;
  const pool: PoolBlob[] = [];
  let poison: PoolBlob;
  const images: Array<{ tag: string; digest: string }> = [];

  before(async () => {
    upstream = await startDistribution();
    const layers: Buffer[] = [];
    for (let i = 0; i < POOL; i++) {
      const data = rng.bytes(rng.int(256 * 1024, 3 * 1024 * 1024));
      layers.push(data);
      pool.push({ digest: await pushBlob(upstream.url, 'library/fillpool', data), size: data.byteLength });
    }
    const bad = rng.bytes(1024 * 1024);
    poison = { digest: await pushBlob(upstream.url, 'library/fillpool', bad), size: bad.byteLength };
    for (const tag of ['v0', 'v1', 'v2']) {
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', tag }));
      const configDigest = await pushBlob(upstream.url, 'library/fillimg', config);
      const li = rng.int(0, POOL - 1);
      const layer = pool[li]!;
      await pushBlob(upstream.url, 'library/fillimg', layers[li]!);
      const manifest = Buffer.from(JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.byteLength },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layer.digest, size: layer.size }],
      }));
      await pushManifest(upstream.url, 'library/fillimg', tag, manifest, OCI_MANIFEST);
      images.push({ tag, digest: sha256(manifest) });
    }
    proxy = await startFaultProxy(upstream.url, [
      { name: 'poison', method: 'GET', match: new RegExp(`/blobs/${poison.digest}`), fault: { kind: 'corrupt', offset: -1 } },
      { name: 'slow', method: 'GET', match: /\/blobs\/sha256:/, fault: { kind: 'throttle', bytesPerSecond: BYTES_PER_SECOND } },
    ]);
  });
  after(async () => {
    await proxy?.close();
    await upstream?.stop();
  });

  test(`kill -9 during cache fills: ${KILLS} kill points, no corrupt or partial blob ever in the store`, { timeout: LONG ? 900_000 : 120_000 }, async (t) => {
    console.log(`crash-cache-fill seed ${SEED}: ${KILLS} kill points (replay: REGCACHE_SEED=${SEED})`);
    t.diagnostic(`seed ${SEED} (replay with REGCACHE_SEED=${SEED})`);
    const dir = await tempDir('rc-crash-fill-', t);
    const storage = join(dir.path, 'storage');
    const verified: VerifiedCache = new Map();
    const start = () => startServe({ storage, dir: dir.path, upstreams: [`docker.io=${proxy.url}`] });
    let server: ServeHandle = await start();
    t.after(() => stopServe(server).catch(() => {}));
    /** Blobs a client received whole and verified: the fill committed before the last bytes went out. */
    const received = new Set<string>();
    const kinds = new Map<string, number>();
    let typicalMs = 150;
    let wholeFills = 0;
    let brokenOff = 0;
    let poisonTries = 0;

    for (let k = 0; k < KILLS; k++) {
      const cycle = rng.fork();
      const report = await checkStorage(storage, verified, { expectEmptyTmp: true });
      const where = `kill point ${k}/${KILLS} (seed ${SEED})`;
      assert.deepEqual(report.problems, [], `after ${where}`);
      assert.equal(report.blobs.has(poison.digest), false, `the corrupted blob is in the store after ${where}`);
      for (const d of received) assert.equal(report.blobs.get(d), pool.find((p) => p.digest === d)!.size, `blob ${d} was received whole before ${where}, and is not in the store`);
      for (const img of images) {
        const m = await fetchRaw(`${server.cache}/v2/fillimg/manifests/${img.tag}`, { headers: { accept: OCI_MANIFEST } });
        assert.equal(m.status, 200, `GET fillimg:${img.tag} after ${where}`);
        assert.equal(sha256(m.body), img.digest);
      }
      // Make the pool fillable again once most of it is cached (blobs and their cache links go).
      const cached = pool.filter((p) => report.blobs.has(p.digest));
      if (cached.length > POOL - 3) {
        for (const p of cached) {
          await rm(join(storage, 'cache', 'docker.io', 'library', 'fillpool', '_layers', 'sha256', p.digest.slice(7)), { force: true });
          await rm(blobPath(storage, p.digest), { force: true });
          received.delete(p.digest);
        }
      }

      // The workload: 2-3 clients fill blobs not cached (sometimes the same one: they share the
      // fill), one pulls manifests by tag, every POISON_EVERY-th kill point one asks for the corrupted blob.
      const fresh = pool.filter((p) => !report.blobs.has(p.digest) || cached.length > POOL - 3);
      const targets = Array.from({ length: cycle.int(2, 3) }, () => cycle.pick(fresh));
      const kill = new KillSwitch(server.pid);
      const r = cycle.next();
      let plan: string;
      if (r < 0.4) {
        const ms = cycle.int(0, Math.ceil(typicalMs));
        plan = 'time';
        kill.after(ms, `${ms} ms into the cycle`);
      } else {
        plan = 'bytes';
        const victim = cycle.int(0, targets.length - 1);
        const n = cycle.int(0, targets[victim]!.size - 1);
        (targets[victim] as PoolBlob & { killAt?: number }).killAt = n;
      }
      const started = Date.now();
      const gets: Array<Promise<{ blob: PoolBlob; res: RawResponse }>> = targets.map((blob, i) =>
        fetchRaw(`${server.cache}/v2/fillpool/blobs/${blob.digest}`, {
          onData: (n) => {
            const at = (blob as PoolBlob & { killAt?: number }).killAt;
            if (at !== undefined && n >= at) kill.fire(`client ${i} received ${n} of ${blob.size} bytes`);
          },
        }).then((res) => ({ blob, res })),
      );
      const askPoison = k % POISON_EVERY === 0;
      if (askPoison) gets.push(fetchRaw(`${server.cache}/v2/fillpool/blobs/${poison.digest}`).then((res) => ({ blob: poison, res })));
      const manifest = fetchRaw(`${server.cache}/v2/fillimg/manifests/${cycle.pick(images).tag}`, { headers: { accept: OCI_MANIFEST } });
      const results = await Promise.all(gets);
      const m = await manifest;
      if (m.status === 200 && m.complete) assert.ok(images.some((i) => i.digest === sha256(m.body)), 'a manifest served through the cache hashes to one pushed upstream');
      for (const t of targets) delete (t as PoolBlob & { killAt?: number }).killAt;
      if (!kill.fired) typicalMs = 0.7 * typicalMs + 0.3 * (Date.now() - started);
      kill.fire('after the cycle finished');
      await kill9(server);
      const kind = kill.where === 'after the cycle finished' ? 'idle' : plan;
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);

      const now = `kill point ${k + 1}/${KILLS} (${plan}: ${kill.where}; seed ${SEED})`;
      for (const { blob, res } of results) {
        const whole = res.status === 200 && res.complete && res.body.byteLength === blob.size;
        if (blob === poison) {
          poisonTries++;
          assert.ok(!(res.status === 200 && res.complete), `the corrupted blob was served as a complete 200 (${res.body.byteLength} bytes), ${now}`);
          continue;
        }
        if (whole) {
          assert.equal(sha256(res.body), blob.digest, `a complete 200 with the wrong bytes for ${blob.digest}, ${now}`);
          received.add(blob.digest);
          wholeFills++;
        } else {
          brokenOff++;
          // Before the kill, a fill of a healthy blob must not fail.
          if (kill.where === 'after the cycle finished') assert.fail(`GET ${blob.digest} before any kill: ${res.status} ${res.error?.message} ${res.body.toString().slice(0, 200)}`);
        }
      }
      server = await start();
    }
    // Once more with no kill pending: the cache fetches the corrupted blob whole from the
    // upstream, finds its digest wrong, and neither completes the answer nor stores it.
    const fetchedBefore = proxy.hits('poison');
    const last = await fetchRaw(`${server.cache}/v2/fillpool/blobs/${poison.digest}`);
    poisonTries++;
    assert.ok(!(last.status === 200 && last.complete), `the corrupted blob was served as a complete 200 (${last.body.byteLength} bytes) after the last kill point`);
    assert.ok(proxy.hits('poison') > fetchedBefore, 'the cache asked the upstream for the corrupted blob after the last kill point');
    const scheduled = Math.ceil(KILLS / POISON_EVERY);
    assert.ok(poisonTries >= scheduled + 1, `the corrupted blob was asked for ${poisonTries} times, fewer than the ${scheduled} kill points of the schedule and the last try`);
    const report = await checkStorage(storage, verified, { expectEmptyTmp: true });
    assert.deepEqual(report.problems, []);
    assert.equal(report.blobs.has(poison.digest), false, 'the corrupted blob is in the store after the last try');
    await stopServe(server);
    const summary = `crash-cache-fill seed ${SEED}: survived ${KILLS} kill points (${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}); ` +
      `${wholeFills} fills received whole, ${brokenOff} broken off by a kill, corrupted blob asked ${poisonTries} times (fetched from the upstream ${proxy.hits('poison')} times) and never stored`;
    console.log(summary);
    t.diagnostic(summary);
  });
});
