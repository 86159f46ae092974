// An upstream that answers a manifest request with other bytes: the fault proxy, in front of a
// real upstream (Debian's distribution), answers the GET of one manifest by digest with another
// manifest's bytes (the upstream's own status and Docker-Content-Digest kept). The cache must
// compare what it received with the digest it asked for: it answers an error, never 200 with
// bytes of another digest, stores nothing under the name, and serves the right manifest once the
// upstream does. Likewise for a tag whose answer does not hash to the Docker-Content-Digest the
// upstream announced.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Distribution, startDistribution } from '../helpers/distribution.js';
import { errorCode, fetchRaw, sha256 } from '../helpers/fault-proxy.js';
import { ACCEPT_ALL_MANIFESTS, type TestImage, getManifest, seedImage } from '../helpers/upstream-images.js';
import { skipUnless } from '../helpers/tools.js';
import { cacheBehindFaults } from './cache-fixture.js';

const accept = { accept: ACCEPT_ALL_MANIFESTS };

describe('pull-through cache: an upstream answering a manifest request with other bytes', { skip: skipUnless(['docker-registry']) }, () => {
  let upstream: Distribution;
  let wanted: TestImage;
  let other: TestImage;

  before(async () => {
    upstream = await startDistribution();
    wanted = await seedImage(upstream.url, 'library/swapped', 'v1', { layers: 1, layerSize: 1024 });
    other = await seedImage(upstream.url, 'library/swapped', 'v2', { layers: 1, layerSize: 1024 });
    assert.notEqual(wanted.digest, other.digest);
  });
  after(() => upstream?.stop());

  test('a manifest asked for by digest and answered with another manifest: an error, never 200 with the other bytes; the right one once the upstream sends it', async (t) => {
    const f = await cacheBehindFaults(t, upstream.url, { upstreamRetries: 0 });
    f.proxy.setRules([{ name: 'swap', method: 'GET', match: new RegExp(`/manifests/${wanted.digest}$`), fault: { kind: 'replace', body: other.manifest } }]);
    const url = `${f.server.cacheUrl}/v2/swapped/manifests/${wanted.digest}`;

    const got = await fetchRaw(url, { headers: accept });
    assert.equal(f.proxy.hits('swap'), 1, 'the cache asked the upstream, which sent the other manifest');
    assert.ok(!(got.status === 200 && sha256(got.body) !== wanted.digest), `200 with bytes of ${sha256(got.body)} for ${wanted.digest}`);
    assert.ok(got.status >= 500, `an upstream failure, got ${got.status}: ${got.body.toString('utf8').slice(0, 300)}`);
    assert.equal(errorCode(got), 'UNAVAILABLE', got.body.toString('utf8'));
    assert.match(got.body.toString('utf8'), new RegExp(wanted.digest), 'the error names the digest asked for');

    // Nothing was kept under the name: a HEAD by digest asks again and does not answer 200 for it.
    const head = await fetchRaw(url, { method: 'HEAD', headers: accept });
    assert.notEqual(head.status, 200, `HEAD answered 200 (Docker-Content-Digest ${String(head.headers['docker-content-digest'])})`);
    assert.equal(f.proxy.hits('swap'), 2, 'the HEAD asked the upstream again: nothing was cached');

    // Once the upstream answers right, so does the cache.
    f.proxy.setRules([]);
    const right = await getManifest({ base: f.server.cacheUrl, name: 'swapped' }, wanted.digest);
    assert.deepEqual(right.body, wanted.manifest);
  });

  test('a tag whose manifest does not hash to the Docker-Content-Digest the upstream announced: an error, and the tag is not cached', async (t) => {
    const f = await cacheBehindFaults(t, upstream.url, { upstreamRetries: 0 });
    // The upstream announces v1's digest and sends v2's bytes.
    f.proxy.setRules([{ name: 'swap', method: 'GET', match: /\/manifests\/v1$/, fault: { kind: 'replace', body: other.manifest } }]);
    const got = await fetchRaw(`${f.server.cacheUrl}/v2/swapped/manifests/v1`, { headers: accept });
    assert.equal(f.proxy.hits('swap'), 1);
    assert.ok(got.status >= 500, `an upstream failure, got ${got.status} (${sha256(got.body)}): ${got.body.toString('utf8').slice(0, 300)}`);
    assert.equal(errorCode(got), 'UNAVAILABLE');

    f.proxy.setRules([]);
    const right = await getManifest({ base: f.server.cacheUrl, name: 'swapped' }, 'v1');
    assert.equal(right.digest, wanted.digest);
  });
});
