// Blobs no bigger than the cache's held-back tail (64 KiB: configs, small layers) whose
// upstream download fails: nothing of them can be streamed before the digest checks, so the
// cache answers only once it has: a clean 503 UNAVAILABLE (not a 400 DIGEST_INVALID, which
// blames the client, nor a cut connection) and, above all, never a complete wrong blob. The
// sharpest case: an upstream answering 200 with `Content-Length: 0` for a non-empty blob used to
// reach the client as a complete, empty 200 (regression test).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { RunningServer } from '../../src/server/index.js';
import { type Distribution, startDistribution } from '../helpers/distribution.js';
import { type Fault, type FaultProxy, fetchRaw, pushBlob, sha256, errorCode } from '../helpers/fault-proxy.js';
import { waitFor } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';
import { cacheBehindFaults } from './cache-fixture.js';

const SIZE = 3000;
const BLOB_GET = /^\/v2\/library\/small\/blobs\/sha256:/;

interface Fixture {
  proxy: FaultProxy;
  server: RunningServer;
  storage: string;
  blobUrl: string;
}

describe('pull-through cache: failed downloads of small blobs', { skip: skipUnless(['docker-registry']) }, () => {
  let upstream: Distribution;
  const blob = randomBytes(SIZE);
  let digest: string;

  before(async () => {
    upstream = await startDistribution();
    digest = await pushBlob(upstream.url, 'library/small', blob);
  });
  after(() => upstream?.stop());

  async function setup(t: TestContext): Promise<Fixture> {
    const f = await cacheBehindFaults(t, upstream.url, { upstreamRetries: 0 });
    return { ...f, blobUrl: `${f.server.cacheUrl}/v2/small/blobs/${digest}` };
  }

  /** The fault gives the client a 503 UNAVAILABLE (twice: nothing was cached), and the blob once it is gone. */
  async function assertCleanFailure(t: TestContext, fault: Fault): Promise<void> {
    const f = await setup(t);
    f.proxy.setRules([{ name: 'fault', method: 'GET', match: BLOB_GET, fault }]);
    for (let attempt = 1; attempt <= 2; attempt++) {
      const r = await fetchRaw(f.blobUrl);
      assert.equal(f.proxy.hits('fault'), attempt, 'went upstream again');
      assert.notEqual(sha256(r.body), digest);
      assert.equal(r.status, 503, `status ${r.status}, body ${r.body.toString('utf8').slice(0, 200)}`);
      assert.equal(r.complete, true, 'a whole error response, not a cut connection');
      assert.equal(errorCode(r), 'UNAVAILABLE');
      assert.equal(existsSync(join(f.storage, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7))), false);
      await waitFor(async () => (await readdir(join(f.storage, 'tmp'))).length === 0, { what: 'tmp/ to be empty', timeoutMs: 5_000 });
    }
    f.proxy.setRules([]);
    const ok = await fetchRaw(f.blobUrl);
    assert.equal(ok.status, 200);
    assert.equal(sha256(ok.body), digest);
  }

  test('upstream answers 200 with an empty body (Content-Length: 0) for a non-empty blob: 503, never an empty 200', async (t) => {
    await assertCleanFailure(t, { kind: 'status', status: 200, body: '' });
  });

  test('a small blob with wrong content: 503 UNAVAILABLE before any byte, not 400 DIGEST_INVALID', async (t) => {
    await assertCleanFailure(t, { kind: 'corrupt', offset: 100 });
  });

  test('a small blob cut short by a connection reset: 503 UNAVAILABLE', async (t) => {
    await assertCleanFailure(t, { kind: 'reset', afterBytes: 1000 });
  });

  test('a small blob truncated below its Content-Length: 503 UNAVAILABLE', async (t) => {
    await assertCleanFailure(t, { kind: 'truncate', afterBytes: SIZE - 1 });
  });
});
