// A full disk under cache fills: the storage is an 8 MiB tmpfs (root; skipped locally without
// it, failed under CI), the upstream a distribution behind a throttling fault proxy. A blob larger
// than the free space is refused before any answer starts (507, the JSON envelope), never a 200
// that breaks off; a blob that fits when its fill starts but not when the disk fills up under it
// ends in an error the client can see (the connection breaks before Content-Length bytes), never
// a complete-looking body. Either way no blob and nothing in tmp/ is left, blobs already cached
// are still served with the disk full, and once space is freed the same blob fills whole.
import assert from 'node:assert/strict';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Rng, type ServeHandle, blobPath, fillUp, freeBytes, mib, mountTmpfs, seedFromEnv, startServe, stopServe } from '../helpers/crash.js';
import { type Distribution, startDistribution } from '../helpers/distribution.js';
import { type FaultProxy, fetchRaw, pushBlob, sha256, startFaultProxy, errorCode } from '../helpers/fault-proxy.js';
import { tempDir, waitFor } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';

const SEED = seedFromEnv();

describe('ENOSPC on cache fills', { skip: skipUnless(['docker-registry', 'umount'], { root: true }) }, () => {
  const rng = new Rng(SEED);
  let upstream: Distribution;
  let proxy: FaultProxy;
  const huge = rng.bytes(12 * 1024 * 1024);
  const medium = rng.bytes(5 * 1024 * 1024);
  const small = rng.bytes(256 * 1024);
  const digests = { huge: sha256(huge), medium: sha256(medium), small: sha256(small) };

  before(async () => {
    console.log(`enospc-cache-fill seed ${SEED} (replay: REGCACHE_SEED=${SEED})`);
    upstream = await startDistribution();
    for (const b of [huge, medium, small]) await pushBlob(upstream.url, 'library/full', b);
    // 4 MiB/s: the 5 MiB fill takes over a second, time enough to fill the disk under it.
    proxy = await startFaultProxy(upstream.url, [{ name: 'slow', method: 'GET', match: new RegExp(`/blobs/${digests.medium}`), fault: { kind: 'throttle', bytesPerSecond: 4 * 1024 * 1024 } }]);
  });
  after(async () => {
    await proxy?.close();
    await upstream?.stop();
  });

  test('a fill that cannot fit is a clean 507; one that runs out of space part-way breaks off visibly; nothing partial is kept; cached blobs are still served; it fills once there is room', { timeout: 120_000 }, async (t) => {
    const dir = await tempDir('rc-enospc-fill-');
    const fs = join(dir.path, 'fs');
    let server: ServeHandle | undefined;
    t.after(async () => {
      if (server) await stopServe(server).catch(() => {});
      await dir.cleanup();
    });
    await mountTmpfs(fs, 8);
    const storage = join(fs, 'storage');
    server = await startServe({ storage, dir: dir.path, upstreams: [`docker.io=${proxy.url}`], logLevel: 'fatal' });
    const url = (d: string) => `${server!.cache}/v2/full/blobs/${d}`;
    const leftovers = async (what: string) => {
      // A finished fill links its blob into the repository in the background (a temp file for a
      // moment): wait for tmp/ to settle rather than race it.
      await waitFor(async () => (await readdir(join(storage, 'tmp'))).length === 0, { what: `tmp/ to be empty after ${what}`, timeoutMs: 5_000 });
      for (const d of [digests.huge, digests.medium]) assert.equal(await stat(blobPath(storage, d)).catch(() => undefined), undefined, `blob ${d} stored after ${what}`);
    };

    // One blob cached while there is room, to read back with the disk full.
    const s = await fetchRaw(url(digests.small));
    assert.equal(s.status, 200);
    assert.equal(sha256(s.body), digests.small);

    // 12 MiB into less than 8: refused before any answer starts.
    const free = await freeBytes(fs);
    assert.ok(free < huge.byteLength, `${mib(free)} free`);
    const h = await fetchRaw(url(digests.huge));
    assert.equal(h.status, 507, `a blob larger than the free space: ${h.status} ${h.status === 200 ? `(then ${h.body.byteLength} of ${huge.byteLength} bytes)` : h.body.toString().slice(0, 200)}`);
    assert.match(String(h.headers['content-type']), /^application\/json/);
    assert.equal(errorCode(h), 'UNAVAILABLE');
    await leftovers('the refused fill');

    // 5 MiB fits when the fill starts; the disk fills up under it once the client has 1 MiB.
    const filler = join(fs, 'filler');
    let filling: Promise<number> | undefined;
    const m = await fetchRaw(url(digests.medium), {
      onData: (n) => {
        if (n >= 1024 * 1024) filling ??= fillUp(filler);
      },
    });
    assert.ok(filling, 'the client received 1 MiB before the fill failed');
    t.diagnostic(`filled ${mib(await filling)} under the running fill`);
    assert.equal(m.status, 200, 'headers were sent before the disk filled');
    assert.equal(m.complete, false, 'the client can tell the body is incomplete');
    assert.ok(m.body.byteLength < medium.byteLength, `the client received ${m.body.byteLength} of ${medium.byteLength} bytes`);
    assert.ok(m.error, 'the exchange ended with an error');
    await waitFor(async () => (await readdir(join(storage, 'tmp'))).length === 0, { what: 'the failed fill to remove its temp file', timeoutMs: 10_000 });
    await leftovers('the fill that ran out of space');

    // With the disk full, cached blobs are served from the store; a new fill is refused cleanly.
    const again = await fetchRaw(url(digests.small));
    assert.equal(again.status, 200);
    assert.equal(sha256(again.body), digests.small);
    const refused = await fetchRaw(url(digests.medium));
    assert.notEqual(refused.status === 200 && refused.complete, true, 'no complete 200 with the disk full');
    assert.equal(refused.status, 507, `a fill with the disk full: ${refused.status}`);
    await leftovers('a fill with the disk full');

    // Room again: the same blob fills whole and is kept.
    await rm(filler);
    const ok = await fetchRaw(url(digests.medium));
    assert.equal(ok.status, 200);
    assert.equal(ok.complete, true);
    assert.equal(sha256(ok.body), digests.medium);
    await waitFor(async () => (await stat(blobPath(storage, digests.medium)).catch(() => undefined))?.size === medium.byteLength, { what: 'the filled blob in the store' });
    // The repository link is written through tmp/ in the background, after the blob.
    await waitFor(async () => (await readdir(join(storage, 'tmp'))).length === 0, { what: 'tmp/ to be empty after the fill with room', timeoutMs: 5_000 });
  });
});
