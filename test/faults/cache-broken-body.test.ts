// Upstream blob bodies that break off or lie, between a real upstream (distribution) and the
// pull-through cache, injected by the fault proxy: a connection reset mid-blob, a body
// truncated below its Content-Length, and same-length wrong content. In every case the client
// gets an error or correct data, never a complete wrong blob; nothing partial or unverified is
// left in the store (no file at the digest's path, tmp/ empty); and the next request goes
// upstream again, succeeding once the fault is gone.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { RunningServer } from '../../src/server/index.js';
import { type Distribution, startDistribution } from '../helpers/distribution.js';
import { type FaultProxy, type RawResponse, fetchRaw, pushBlob, sha256, errorCode } from '../helpers/fault-proxy.js';
import { waitFor } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';
import { cacheBehindFaults } from './cache-fixture.js';

/** The cache withholds this many final bytes of a blob until its digest checks (blob-fill.ts). */
const HOLDBACK = 64 * 1024;
const SIZE = 1536 * 1024;
const BLOB_GET = /^\/v2\/library\/faults\/blobs\/sha256:/;

interface Fixture {
  proxy: FaultProxy;
  server: RunningServer;
  storage: string;
  blobUrl: string;
}

describe('pull-through cache: broken upstream blob bodies', { skip: skipUnless(['docker-registry']) }, () => {
  let upstream: Distribution;
  const blob = randomBytes(SIZE);
  let digest: string;

  before(async () => {
    upstream = await startDistribution();
    digest = await pushBlob(upstream.url, 'library/faults', blob);
  });
  after(() => upstream?.stop());

  /** A fault proxy in front of the upstream and a fresh cache (no retries) behind it. */
  async function setup(t: TestContext): Promise<Fixture> {
    const f = await cacheBehindFaults(t, upstream.url, { upstreamRetries: 0, upstreamBackoffMs: 10 });
    return { ...f, blobUrl: `${f.server.cacheUrl}/v2/faults/blobs/${digest}` };
  }

  const blobFile = (storage: string) => join(storage, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));

  /** The client got either an error with a correct strict prefix of the blob, or the whole correct blob. */
  function assertNeverWrong(r: RawResponse): 'error' | 'ok' {
    if (r.status === 200 && r.complete) {
      assert.equal(sha256(r.body), digest, 'a complete 200 body must be the right blob');
      return 'ok';
    }
    assert.ok(r.body.length < SIZE, `an interrupted response carries less than the blob (${r.body.length} bytes)`);
    assert.notEqual(sha256(r.body), digest);
    return 'error';
  }

  /** Nothing of the failed fill is left: no blob at the digest's path (unless it verified), tmp/ empty. */
  async function assertNothingPartial(f: Fixture, outcome: 'error' | 'ok'): Promise<void> {
    await waitFor(async () => (await readdir(join(f.storage, 'tmp')).catch(() => [])).length === 0, { what: 'tmp/ to be empty', timeoutMs: 5_000 });
    if (outcome === 'ok') assert.equal(sha256(await readFile(blobFile(f.storage))), digest);
    else assert.equal(existsSync(blobFile(f.storage)), false, 'no file at the blob path after a failed fill');
  }

  /** A request without faults succeeds, stores the verified blob, and the next is served locally. */
  async function assertRecovers(f: Fixture, upstreamGetsBefore: number): Promise<void> {
    const r = await fetchRaw(f.blobUrl);
    assert.equal(r.status, 200);
    assert.equal(r.complete, true);
    assert.equal(sha256(r.body), digest);
    assert.equal(f.proxy.count({ method: 'GET', match: BLOB_GET }), upstreamGetsBefore + 1, 'the retry went upstream again');
    await assertNothingPartial(f, 'ok');
    const again = await fetchRaw(f.blobUrl);
    assert.equal(sha256(again.body), digest);
    assert.equal(f.proxy.count({ method: 'GET', match: BLOB_GET }), upstreamGetsBefore + 1, 'served from the store');
  }

  test('upstream resets the connection mid-blob: an error (never a wrong blob), nothing stored, the next request fetches again', async (t) => {
    const f = await setup(t);
    f.proxy.setRules([{ name: 'reset', method: 'GET', match: BLOB_GET, times: 1, fault: { kind: 'reset', afterBytes: SIZE / 2 } }]);
    const r = await fetchRaw(f.blobUrl);
    assert.equal(f.proxy.hits('reset'), 1);
    assert.equal(f.proxy.requests.find((e) => e.rule === 'reset')?.outcome, 'reset');
    const outcome = assertNeverWrong(r);
    if (outcome === 'error' && r.status === 200) {
      assert.ok(r.body.length <= SIZE / 2, `no more than the upstream sent before the reset (${r.body.length})`);
      assert.ok(blob.subarray(0, r.body.length).equals(r.body), 'what arrived is a prefix of the blob');
    } else if (outcome === 'error') {
      // On a busy machine the reset can come before the first byte was readable: then the
      // answer had not begun, and is a clean error instead.
      assert.equal(r.status, 503, r.body.toString().slice(0, 200));
      assert.equal(errorCode(r), 'UNAVAILABLE');
    }
    await assertNothingPartial(f, outcome);
    if (outcome === 'error') await assertRecovers(f, 1);
  });

  test('upstream resets the connection after the headers, before any body byte: a clean 503 UNAVAILABLE, nothing stored', async (t) => {
    const f = await setup(t);
    // The download has begun (200 and Content-Length arrived) but no byte could go to the client,
    // so neither did the client's headers: the failure can still be answered properly.
    f.proxy.setRules([{ name: 'reset', method: 'GET', match: BLOB_GET, times: 1, fault: { kind: 'reset', afterBytes: 0 } }]);
    const r = await fetchRaw(f.blobUrl);
    assert.equal(f.proxy.requests.find((e) => e.rule === 'reset')?.outcome, 'reset');
    assert.equal(r.status, 503, `status ${r.status}: ${r.body.toString('utf8').slice(0, 200)}`);
    assert.equal(r.complete, true, 'a whole error response, not a cut connection');
    assert.match(r.body.toString('utf8'), /"code":"UNAVAILABLE"/);
    await assertNothingPartial(f, 'error');
    await assertRecovers(f, 1);
  });

  test('upstream truncates the body below its Content-Length: an error, nothing stored, the next request fetches again', async (t) => {
    const f = await setup(t);
    f.proxy.setRules([{ name: 'truncate', method: 'GET', match: BLOB_GET, times: 1, fault: { kind: 'truncate', afterBytes: SIZE - 1000 } }]);
    const r = await fetchRaw(f.blobUrl);
    assert.equal(f.proxy.requests.find((e) => e.rule === 'truncate')?.outcome, 'truncated');
    const outcome = assertNeverWrong(r);
    if (outcome === 'error') {
      assert.ok(r.body.length <= SIZE - HOLDBACK, `the final ${HOLDBACK} bytes were held back (${r.body.length} arrived)`);
      assert.ok(blob.subarray(0, r.body.length).equals(r.body), 'what arrived is a prefix of the blob');
    }
    await assertNothingPartial(f, outcome);
    if (outcome === 'error') await assertRecovers(f, 1);
  });

  test('upstream sends same-length wrong content: the client connection is destroyed before the final bytes, the blob is never stored or served', async (t) => {
    const f = await setup(t);
    // Only the very last byte is wrong: everything before it is what the client would get anyway.
    f.proxy.setRules([{ name: 'corrupt', method: 'GET', match: BLOB_GET, fault: { kind: 'corrupt', offset: -1 } }]);
    for (let attempt = 1; attempt <= 2; attempt++) {
      const r = await fetchRaw(f.blobUrl);
      assert.equal(f.proxy.requests.filter((e) => e.rule === 'corrupt').at(-1)?.outcome, 'complete', 'the proxy sent the whole (wrong) body');
      assert.equal(r.status, 200, 'headers went out before the digest could be checked');
      assert.equal(r.complete, false, 'the body was cut off');
      assert.ok(r.error, 'the client saw the connection fail');
      assert.ok(r.body.length <= SIZE - HOLDBACK, `the final ${HOLDBACK} bytes were held back (${r.body.length} arrived)`);
      assert.ok(blob.subarray(0, r.body.length).equals(r.body));
      assert.notEqual(sha256(r.body), digest);
      await assertNothingPartial(f, 'error');
      assert.equal(f.proxy.count({ method: 'GET', match: BLOB_GET }), attempt, 'a blob that failed verification is fetched again, not served');
    }
    f.proxy.setRules([]);
    await assertRecovers(f, 2);
  });
});
