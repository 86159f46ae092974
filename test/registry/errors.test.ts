// Every error path of the registry port answers the OCI error envelope with the right code
// and status, carries the API version header, and never shows a stack trace or a path.
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { test } from 'node:test';
import { OCI_MANIFEST } from '../../src/oci/index.js';
import { assertApiVersion, assertError, imageManifest, pushBlob, pushImage, sha256, testApp } from './fixtures.js';

const LONG = 'a'.repeat(300);
const D = sha256('nothing');
const UUID = '00000000-0000-4000-8000-000000000000';

test('unknown routes answer 404 with the envelope', async (t) => {
  const { app } = await testApp(t);
  for (const [method, url] of [
    ['GET', '/'],
    ['GET', '/nope'],
    ['GET', '/v2/a/unknown/thing'],
    ['GET', '/v1/_ping'],
    ['POST', '/v2/a/manifests/latest'],
    ['PATCH', '/v2/'],
    ['DELETE', '/v2/_catalog'],
  ] as const) {
    const res = await app.inject({ method, url });
    assertError(res, 404, 'UNSUPPORTED');
  }
});

test('a repository name of 300 characters is NAME_INVALID (400) on every route', async (t) => {
  const { app } = await testApp(t);
  for (const [method, url] of [
    ['GET', `/v2/${LONG}/manifests/latest`],
    ['HEAD', `/v2/${LONG}/manifests/latest`],
    ['PUT', `/v2/${LONG}/manifests/latest`],
    ['DELETE', `/v2/${LONG}/manifests/latest`],
    ['GET', `/v2/${LONG}/blobs/${D}`],
    ['HEAD', `/v2/${LONG}/blobs/${D}`],
    ['DELETE', `/v2/${LONG}/blobs/${D}`],
    ['POST', `/v2/${LONG}/blobs/uploads/`],
    ['PATCH', `/v2/${LONG}/blobs/uploads/${UUID}`],
    ['PUT', `/v2/${LONG}/blobs/uploads/${UUID}?digest=${D}`],
    ['GET', `/v2/${LONG}/blobs/uploads/${UUID}`],
    ['DELETE', `/v2/${LONG}/blobs/uploads/${UUID}`],
    ['GET', `/v2/${LONG}/tags/list`],
    ['GET', `/v2/${LONG}/referrers/${D}`],
    ['GET', `/v2/a/${LONG}/manifests/latest`],
  ] as const) {
    const res = await app.inject({ method, url, payload: method === 'PUT' || method === 'PATCH' ? 'x' : undefined });
    assertError(res, 400, 'NAME_INVALID', method);
  }
});

// Dot segments are sent over a real socket in real-socket.test.ts: inject normalizes them away.
test('other invalid names are NAME_INVALID: upper case, leading underscore, encoded slashes around nothing', async (t) => {
  const { app } = await testApp(t);
  for (const name of ['Upper', '_a', 'a/_layers', 'a%2F..%2Fb', 'a%2F', 'a.', 'a___b']) {
    assertError(await app.inject({ method: 'GET', url: `/v2/${name}/tags/list` }), 400, 'NAME_INVALID');
  }
});

test('an encoded slash in a name reads as a slash', async (t) => {
  const { app } = await testApp(t);
  await pushImage(app, 'a/b', 'v1');
  const res = await app.inject({ method: 'GET', url: '/v2/a%2Fb/tags/list' });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(JSON.parse(res.body), { name: 'a/b', tags: ['v1'] });
});

test('a malformed digest is DIGEST_INVALID (400) on blob, referrer and upload routes', async (t) => {
  const { app } = await testApp(t);
  const post = await app.inject({ method: 'POST', url: '/v2/a/blobs/uploads/' });
  const location = post.headers.location as string;
  for (const [method, url] of [
    ['GET', '/v2/a/blobs/sha256:abc'],
    ['HEAD', '/v2/a/blobs/sha256:abc'],
    ['DELETE', '/v2/a/blobs/sha256:abc'],
    ['GET', `/v2/a/blobs/sha256:${'A'.repeat(64)}`],
    ['GET', `/v2/a/blobs/md5:${'a'.repeat(32)}`],
    ['GET', '/v2/a/blobs/notadigest'],
    ['GET', '/v2/a/referrers/sha256:abc'],
    ['POST', '/v2/a/blobs/uploads/?digest=sha256:abc'],
    ['POST', '/v2/a/blobs/uploads/?mount=sha256:abc&from=b'],
    ['PUT', `${location}?digest=sha256:abc`],
    ['PUT', location],
    ['GET', '/v2/a/manifests/sha256:abc'],
    ['PUT', '/v2/a/manifests/sha256:abc'],
  ] as const) {
    const res = await app.inject({ method, url, payload: method === 'PUT' || method === 'POST' ? 'x' : undefined });
    assertError(res, 400, 'DIGEST_INVALID', method);
  }
});

test('a malformed percent-encoding in the path answers the envelope with the API version header', async (t) => {
  const { app } = await testApp(t);
  const res = await app.inject({ method: 'GET', url: '/v2/%zz/manifests/latest' });
  assertError(res, 400, 'UNSUPPORTED');
});

test('a path parameter over the router limit answers the envelope', async (t) => {
  const { app } = await testApp(t);
  const res = await app.inject({ method: 'GET', url: `/v2/${'a'.repeat(5000)}/tags/list` });
  assert.ok(res.statusCode >= 400 && res.statusCode < 500, String(res.statusCode));
  assertApiVersion(res);
  assert.ok(Array.isArray(JSON.parse(res.body).errors), res.body);
});

test('an unknown or malformed upload id is BLOB_UPLOAD_UNKNOWN (404) for every upload method', async (t) => {
  const { app } = await testApp(t);
  for (const id of [UUID, 'not-a-uuid', 'a.b', UUID.toUpperCase()]) {
    for (const method of ['GET', 'PATCH', 'PUT', 'DELETE'] as const) {
      const url = `/v2/a/blobs/uploads/${id}${method === 'PUT' ? `?digest=${D}` : ''}`;
      const res = await app.inject({ method, url, payload: method === 'PATCH' || method === 'PUT' ? 'x' : undefined });
      assertError(res, 404, 'BLOB_UPLOAD_UNKNOWN');
    }
  }
});

test('an upload id of another repository is BLOB_UPLOAD_UNKNOWN and leaves the session intact', async (t) => {
  const { app } = await testApp(t);
  const post = await app.inject({ method: 'POST', url: '/v2/owner/blobs/uploads/' });
  const id = post.headers['docker-upload-uuid'] as string;
  for (const method of ['GET', 'PATCH', 'PUT', 'DELETE'] as const) {
    const url = `/v2/intruder/blobs/uploads/${id}${method === 'PUT' ? `?digest=${sha256('x')}` : ''}`;
    assertError(await app.inject({ method, url, payload: method === 'PATCH' || method === 'PUT' ? 'x' : undefined }), 404, 'BLOB_UPLOAD_UNKNOWN');
  }
  const status = await app.inject({ method: 'GET', url: `/v2/owner/blobs/uploads/${id}` });
  assert.equal(status.statusCode, 204);
  assert.equal(status.headers.range, '0-0');
});

test('unknown blob, manifest and repository answer their *_UNKNOWN codes', async (t) => {
  const { app } = await testApp(t);
  assertError(await app.inject({ method: 'GET', url: `/v2/a/blobs/${D}` }), 404, 'BLOB_UNKNOWN');
  assertError(await app.inject({ method: 'HEAD', url: `/v2/a/blobs/${D}` }), 404, 'BLOB_UNKNOWN', 'HEAD');
  assertError(await app.inject({ method: 'DELETE', url: `/v2/a/blobs/${D}` }), 404, 'BLOB_UNKNOWN');
  assertError(await app.inject({ method: 'GET', url: '/v2/a/manifests/latest' }), 404, 'MANIFEST_UNKNOWN');
  assertError(await app.inject({ method: 'GET', url: `/v2/a/manifests/${D}` }), 404, 'MANIFEST_UNKNOWN');
  assertError(await app.inject({ method: 'HEAD', url: '/v2/a/manifests/latest' }), 404, 'MANIFEST_UNKNOWN', 'HEAD');
  assertError(await app.inject({ method: 'DELETE', url: '/v2/a/manifests/latest' }), 404, 'MANIFEST_UNKNOWN');
  assertError(await app.inject({ method: 'GET', url: '/v2/a/manifests/.invalid-tag' }), 404, 'MANIFEST_UNKNOWN');
  assertError(await app.inject({ method: 'GET', url: '/v2/a/tags/list' }), 404, 'NAME_UNKNOWN');
});

test('tags/list of a parent of a nested repository is NAME_UNKNOWN', async (t) => {
  const { app } = await testApp(t);
  await pushImage(app, 'a/b', 'v1');
  assertError(await app.inject({ method: 'GET', url: '/v2/a/tags/list' }), 404, 'NAME_UNKNOWN');
});

test('a blob of one repository is BLOB_UNKNOWN in another', async (t) => {
  const { app } = await testApp(t);
  const d = await pushBlob(app, 'mine', 'private bytes');
  assert.equal((await app.inject({ method: 'GET', url: `/v2/mine/blobs/${d}` })).statusCode, 200);
  assertError(await app.inject({ method: 'GET', url: `/v2/theirs/blobs/${d}` }), 404, 'BLOB_UNKNOWN');
});

test('a monolithic upload with the wrong digest is DIGEST_INVALID and stores nothing', async (t) => {
  const { app } = await testApp(t);
  const wrong = sha256('other');
  const res = await app.inject({ method: 'POST', url: `/v2/a/blobs/uploads/?digest=${wrong}`, payload: 'content' });
  const e = assertError(res, 400, 'DIGEST_INVALID');
  assert.deepEqual(e?.detail, { expected: wrong, actual: sha256('content') });
  assertError(await app.inject({ method: 'HEAD', url: `/v2/a/blobs/${sha256('content')}` }), 404, 'BLOB_UNKNOWN', 'HEAD');
});

test('an invalid manifest is MANIFEST_INVALID; a manifest over unknown blobs is MANIFEST_BLOB_UNKNOWN', async (t) => {
  const { app } = await testApp(t);
  const put = (payload: string | Buffer, contentType = OCI_MANIFEST, ref = 'v1') =>
    app.inject({ method: 'PUT', url: `/v2/a/manifests/${ref}`, payload, headers: { 'content-type': contentType } });
  assertError(await put('not json'), 400, 'MANIFEST_INVALID');
  assertError(await put('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'), 400, 'MANIFEST_INVALID');
  assertError(await put('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'), 400, 'MANIFEST_INVALID');
  assertError(await put('{}', OCI_MANIFEST, '-bad-tag'), 400, 'MANIFEST_INVALID');
  const config = { digest: sha256('c'), size: 1 };
  const layer = { digest: sha256('l'), size: 1 };
  const e = assertError(await put(imageManifest(config, [layer])), 400, 'MANIFEST_BLOB_UNKNOWN');
  assert.deepEqual(e?.detail, { digests: [config.digest, layer.digest].sort() });
  const index = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: OCI_MANIFEST, digest: D, size: 10 }] });
  assertError(await put(index, 'application/vnd.oci.image.index.v1+json'), 400, 'MANIFEST_BLOB_UNKNOWN');
});

test('a manifest pushed by a digest that its bytes do not have is DIGEST_INVALID and not stored', async (t) => {
  const { app } = await testApp(t);
  const img = await pushImage(app, 'a', 'v1');
  const other = Buffer.concat([img.manifest, Buffer.from(' ')]);
  const res = await app.inject({ method: 'PUT', url: `/v2/a/manifests/${img.digest}`, payload: other, headers: { 'content-type': OCI_MANIFEST } });
  const e = assertError(res, 400, 'DIGEST_INVALID');
  assert.deepEqual(e?.detail, { expected: img.digest, actual: sha256(other) });
  assertError(await app.inject({ method: 'GET', url: `/v2/a/manifests/${sha256(other)}` }), 404, 'MANIFEST_UNKNOWN');
});

test('a manifest over 4 MiB is 413 with the envelope; one of exactly 4 MiB is accepted', async (t) => {
  const { app } = await testApp(t);
  const img = await pushImage(app, 'a', 'small');
  const limit = 4 * 1024 * 1024;
  const base = JSON.parse(img.manifest.toString()) as Record<string, unknown>;
  const padded = (size: number) => {
    const empty = Buffer.from(JSON.stringify({ ...base, annotations: { pad: '' } }));
    return Buffer.from(JSON.stringify({ ...base, annotations: { pad: 'p'.repeat(size - empty.length) } }));
  };
  const atLimit = padded(limit);
  assert.equal(atLimit.length, limit);
  const ok = await app.inject({ method: 'PUT', url: '/v2/a/manifests/big', payload: atLimit, headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(ok.statusCode, 201, ok.body.slice(0, 300));
  const over = padded(limit + 1);
  const res = await app.inject({ method: 'PUT', url: '/v2/a/manifests/too-big', payload: over, headers: { 'content-type': OCI_MANIFEST } });
  const e = assertError(res, 413, 'SIZE_INVALID');
  assert.deepEqual(e?.detail, { limit });
  assertError(await app.inject({ method: 'GET', url: '/v2/a/manifests/too-big' }), 404, 'MANIFEST_UNKNOWN');
});

test('an invalid page size is PAGINATION_NUMBER_INVALID', async (t) => {
  const { app } = await testApp(t);
  await pushImage(app, 'a', 'v1');
  for (const url of ['/v2/a/tags/list?n=-1', '/v2/a/tags/list?n=abc', '/v2/_catalog?n=1.5']) {
    assertError(await app.inject({ method: 'GET', url }), 400, 'PAGINATION_NUMBER_INVALID');
  }
});

test('a storage failure is 500 UNKNOWN without internals', async (t) => {
  const { app, storage } = await testApp(t);
  // Make the repository tree unusable: a file where the directory was.
  await rm(storage.layout.repositoriesDir, { recursive: true, force: true });
  await writeFile(storage.layout.repositoriesDir, 'not a directory');
  const res = await app.inject({ method: 'POST', url: `/v2/a/blobs/uploads/?digest=${sha256('x')}`, payload: 'x' });
  const e = assertError(res, 500, 'UNKNOWN');
  assert.equal(e?.detail, undefined);
  assert.doesNotMatch(res.body, /ENOTDIR|EEXIST|repositories/);
});

test('every answer, success or failure, carries Docker-Distribution-API-Version', async (t) => {
  const { app } = await testApp(t);
  const img = await pushImage(app, 'a/b', 'v1');
  for (const [method, url] of [
    ['GET', '/v2/'],
    ['HEAD', '/v2/'],
    ['GET', '/v2/_catalog'],
    ['GET', '/v2/a/b/tags/list'],
    ['GET', `/v2/a/b/manifests/v1`],
    ['HEAD', `/v2/a/b/manifests/${img.digest}`],
    ['GET', `/v2/a/b/blobs/${img.layer}`],
    ['GET', `/v2/a/b/referrers/${img.digest}`],
    ['POST', '/v2/a/b/blobs/uploads/'],
    ['GET', '/nope'],
    ['GET', '/v2/a/b/manifests/missing'],
  ] as const) {
    assertApiVersion(await app.inject({ method, url }));
  }
});
