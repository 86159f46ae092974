// How the pull-through cache streams a blob it is still downloading, with a slow upstream
// (the fault proxy throttles distribution's answer): a client joining mid-download is served
// as the download progresses, not after it ends; a client that goes away does not abort the
// fill, which still ends verified in the store; and a Range request on a cached blob is
// answered 206 from the store without asking the upstream anything.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { RunningServer } from '../../src/server/index.js';
import { type Distribution, startDistribution } from '../helpers/distribution.js';
import { type FaultProxy, type RawResponse, fetchRaw, pushBlob, sha256 } from '../helpers/fault-proxy.js';
import { waitFor } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';
import { cacheBehindFaults } from './cache-fixture.js';

const SIZE = 2 * 1024 * 1024;
/** 2 MiB at 1 MiB/s: the download takes about 2 s. */
const SLOW = { kind: 'throttle', bytesPerSecond: 1024 * 1024 } as const;
const BLOB_GET = /^\/v2\/library\/streaming\/blobs\/sha256:/;

interface Fixture {
  proxy: FaultProxy;
  server: RunningServer;
  storage: string;
  blobUrl: string;
}

describe('pull-through cache: streaming from a slow upstream', { skip: skipUnless(['docker-registry']) }, () => {
  let upstream: Distribution;
  const blob = randomBytes(SIZE);
  let digest: string;

  before(async () => {
    upstream = await startDistribution();
    digest = await pushBlob(upstream.url, 'library/streaming', blob);
  });
  after(() => upstream?.stop());

  async function setup(t: TestContext): Promise<Fixture> {
    const f = await cacheBehindFaults(t, upstream.url);
    return { ...f, blobUrl: `${f.server.cacheUrl}/v2/streaming/blobs/${digest}` };
  }

  const blobFile = (storage: string) => join(storage, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
  const upstreamGets = (f: Fixture) => f.proxy.count({ method: 'GET', match: BLOB_GET });

  function assertWhole(r: RawResponse, who: string): void {
    assert.equal(r.status, 200, who);
    assert.equal(r.complete, true, who);
    assert.equal(r.body.length, SIZE, who);
    assert.equal(sha256(r.body), digest, who);
  }

  test('slow upstream: a second client joining mid-download gets its first bytes long before the download ends', async (t) => {
    const f = await setup(t);
    f.proxy.setRules([{ name: 'slow', method: 'GET', match: BLOB_GET, fault: SLOW }]);
    let joined: Promise<RawResponse> | undefined;
    let joinedAt = 0;
    const first = fetchRaw(f.blobUrl, {
      onData: (n) => {
        if (joined === undefined && n >= 128 * 1024) {
          joinedAt = Date.now();
          joined = fetchRaw(f.blobUrl);
        }
      },
    });
    const a = await first;
    assert.ok(joined, 'the first client received data while the download ran');
    const b = await joined;
    assertWhole(a, 'first client');
    assertWhole(b, 'latecomer');
    assert.equal(upstreamGets(f), 1, 'one upstream download for both clients');
    const download = f.proxy.requests.find((e) => e.rule === 'slow')!;
    assert.equal(download.outcome, 'complete');
    const fillEnded = download.finishedAt!;
    assert.ok(joinedAt < fillEnded - 1000, `the latecomer joined well before the end (${fillEnded - joinedAt} ms before)`);
    // Served as the download progresses (from byte 0, up to what has arrived but the held-back
    // tail), not once it ends: its first byte comes at once, long before the end.
    assert.ok(b.firstByteAt! < fillEnded - 500, `the latecomer's first byte came ${fillEnded - b.firstByteAt!} ms before the download ended`);
    const repo = f.server.stats.snapshot().repositories['docker.io/library/streaming'];
    assert.equal(repo?.blobMisses, 2);
    assert.equal(repo?.blobJoins, 1, 'the second request joined the first download');
  });

  test('a client that disconnects mid-download does not abort the cache fill: the blob ends up stored and verified', async (t) => {
    const f = await setup(t);
    f.proxy.setRules([{ name: 'slow', method: 'GET', match: BLOB_GET, fault: SLOW }]);
    const gone = await fetchRaw(f.blobUrl, { abortAfterBytes: 256 * 1024 });
    assert.equal(gone.complete, false);
    assert.ok(gone.body.length < SIZE);
    const stored = await waitFor(() => readFile(blobFile(f.storage)), { what: 'the blob to be stored', timeoutMs: 10_000 });
    assert.equal(sha256(stored), digest);
    const download = f.proxy.requests.find((e) => e.rule === 'slow')!;
    assert.equal(download.outcome, 'complete', 'the upstream download ran to the end');
    assert.equal(download.bodyBytes, SIZE);
    // (the repository link is written through tmp/ just after the blob is published)
    await waitFor(async () => (await readdir(join(f.storage, 'tmp'))).length === 0, { what: 'tmp/ to be empty', timeoutMs: 5_000 });
    const again = await fetchRaw(f.blobUrl);
    assertWhole(again, 'the next client');
    assert.equal(upstreamGets(f), 1, 'the next client was served from the store');
  });

  test('a Range request on a cached blob is answered 206 from the store, with zero upstream requests', async (t) => {
    const f = await setup(t);
    assertWhole(await fetchRaw(f.blobUrl), 'the filling request');
    await waitFor(() => readFile(blobFile(f.storage)).then(() => true), { what: 'the blob to be stored' });
    const before = f.proxy.requests.length;
    const logBefore = (await upstream.accessLog()).length;
    const cases: Array<[string, number, number]> = [
      ['bytes=1000-1999', 1000, 1999],
      [`bytes=${SIZE - 100}-`, SIZE - 100, SIZE - 1],
      ['bytes=-4096', SIZE - 4096, SIZE - 1],
    ];
    for (const [range, start, end] of cases) {
      const r = await fetchRaw(f.blobUrl, { headers: { range } });
      assert.equal(r.status, 206, range);
      assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${SIZE}`, range);
      assert.equal(Number(r.headers['content-length']), end - start + 1, range);
      assert.ok(r.body.equals(blob.subarray(start, end + 1)), `${range}: the right bytes`);
    }
    assert.equal(f.proxy.requests.length, before, 'no request reached the fault proxy');
    assert.equal((await upstream.accessLog()).length, logBefore, 'nor the upstream');
  });
});
