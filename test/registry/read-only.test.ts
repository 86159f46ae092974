// The cache port (writable: false): every write answers UNSUPPORTED (405) with the envelope,
// whatever the name or the body, while reads of the same store keep working.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readdir } from 'node:fs/promises';
import { OCI_MANIFEST } from '../../src/oci/index.js';
import { assertError, pushImage, sha256, testApp } from './fixtures.js';

const UUID = '00000000-0000-4000-8000-000000000000';

const WRITES = (name: string, digest: string) =>
  [
    ['POST', `/v2/${name}/blobs/uploads/`],
    ['POST', `/v2/${name}/blobs/uploads`],
    ['POST', `/v2/${name}/blobs/uploads/?digest=${digest}`],
    ['POST', `/v2/${name}/blobs/uploads/?mount=${digest}&from=other`],
    ['PATCH', `/v2/${name}/blobs/uploads/${UUID}`],
    ['PUT', `/v2/${name}/blobs/uploads/${UUID}?digest=${digest}`],
    ['GET', `/v2/${name}/blobs/uploads/${UUID}`],
    ['DELETE', `/v2/${name}/blobs/uploads/${UUID}`],
    ['PUT', `/v2/${name}/manifests/latest`],
    ['PUT', `/v2/${name}/manifests/${digest}`],
    ['DELETE', `/v2/${name}/manifests/latest`],
    ['DELETE', `/v2/${name}/manifests/${digest}`],
    ['DELETE', `/v2/${name}/blobs/${digest}`],
  ] as const;

for (const name of ['a', 'a/b/c', 'foo/blobs/bar']) {
  test(`every write to "${name}" on the cache port is UNSUPPORTED (405)`, async (t) => {
    const { app, storage } = await testApp(t, { writable: false });
    for (const [method, url] of WRITES(name, sha256('x'))) {
      const payload = method === 'PUT' || method === 'PATCH' || method === 'POST' ? 'x' : undefined;
      const res = await app.inject({ method, url, payload, headers: { 'content-type': OCI_MANIFEST } });
      const e = assertError(res, 405, 'UNSUPPORTED');
      assert.match(e!.message, /read-only/, `${method} ${url}`);
    }
    assert.deepEqual(await readdir(storage.layout.uploadsDir), []);
    assert.deepEqual(await storage.repositories.list(), []);
  });
}

test('the cache port reads what the registry port wrote to the same store', async (t) => {
  const { app: registry, storage } = await testApp(t);
  const img = await pushImage(registry, 'shared/repo', 'v1');
  const { app: cache } = await testApp(t, { writable: false, storage });
  const m = await cache.inject({ method: 'GET', url: '/v2/shared/repo/manifests/v1' });
  assert.equal(m.statusCode, 200);
  assert.deepEqual(m.rawPayload, img.manifest);
  assert.equal((await cache.inject({ method: 'GET', url: `/v2/shared/repo/blobs/${img.layer}` })).body, img.layerBytes.toString());
  assert.deepEqual(JSON.parse((await cache.inject({ method: 'GET', url: '/v2/shared/repo/tags/list' })).body).tags, ['v1']);
  assert.equal((await cache.inject({ method: 'GET', url: '/v2/' })).statusCode, 200);
});
