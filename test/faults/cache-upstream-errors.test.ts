// Upstream error statuses, answered by the fault proxy in front of a real upstream: 503s the
// cache retries within its budget (and no further), persistent 5xx that open the circuit
// breaker so later requests fail fast without reaching the upstream, and 429 with Retry-After,
// which the cache passes on and honours instead of asking again.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { RunningServer, ServerOptions } from '../../src/server/index.js';
import { type Distribution, startDistribution } from '../helpers/distribution.js';
import { type FaultProxy, type RawResponse, fetchRaw, pushBlob, sha256, errorCode } from '../helpers/fault-proxy.js';
import { skipUnless } from '../helpers/tools.js';
import { cacheBehindFaults } from './cache-fixture.js';

const SIZE = 256 * 1024;
const BLOB_GET = /^\/v2\/library\/errors\/blobs\/sha256:/;
const UPSTREAM = /^\/v2\/library\/errors\//;
const RETRIES = 2;
/** Consecutive failures that open the breaker (circuit-breaker.ts default). */
const BREAKER_THRESHOLD = 5;

interface Fixture {
  proxy: FaultProxy;
  server: RunningServer;
  blobUrl: string;
}

describe('pull-through cache: upstream error statuses', { skip: skipUnless(['docker-registry']) }, () => {
  let upstream: Distribution;
  const blob = randomBytes(SIZE);
  let digest: string;

  before(async () => {
    upstream = await startDistribution();
    digest = await pushBlob(upstream.url, 'library/errors', blob);
  });
  after(() => upstream?.stop());

  async function setup(t: TestContext, opts: Partial<ServerOptions> = {}): Promise<Fixture> {
    const f = await cacheBehindFaults(t, upstream.url, { upstreamRetries: RETRIES, upstreamBackoffMs: 20, ...opts });
    return { proxy: f.proxy, server: f.server, blobUrl: `${f.server.cacheUrl}/v2/errors/blobs/${digest}` };
  }

  test('two 503s, then success: the cache retries within its budget and serves the right blob', async (t) => {
    const f = await setup(t);
    f.proxy.setRules([{ name: '503', method: 'GET', match: BLOB_GET, times: 2, fault: { kind: 'status', status: 503 } }]);
    const r = await fetchRaw(f.blobUrl);
    assert.equal(r.status, 200);
    assert.equal(r.complete, true);
    assert.equal(sha256(r.body), digest);
    assert.equal(f.proxy.hits('503'), 2);
    assert.equal(f.proxy.count({ method: 'GET', match: BLOB_GET }), 3, 'two failed attempts and one good one');
    // backoff 20 ms doubled per retry (with jitter): well under a second in all (the bound allows for a loaded CI box)
    assert.ok(r.endedAt - r.startedAt < 5_000, `took ${r.endedAt - r.startedAt} ms`);
    assert.equal(f.server.stats.snapshot().upstreams['docker.io']?.requests['GET 503'], 2);
  });

  test('503 beyond the retry budget: exactly 1 + retries upstream attempts, then 503 UNAVAILABLE to the client', async (t) => {
    const f = await setup(t);
    f.proxy.setRules([{ name: '503', method: 'GET', match: BLOB_GET, fault: { kind: 'status', status: 503 } }]);
    const r = await fetchRaw(f.blobUrl);
    assert.equal(r.status, 503);
    assert.equal(errorCode(r), 'UNAVAILABLE');
    assert.equal(f.proxy.hits('503'), 1 + RETRIES);
    assert.equal(f.proxy.count(), 1 + RETRIES, 'nothing else went upstream');
  });

  test('persistent 5xx open the circuit breaker: later requests fail fast and the upstream request count stops growing', async (t) => {
    // a long backoff, so that a request still retrying (not failing fast) shows in its duration
    const f = await setup(t, { upstreamBackoffMs: 400 });
    f.proxy.setRules([{ name: '5xx', match: UPSTREAM, fault: { kind: 'status', status: 502 } }]);
    const answers: RawResponse[] = [];
    for (let i = 0; i < 8; i++) answers.push(await fetchRaw(f.blobUrl));
    for (const r of answers) {
      assert.equal(r.status, 503);
      assert.equal(errorCode(r), 'UNAVAILABLE');
    }
    // 3 attempts for the first request, 2 more for the second (the breaker opens at 5 failures)
    assert.equal(f.proxy.count(), BREAKER_THRESHOLD, `upstream requests: ${f.proxy.count()}`);
    const took = (r: RawResponse) => r.endedAt - r.startedAt;
    assert.ok(took(answers[0]!) >= 600, `the first request retried with backoff (${took(answers[0]!)} ms)`);
    for (const r of answers.slice(2)) assert.ok(took(r) < 300, `an open breaker answers at once (${took(r)} ms)`);
    // The breaker is per upstream: a manifest request fails fast too, without reaching it.
    const m = await fetchRaw(`${f.server.cacheUrl}/v2/errors/manifests/latest`);
    assert.equal(m.status, 503);
    assert.equal(f.proxy.count(), BREAKER_THRESHOLD, 'still no new upstream request');
    // Healing the upstream does not matter until the cool-down ends: no trial request yet.
    f.proxy.setRules([]);
    assert.equal((await fetchRaw(f.blobUrl)).status, 503);
    assert.equal(f.proxy.count(), BREAKER_THRESHOLD);
  });

  test('429 with Retry-After: passed on to the client as TOOMANYREQUESTS with Retry-After, and the upstream is not asked again meanwhile', async (t) => {
    const f = await setup(t);
    f.proxy.setRules([{ name: '429', match: UPSTREAM, fault: { kind: 'status', status: 429, retryAfter: '30' } }]);
    const first = await fetchRaw(f.blobUrl);
    assert.equal(first.status, 429);
    assert.equal(errorCode(first), 'TOOMANYREQUESTS');
    const retryAfter = Number(first.headers['retry-after']);
    assert.ok(retryAfter > 25 && retryAfter <= 30, `Retry-After: ${first.headers['retry-after']}`);
    assert.equal(f.proxy.hits('429'), 1, 'a 429 is not retried');
    for (let i = 0; i < 5; i++) {
      const r = await fetchRaw(f.blobUrl);
      assert.equal(r.status, 429);
      assert.ok(Number(r.headers['retry-after']) > 0);
    }
    const m = await fetchRaw(`${f.server.cacheUrl}/v2/errors/manifests/latest`);
    assert.equal(m.status, 429);
    assert.equal(f.proxy.count(), 1, 'held off: one upstream request in all');
  });
});
