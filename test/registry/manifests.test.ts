// Manifest routes through app.inject: byte-exact storage, tags and digests, HEAD, delete,
// subjects and the referrers API, tag and catalog listings.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST } from '../../src/oci/index.js';
import { assertError, imageManifest, pushBlob, pushImage, sha256, sha512, testApp } from './fixtures.js';

test('a manifest is served byte-exact with its own media type, digest and ETag', async (t) => {
  const { app } = await testApp(t);
  const img = await pushImage(app, 'a', 'v1');
  for (const ref of ['v1', img.digest]) {
    const res = await app.inject({ method: 'GET', url: `/v2/a/manifests/${ref}` });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.rawPayload, img.manifest);
    assert.equal(res.headers['content-type'], OCI_MANIFEST);
    assert.equal(res.headers['docker-content-digest'], img.digest);
    assert.equal(res.headers.etag, `"${img.digest}"`);
    assert.equal(res.headers['content-length'], String(img.manifest.length));
  }
});

test('PUT answers 201 with Location by digest and Docker-Content-Digest', async (t) => {
  const { app } = await testApp(t);
  const cfg = await pushBlob(app, 'a', '{}');
  const body = imageManifest({ digest: cfg, size: 2 }, []);
  const res = await app.inject({ method: 'PUT', url: '/v2/a/manifests/v1', payload: body, headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(res.statusCode, 201);
  assert.equal(res.headers.location, `/v2/a/manifests/${sha256(body)}`);
  assert.equal(res.headers['docker-content-digest'], sha256(body));
  assert.equal(res.body, '');
});

test('HEAD of a manifest has the length and digest and no body', async (t) => {
  const { app } = await testApp(t);
  const img = await pushImage(app, 'a', 'v1');
  const res = await app.inject({ method: 'HEAD', url: '/v2/a/manifests/v1' });
  assert.equal(res.statusCode, 200);
  assert.equal(res.body, '');
  assert.equal(res.headers['content-length'], String(img.manifest.length));
  assert.equal(res.headers['docker-content-digest'], img.digest);
});

test('a manifest pushed by its sha512 digest is served under it', async (t) => {
  const { app } = await testApp(t);
  const cfg = await pushBlob(app, 'a', '{"x":1}', sha512('{"x":1}'));
  const body = imageManifest({ digest: cfg, size: 7 }, []);
  const d = sha512(body);
  const put = await app.inject({ method: 'PUT', url: `/v2/a/manifests/${d}`, payload: body, headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(put.statusCode, 201, put.body);
  assert.equal(put.headers['docker-content-digest'], d);
  const get = await app.inject({ method: 'GET', url: `/v2/a/manifests/${d}` });
  assert.deepEqual(get.rawPayload, body);
  assert.equal(get.headers['docker-content-digest'], d);
});

test('a mediaType field that contradicts the Content-Type is MANIFEST_INVALID', async (t) => {
  const { app } = await testApp(t);
  const cfg = await pushBlob(app, 'a', '{}');
  const body = imageManifest({ digest: cfg, size: 2 }, []);
  assertError(await app.inject({ method: 'PUT', url: '/v2/a/manifests/v1', payload: body, headers: { 'content-type': DOCKER_MANIFEST } }), 400, 'MANIFEST_INVALID');
});

test('an index over pushed manifests is accepted and served as an index', async (t) => {
  const { app } = await testApp(t);
  const a = await pushImage(app, 'multi', 'amd64', 'amd64');
  const b = await pushImage(app, 'multi', 'arm64', 'arm64');
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: a.digest, size: a.manifest.length, platform: { architecture: 'amd64', os: 'linux' } },
        { mediaType: OCI_MANIFEST, digest: b.digest, size: b.manifest.length, platform: { architecture: 'arm64', os: 'linux' } },
      ],
    }),
  );
  const put = await app.inject({ method: 'PUT', url: '/v2/multi/manifests/latest', payload: index, headers: { 'content-type': OCI_INDEX } });
  assert.equal(put.statusCode, 201, put.body);
  const get = await app.inject({ method: 'GET', url: '/v2/multi/manifests/latest' });
  assert.equal(get.headers['content-type'], OCI_INDEX);
  assert.deepEqual(get.rawPayload, index);
});

test('DELETE by tag removes the tag; DELETE by digest removes the manifest and its tags', async (t) => {
  const { app } = await testApp(t);
  const img = await pushImage(app, 'a', 'v1');
  await app.inject({ method: 'PUT', url: '/v2/a/manifests/v2', payload: img.manifest, headers: { 'content-type': OCI_MANIFEST } });
  assert.equal((await app.inject({ method: 'DELETE', url: '/v2/a/manifests/v1' })).statusCode, 202);
  assertError(await app.inject({ method: 'GET', url: '/v2/a/manifests/v1' }), 404, 'MANIFEST_UNKNOWN');
  assert.equal((await app.inject({ method: 'GET', url: '/v2/a/manifests/v2' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'DELETE', url: `/v2/a/manifests/${img.digest}` })).statusCode, 202);
  assertError(await app.inject({ method: 'GET', url: '/v2/a/manifests/v2' }), 404, 'MANIFEST_UNKNOWN');
  assertError(await app.inject({ method: 'GET', url: `/v2/a/manifests/${img.digest}` }), 404, 'MANIFEST_UNKNOWN');
  assert.deepEqual(JSON.parse((await app.inject({ method: 'GET', url: '/v2/a/tags/list' })).body), { name: 'a', tags: [] });
});

test('a manifest with a subject answers OCI-Subject and is listed among the subject\'s referrers', async (t) => {
  const { app } = await testApp(t);
  const img = await pushImage(app, 'a', 'v1');
  const subject = { mediaType: OCI_MANIFEST, digest: img.digest, size: img.manifest.length };
  const empty = await pushBlob(app, 'a', '{}');
  const sig = imageManifest({ digest: empty, size: 2 }, [], { artifactType: 'application/vnd.example.sig', subject, annotations: { who: 'me' } });
  const sbom = imageManifest({ digest: empty, size: 2 }, [], { artifactType: 'application/vnd.example.sbom', subject });
  for (const body of [sig, sbom]) {
    const put = await app.inject({ method: 'PUT', url: `/v2/a/manifests/${sha256(body)}`, payload: body, headers: { 'content-type': OCI_MANIFEST } });
    assert.equal(put.statusCode, 201);
    assert.equal(put.headers['oci-subject'], img.digest);
  }
  const all = await app.inject({ method: 'GET', url: `/v2/a/referrers/${img.digest}` });
  assert.equal(all.statusCode, 200);
  assert.equal(all.headers['content-type'], OCI_INDEX);
  const listed = JSON.parse(all.body) as { schemaVersion: number; mediaType: string; manifests: Array<{ digest: string; artifactType: string; annotations?: unknown }> };
  assert.equal(listed.schemaVersion, 2);
  assert.equal(listed.mediaType, OCI_INDEX);
  assert.deepEqual(listed.manifests.map((m) => m.digest).sort(), [sha256(sig), sha256(sbom)].sort());
  const filtered = await app.inject({ method: 'GET', url: `/v2/a/referrers/${img.digest}?artifactType=application/vnd.example.sig` });
  assert.equal(filtered.headers['oci-filters-applied'], 'artifactType');
  const only = JSON.parse(filtered.body).manifests;
  assert.deepEqual(only, [{ mediaType: OCI_MANIFEST, digest: sha256(sig), size: sig.length, artifactType: 'application/vnd.example.sig', annotations: { who: 'me' } }]);
  // Deleting the referrer removes it from the list.
  await app.inject({ method: 'DELETE', url: `/v2/a/manifests/${sha256(sig)}` });
  const after = JSON.parse((await app.inject({ method: 'GET', url: `/v2/a/referrers/${img.digest}` })).body).manifests;
  assert.deepEqual(after.map((m: { digest: string }) => m.digest), [sha256(sbom)]);
});

test('referrers of a subject nobody refers to is an empty index, not an error', async (t) => {
  const { app } = await testApp(t);
  const res = await app.inject({ method: 'GET', url: `/v2/a/referrers/${sha256('x')}` });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(JSON.parse(res.body), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
});

test('tags/list and _catalog paginate with n and last and a Link to the next page', async (t) => {
  const { app } = await testApp(t);
  const img = await pushImage(app, 'a', 't1');
  for (const tag of ['t2', 't3']) await app.inject({ method: 'PUT', url: `/v2/a/manifests/${tag}`, payload: img.manifest, headers: { 'content-type': OCI_MANIFEST } });
  const first = await app.inject({ method: 'GET', url: '/v2/a/tags/list?n=2' });
  assert.deepEqual(JSON.parse(first.body), { name: 'a', tags: ['t1', 't2'] });
  assert.equal(first.headers.link, '</v2/a/tags/list?n=2&last=t2>; rel="next"');
  const second = await app.inject({ method: 'GET', url: '/v2/a/tags/list?n=2&last=t2' });
  assert.deepEqual(JSON.parse(second.body), { name: 'a', tags: ['t3'] });
  assert.equal(second.headers.link, undefined);
  await pushImage(app, 'b/c', 'v1');
  await pushImage(app, 'b', 'v1');
  const catalog = await app.inject({ method: 'GET', url: '/v2/_catalog?n=2' });
  assert.deepEqual(JSON.parse(catalog.body), { repositories: ['a', 'b'] });
  assert.equal(catalog.headers.link, '</v2/_catalog?n=2&last=b>; rel="next"');
  assert.deepEqual(JSON.parse((await app.inject({ method: 'GET', url: '/v2/_catalog?last=b' })).body), { repositories: ['b/c'] });
});

test("an index whose entries are layer blobs (BuildKit's registry cache export) is accepted when the blobs are in the repository", async (t) => {
  const { app, storage } = await testApp(t);
  const layer = await pushBlob(app, 'cache', 'layer bytes');
  const cacheConfig = await pushBlob(app, 'cache', '{"layers":[]}');
  const body = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer, size: 11, annotations: { 'buildkit/createdat': '2026-11-28T00:00:00Z' } },
      { mediaType: 'application/vnd.buildkit.cacheconfig.v0', digest: cacheConfig, size: 13 },
    ],
  }));
  const put = await app.inject({ method: 'PUT', url: '/v2/cache/manifests/buildcache', payload: body, headers: { 'content-type': OCI_INDEX } });
  assert.equal(put.statusCode, 201, put.body);
  const get = await app.inject({ method: 'GET', url: '/v2/cache/manifests/buildcache' });
  assert.deepEqual(get.rawPayload, body);
  // Garbage collection counts those entries as referenced.
  const gc = await storage.gc({ gracePeriodMs: 0 });
  assert.equal(gc.deleted, 0);
  assert.equal((await app.inject({ method: 'GET', url: `/v2/cache/blobs/${layer}` })).statusCode, 200);
});

test('an index entry with a blob media type that the repository lacks is MANIFEST_BLOB_UNKNOWN', async (t) => {
  const { app } = await testApp(t);
  const missing = sha256('never pushed');
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: missing, size: 12 }] }));
  const res = await app.inject({ method: 'PUT', url: '/v2/cache/manifests/buildcache', payload: body, headers: { 'content-type': OCI_INDEX } });
  assert.deepEqual(assertError(res, 400, 'MANIFEST_BLOB_UNKNOWN', 'PUT')?.detail, { digests: [missing] });
});
