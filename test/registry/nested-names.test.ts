// Repository names with slashes, and names whose components are the API's own path words
// (blobs, uploads, manifests, tags, referrers), work on every route of the registry port.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OCI_MANIFEST } from '../../src/oci/index.js';
import { imageManifest, sha256, testApp } from './fixtures.js';

const NAMES = [
  'a/b/c',
  'foo/blobs/bar',
  'x/manifests/y',
  'r/blobs/uploads',
  'blobs/uploads',
  'manifests/latest',
  'p/tags/list',
  'q/referrers',
  'v2/v2',
  'deep/er/and/deeper/still',
];

for (const name of NAMES) {
  test(`every route works for the repository "${name}"`, async (t) => {
    const { app } = await testApp(t);
    const ok = async (method: 'GET' | 'HEAD' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, status: number, payload?: string | Buffer, headers?: Record<string, string>) => {
      const res = await app.inject({ method, url, ...(payload !== undefined ? { payload } : {}), ...(headers ? { headers } : {}) });
      assert.equal(res.statusCode, status, `${method} ${url}: ${res.body}`);
      assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
      return res;
    };

    // Chunked upload of the config: POST, PATCH, status, PUT.
    const config = Buffer.from(`{"name":"${name}"}`);
    const post = await ok('POST', `/v2/${name}/blobs/uploads/`, 202);
    const location = post.headers.location as string;
    assert.match(location, new RegExp(`^/v2/${name}/blobs/uploads/[0-9a-f-]{36}$`));
    const patch = await ok('PATCH', location, 202, config.subarray(0, 5), { 'content-range': '0-4' });
    assert.equal(patch.headers.location, location);
    assert.equal((await ok('GET', location, 204)).headers.range, '0-4');
    const put = await ok('PUT', `${location}?digest=${sha256(config)}`, 201, config.subarray(5));
    assert.equal(put.headers.location, `/v2/${name}/blobs/${sha256(config)}`);

    // A cancelled session.
    const doomed = (await ok('POST', `/v2/${name}/blobs/uploads`, 202)).headers.location as string;
    await ok('DELETE', doomed, 204);
    await ok('GET', doomed, 404);

    // Monolithic upload of a layer, reads, ranges.
    const layer = Buffer.from(`layer of ${name}`);
    await ok('POST', `/v2/${name}/blobs/uploads/?digest=${sha256(layer)}`, 201, layer);
    assert.deepEqual((await ok('GET', `/v2/${name}/blobs/${sha256(layer)}`, 200)).rawPayload, layer);
    assert.equal((await ok('HEAD', `/v2/${name}/blobs/${sha256(layer)}`, 200)).headers['content-length'], String(layer.length));
    assert.equal((await ok('GET', `/v2/${name}/blobs/${sha256(layer)}`, 206, undefined, { range: 'bytes=0-4' })).body, 'layer');

    // Mount into a sibling and back.
    await ok('POST', `/v2/${name}/copy/blobs/uploads/?mount=${sha256(layer)}&from=${name}`, 201);
    await ok('HEAD', `/v2/${name}/copy/blobs/${sha256(layer)}`, 200);

    // Manifest: PUT by tag, GET and HEAD by tag and digest, tags/list, catalog.
    const manifest = imageManifest({ digest: sha256(config), size: config.length }, [{ digest: sha256(layer), size: layer.length }]);
    const md = sha256(manifest);
    const mput = await ok('PUT', `/v2/${name}/manifests/latest`, 201, manifest, { 'content-type': OCI_MANIFEST });
    assert.equal(mput.headers.location, `/v2/${name}/manifests/${md}`);
    assert.deepEqual((await ok('GET', `/v2/${name}/manifests/latest`, 200)).rawPayload, manifest);
    await ok('HEAD', `/v2/${name}/manifests/${md}`, 200);
    assert.deepEqual(JSON.parse((await ok('GET', `/v2/${name}/tags/list`, 200)).body), { name, tags: ['latest'] });
    const catalog = JSON.parse((await ok('GET', '/v2/_catalog', 200)).body) as { repositories: string[] };
    assert.deepEqual(catalog.repositories, [name, `${name}/copy`].sort());

    // Referrers.
    const sig = imageManifest({ digest: sha256(config), size: config.length }, [], { subject: { mediaType: OCI_MANIFEST, digest: md, size: manifest.length } });
    await ok('PUT', `/v2/${name}/manifests/${sha256(sig)}`, 201, sig, { 'content-type': OCI_MANIFEST });
    const refs = JSON.parse((await ok('GET', `/v2/${name}/referrers/${md}`, 200)).body) as { manifests: Array<{ digest: string }> };
    assert.deepEqual(refs.manifests.map((m) => m.digest), [sha256(sig)]);

    // Deletes.
    await ok('DELETE', `/v2/${name}/manifests/latest`, 202);
    await ok('GET', `/v2/${name}/manifests/latest`, 404);
    await ok('DELETE', `/v2/${name}/manifests/${md}`, 202);
    await ok('DELETE', `/v2/${name}/blobs/${sha256(layer)}`, 202);
    await ok('GET', `/v2/${name}/blobs/${sha256(layer)}`, 404);
    await ok('HEAD', `/v2/${name}/copy/blobs/${sha256(layer)}`, 200);
  });
}
