// What a client of the cache gets when the upstream refuses a request for good (a 4xx other
// than 401, 404 and 429): a 4xx it will not retry, with the registry error code the upstream
// named when it is one a client can act on, DENIED otherwise; never a 503, which tells docker
// and containerd to try again. A one-component Docker Hub name that `library/` makes longer
// than 255 characters is refused here, without asking the upstream. The upstream is Debian's
// distribution, behind the fault proxy where it must answer a status it would not answer itself.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startDistribution } from '../helpers/distribution.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { pullImage, seedImage } from '../helpers/upstream-images.js';
import { skipUnless } from '../helpers/tools.js';
import { cleanup, expectError, logWindow, show, startCache } from './support.js';

const skip = skipUnless(['docker-registry']);

const envelope = (code: string, message: string) => JSON.stringify({ errors: [{ code, message }] });

test('a one-component name that library/ makes longer than 255 characters is NAME_INVALID, and the upstream is not asked', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution());
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });
  const window = await logWindow(upstream);
  const name = 'a'.repeat(250);
  for (const path of [`manifests/latest`, `blobs/sha256:${'0'.repeat(64)}`]) {
    const e = await expectError('GET', `${cache.cacheUrl}/v2/${name}/${path}`);
    assert.deepEqual([e.status, e.code], [400, 'NAME_INVALID'], e.text);
  }
  assert.equal((await window.entries()).filter((e) => e.path.includes(name)).length, 0, show(await window.entries()));
});

test('an upstream 403 with DENIED in its envelope reaches the client as 403 DENIED, for a manifest and for a blob', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution());
  const image = await seedImage(upstream.url, 'library/secret', 'v1');
  const proxy = await startFaultProxy(upstream.url, [
    { match: /\/v2\/library\/secret\//, fault: { kind: 'status', status: 403, body: envelope('DENIED', 'requested access to the resource is denied') } },
  ]);
  t.after(() => proxy.close());
  const cache = await startCache(t, { upstreams: [`docker.io=${proxy.url}`], upstreamRetries: 2, upstreamBackoffMs: 10 });
  const m = await expectError('GET', `${cache.cacheUrl}/v2/secret/manifests/v1`);
  assert.deepEqual([m.status, m.code], [403, 'DENIED'], m.text);
  const b = await expectError('GET', `${cache.cacheUrl}/v2/secret/blobs/${image.layers[0]!.digest}`);
  assert.deepEqual([b.status, b.code], [403, 'DENIED'], b.text);
  // A refusal is final: asked once each, not retried like a 5xx.
  assert.equal(proxy.count({ method: 'GET' }), 2, JSON.stringify(proxy.requests.map((r) => `${r.method} ${r.url}`)));
});

test('an upstream 400 NAME_INVALID is passed on; a 4xx without an envelope becomes DENIED; a 5xx stays 503', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution());
  const proxy = await startFaultProxy(upstream.url, [
    { match: /\/v2\/library\/bad\//, fault: { kind: 'status', status: 400, body: envelope('NAME_INVALID', 'invalid repository name') } },
    { match: /\/v2\/library\/gone\//, fault: { kind: 'status', status: 410, body: 'gone' } },
    { match: /\/v2\/library\/broken\//, fault: { kind: 'status', status: 502, body: 'bad gateway' } },
  ]);
  t.after(() => proxy.close());
  const cache = await startCache(t, { upstreams: [`docker.io=${proxy.url}`], upstreamRetries: 0, upstreamBackoffMs: 10 });
  const bad = await expectError('GET', `${cache.cacheUrl}/v2/bad/manifests/v1`);
  assert.deepEqual([bad.status, bad.code], [400, 'NAME_INVALID'], bad.text);
  const gone = await expectError('GET', `${cache.cacheUrl}/v2/gone/manifests/v1`);
  assert.deepEqual([gone.status, gone.code], [403, 'DENIED'], gone.text);
  assert.match(gone.message, /docker\.io answered 410/);
  const broken = await expectError('GET', `${cache.cacheUrl}/v2/broken/manifests/v1`);
  assert.deepEqual([broken.status, broken.code], [503, 'UNAVAILABLE'], broken.text);
});

test('a cached tag whose revalidation the upstream now refuses with 403 is served stale', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution());
  const image = await seedImage(upstream.url, 'library/app', 'v1');
  const proxy = await startFaultProxy(upstream.url);
  t.after(() => proxy.close());
  const cache = await startCache(t, { upstreams: [`docker.io=${proxy.url}`], tagTtlMs: 0, upstreamRetries: 0 });
  await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1');
  proxy.setRules([{ match: /\/manifests\//, fault: { kind: 'status', status: 403, body: envelope('DENIED', 'denied') } }]);
  const again = await pullImage({ base: cache.cacheUrl, name: 'app' }, 'v1');
  assert.equal(again.digest, image.digest);
});
