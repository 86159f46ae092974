// Blob reads through app.inject: whole blobs, single byte ranges (206 / 416), HEAD without
// a body, and deletes that unlink a blob from one repository only.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertError, pushBlob, testApp } from './fixtures.js';

const DATA = '0123456789';

test('GET serves the whole blob with its digest, length and Accept-Ranges', async (t) => {
  const { app } = await testApp(t);
  const d = await pushBlob(app, 'a', DATA);
  const res = await app.inject({ method: 'GET', url: `/v2/a/blobs/${d}` });
  assert.equal(res.statusCode, 200);
  assert.equal(res.body, DATA);
  assert.equal(res.headers['content-length'], '10');
  assert.equal(res.headers['docker-content-digest'], d);
  assert.equal(res.headers['accept-ranges'], 'bytes');
  assert.equal(res.headers['content-type'], 'application/octet-stream');
});

test('HEAD answers the headers of GET and no body', async (t) => {
  const { app } = await testApp(t);
  const d = await pushBlob(app, 'a', DATA);
  const res = await app.inject({ method: 'HEAD', url: `/v2/a/blobs/${d}` });
  assert.equal(res.statusCode, 200);
  assert.equal(res.body, '');
  assert.equal(res.headers['content-length'], '10');
  assert.equal(res.headers['docker-content-digest'], d);
});

test('a satisfiable Range answers 206 with Content-Range and only those bytes', async (t) => {
  const { app } = await testApp(t);
  const d = await pushBlob(app, 'a', DATA);
  for (const [range, body, contentRange] of [
    ['bytes=2-5', '2345', 'bytes 2-5/10'],
    ['bytes=7-', '789', 'bytes 7-9/10'],
    ['bytes=-3', '789', 'bytes 7-9/10'],
    ['bytes=0-0', '0', 'bytes 0-0/10'],
    ['bytes=8-100', '89', 'bytes 8-9/10'],
    ['bytes=-50', DATA, 'bytes 0-9/10'],
  ] as const) {
    const res = await app.inject({ method: 'GET', url: `/v2/a/blobs/${d}`, headers: { range } });
    assert.equal(res.statusCode, 206, range);
    assert.equal(res.body, body, range);
    assert.equal(res.headers['content-range'], contentRange, range);
    assert.equal(res.headers['content-length'], String(body.length), range);
  }
});

test('an unsatisfiable or malformed Range answers 416 with Content-Range bytes */size', async (t) => {
  const { app } = await testApp(t);
  const d = await pushBlob(app, 'a', DATA);
  for (const range of ['bytes=10-', 'bytes=20-30', 'bytes=5-2', 'bytes=-0', 'bytes=-', 'items=0-1', 'bytes=0-1,3-4', 'bytes=a-b']) {
    const res = await app.inject({ method: 'GET', url: `/v2/a/blobs/${d}`, headers: { range } });
    assertError(res, 416, 'RANGE_INVALID');
    assert.equal(res.headers['content-range'], 'bytes */10', range);
  }
});

test('any Range on an empty blob is 416', async (t) => {
  const { app } = await testApp(t);
  const d = await pushBlob(app, 'a', '');
  const res = await app.inject({ method: 'GET', url: `/v2/a/blobs/${d}`, headers: { range: 'bytes=0-' } });
  assertError(res, 416, 'RANGE_INVALID');
  assert.equal(res.headers['content-range'], 'bytes */0');
});

test('DELETE unlinks the blob from one repository: 202, then BLOB_UNKNOWN there only', async (t) => {
  const { app } = await testApp(t);
  const d = await pushBlob(app, 'a', DATA);
  await pushBlob(app, 'b', DATA);
  const del = await app.inject({ method: 'DELETE', url: `/v2/a/blobs/${d}` });
  assert.equal(del.statusCode, 202);
  assert.equal(del.body, '');
  assertError(await app.inject({ method: 'GET', url: `/v2/a/blobs/${d}` }), 404, 'BLOB_UNKNOWN');
  assertError(await app.inject({ method: 'DELETE', url: `/v2/a/blobs/${d}` }), 404, 'BLOB_UNKNOWN');
  assert.equal((await app.inject({ method: 'GET', url: `/v2/b/blobs/${d}` })).body, DATA);
});
