// The registry port's delete switch (`--delete` / `--no-delete`, storage.delete.enabled): off,
// DELETE of a manifest, a tag or a blob answers 405 UNSUPPORTED whether or not it exists, as
// distribution does, and nothing is removed; on (the default), they are deleted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertError, pushImage, testApp } from './fixtures.js';

test('deletes off: manifest, tag and blob deletes answer 405 UNSUPPORTED and remove nothing', async (t) => {
  const { app } = await testApp(t, { deleteEnabled: false });
  const image = await pushImage(app, 'team/app', 'v1');
  for (const url of [`/v2/team/app/manifests/${image.digest}`, '/v2/team/app/manifests/v1', `/v2/team/app/blobs/${image.layer}`, `/v2/team/app/blobs/sha256:${'0'.repeat(64)}`, '/v2/no/such/manifests/latest']) {
    const res = await app.inject({ method: 'DELETE', url });
    const error = assertError(res, 405, 'UNSUPPORTED', 'DELETE');
    assert.match(error?.message ?? '', /--delete|storage\.delete\.enabled/);
  }
  assert.equal((await app.inject({ method: 'GET', url: '/v2/team/app/manifests/v1' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: `/v2/team/app/blobs/${image.layer}` })).statusCode, 200);
  // Uploads can still be cancelled, as in distribution.
  const post = await app.inject({ method: 'POST', url: '/v2/team/app/blobs/uploads/' });
  assert.equal(post.statusCode, 202);
  assert.equal((await app.inject({ method: 'DELETE', url: String(post.headers.location) })).statusCode, 204);
});

test('deletes on by default: a tag and then its manifest are deleted', async (t) => {
  const { app } = await testApp(t);
  const image = await pushImage(app, 'team/app', 'v1');
  assert.equal((await app.inject({ method: 'DELETE', url: '/v2/team/app/manifests/v1' })).statusCode, 202);
  assert.equal((await app.inject({ method: 'DELETE', url: `/v2/team/app/manifests/${image.digest}` })).statusCode, 202);
  assertError(await app.inject({ method: 'GET', url: `/v2/team/app/manifests/${image.digest}` }), 404, 'MANIFEST_UNKNOWN');
});
