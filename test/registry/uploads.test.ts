// Upload routes through app.inject: POST then PATCH chunks then PUT, out-of-order chunks,
// status, cancel, monolithic pushes, mounts, and sha512 blobs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertError, pushBlob, sha256, sha512, testApp } from './fixtures.js';
import { bytes } from '../storage/fixtures.js';

test('POST opens a session: 202 with Location, Range 0-0 and the upload uuid', async (t) => {
  const { app } = await testApp(t);
  const res = await app.inject({ method: 'POST', url: '/v2/a/blobs/uploads/' });
  assert.equal(res.statusCode, 202);
  const id = res.headers['docker-upload-uuid'] as string;
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.equal(res.headers.location, `/v2/a/blobs/uploads/${id}`);
  assert.equal(res.headers.range, '0-0');
  assert.equal(res.body, '');
});

test('chunks with Content-Range, then PUT with the digest, store the blob', async (t) => {
  const { app } = await testApp(t);
  const data = bytes(30_000, 9);
  const post = await app.inject({ method: 'POST', url: '/v2/a/blobs/uploads' });
  let location = post.headers.location as string;
  for (const [start, end] of [
    [0, 9_999],
    [10_000, 19_999],
    [20_000, 29_999],
  ] as const) {
    const res = await app.inject({
      method: 'PATCH',
      url: location,
      payload: data.subarray(start, end + 1),
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${end}` },
    });
    assert.equal(res.statusCode, 202, res.body);
    assert.equal(res.headers.range, `0-${end}`);
    location = res.headers.location as string;
  }
  const status = await app.inject({ method: 'GET', url: location });
  assert.equal(status.statusCode, 204);
  assert.equal(status.headers.range, '0-29999');
  const put = await app.inject({ method: 'PUT', url: `${location}?digest=${sha256(data)}` });
  assert.equal(put.statusCode, 201, put.body);
  assert.equal(put.headers.location, `/v2/a/blobs/${sha256(data)}`);
  assert.equal(put.headers['docker-content-digest'], sha256(data));
  const get = await app.inject({ method: 'GET', url: `/v2/a/blobs/${sha256(data)}` });
  assert.deepEqual(get.rawPayload, data);
  assertError(await app.inject({ method: 'GET', url: location }), 404, 'BLOB_UPLOAD_UNKNOWN');
});

test('a chunk out of order is 416 with Location and the Range the upload stands at', async (t) => {
  const { app } = await testApp(t);
  const post = await app.inject({ method: 'POST', url: '/v2/a/b/blobs/uploads/' });
  const location = post.headers.location as string;
  const first = await app.inject({ method: 'PATCH', url: location, payload: 'hello', headers: { 'content-range': '0-4' } });
  assert.equal(first.statusCode, 202);
  const res = await app.inject({ method: 'PATCH', url: location, payload: 'world', headers: { 'content-range': '10-14' } });
  const e = assertError(res, 416, 'RANGE_INVALID');
  assert.deepEqual(e?.detail, { expectedStart: 5, start: 10 });
  assert.equal(res.headers.location, location);
  assert.equal(res.headers.range, '0-4');
  assert.equal(res.headers['docker-upload-uuid'], post.headers['docker-upload-uuid']);
  // The client resumes where it was told.
  const resumed = await app.inject({ method: 'PATCH', url: location, payload: 'world', headers: { 'content-range': '5-9' } });
  assert.equal(resumed.statusCode, 202);
  assert.equal(resumed.headers.range, '0-9');
});

test('a first chunk that does not start at 0 is 416 with Range 0-0', async (t) => {
  const { app } = await testApp(t);
  const location = (await app.inject({ method: 'POST', url: '/v2/a/blobs/uploads/' })).headers.location as string;
  const res = await app.inject({ method: 'PATCH', url: location, payload: 'abc', headers: { 'content-range': '3-5' } });
  assertError(res, 416, 'RANGE_INVALID');
  assert.equal(res.headers.range, '0-0');
  assert.equal(res.headers.location, location);
});

test('a Content-Range that disagrees with Content-Length, or is malformed, is 416', async (t) => {
  const { app } = await testApp(t);
  const location = (await app.inject({ method: 'POST', url: '/v2/a/blobs/uploads/' })).headers.location as string;
  assertError(await app.inject({ method: 'PATCH', url: location, payload: 'abc', headers: { 'content-range': '0-9' } }), 416, 'RANGE_INVALID');
  assertError(await app.inject({ method: 'PATCH', url: location, payload: 'abc', headers: { 'content-range': 'zero-two' } }), 416, 'RANGE_INVALID');
  assertError(await app.inject({ method: 'PATCH', url: location, payload: 'abc', headers: { 'content-range': '2-0' } }), 416, 'RANGE_INVALID');
  const status = await app.inject({ method: 'GET', url: location });
  assert.equal(status.headers.range, '0-0');
});

test('a final PUT whose Content-Range does not continue the upload is 416', async (t) => {
  const { app } = await testApp(t);
  const location = (await app.inject({ method: 'POST', url: '/v2/a/blobs/uploads/' })).headers.location as string;
  await app.inject({ method: 'PATCH', url: location, payload: 'abc', headers: { 'content-range': '0-2' } });
  const res = await app.inject({ method: 'PUT', url: `${location}?digest=${sha256('abcdef')}`, payload: 'def', headers: { 'content-range': '4-6' } });
  assertError(res, 416, 'RANGE_INVALID');
  const ok = await app.inject({ method: 'PUT', url: `${location}?digest=${sha256('abcdef')}`, payload: 'def', headers: { 'content-range': '3-5' } });
  assert.equal(ok.statusCode, 201, ok.body);
});

test('PATCH without Content-Range appends (streamed chunks)', async (t) => {
  const { app } = await testApp(t);
  const location = (await app.inject({ method: 'POST', url: '/v2/a/blobs/uploads/' })).headers.location as string;
  await app.inject({ method: 'PATCH', url: location, payload: 'one ' });
  const second = await app.inject({ method: 'PATCH', url: location, payload: 'two' });
  assert.equal(second.headers.range, '0-6');
  const put = await app.inject({ method: 'PUT', url: `${location}?digest=${sha256('one two')}` });
  assert.equal(put.statusCode, 201);
});

test('a final PUT with the wrong digest is DIGEST_INVALID and ends the session', async (t) => {
  const { app } = await testApp(t);
  const location = (await app.inject({ method: 'POST', url: '/v2/a/blobs/uploads/' })).headers.location as string;
  await app.inject({ method: 'PATCH', url: location, payload: 'content' });
  const res = await app.inject({ method: 'PUT', url: `${location}?digest=${sha256('different')}` });
  assertError(res, 400, 'DIGEST_INVALID');
  assertError(await app.inject({ method: 'GET', url: location }), 404, 'BLOB_UPLOAD_UNKNOWN');
  assertError(await app.inject({ method: 'HEAD', url: `/v2/a/blobs/${sha256('content')}` }), 404, 'BLOB_UNKNOWN', 'HEAD');
});

test('DELETE cancels a session: 204, then it is unknown', async (t) => {
  const { app } = await testApp(t);
  const location = (await app.inject({ method: 'POST', url: '/v2/a/blobs/uploads/' })).headers.location as string;
  await app.inject({ method: 'PATCH', url: location, payload: 'x' });
  const del = await app.inject({ method: 'DELETE', url: location });
  assert.equal(del.statusCode, 204);
  assertError(await app.inject({ method: 'PATCH', url: location, payload: 'y' }), 404, 'BLOB_UPLOAD_UNKNOWN');
});

test('POST with the whole blob and its digest stores it in one request', async (t) => {
  const { app } = await testApp(t);
  const res = await app.inject({ method: 'POST', url: `/v2/a/blobs/uploads/?digest=${sha256('mono')}`, payload: 'mono' });
  assert.equal(res.statusCode, 201);
  assert.equal(res.headers.location, `/v2/a/blobs/${sha256('mono')}`);
  assert.equal((await app.inject({ method: 'GET', url: `/v2/a/blobs/${sha256('mono')}` })).body, 'mono');
});

test('POST with an empty body and its digest stores the empty blob', async (t) => {
  const { app } = await testApp(t);
  const res = await app.inject({ method: 'POST', url: `/v2/a/blobs/uploads/?digest=${sha256('')}` });
  assert.equal(res.statusCode, 201, res.body);
  const get = await app.inject({ method: 'GET', url: `/v2/a/blobs/${sha256('')}` });
  assert.equal(get.statusCode, 200);
  assert.equal(get.headers['content-length'], '0');
  assert.equal(get.body, '');
});

test('mount from a repository that has the blob answers 201 without a body', async (t) => {
  const { app } = await testApp(t);
  const d = await pushBlob(app, 'src/repo', 'shared layer');
  const res = await app.inject({ method: 'POST', url: `/v2/dst/repo/blobs/uploads/?mount=${d}&from=src/repo` });
  assert.equal(res.statusCode, 201);
  assert.equal(res.headers.location, `/v2/dst/repo/blobs/${d}`);
  assert.equal((await app.inject({ method: 'GET', url: `/v2/dst/repo/blobs/${d}` })).body, 'shared layer');
});

test('mount from a repository that lacks the blob falls back to a new session (202)', async (t) => {
  const { app } = await testApp(t);
  const d = await pushBlob(app, 'src', 'layer');
  const res = await app.inject({ method: 'POST', url: `/v2/dst/blobs/uploads/?mount=${d}&from=elsewhere` });
  assert.equal(res.statusCode, 202);
  assert.match(res.headers.location as string, /^\/v2\/dst\/blobs\/uploads\/[0-9a-f-]{36}$/);
  assertError(await app.inject({ method: 'HEAD', url: `/v2/dst/blobs/${d}` }), 404, 'BLOB_UNKNOWN', 'HEAD');
});

test('mount with an invalid from is NAME_INVALID', async (t) => {
  const { app } = await testApp(t);
  const d = await pushBlob(app, 'src', 'layer');
  assertError(await app.inject({ method: 'POST', url: `/v2/dst/blobs/uploads/?mount=${d}&from=Bad_Name` }), 400, 'NAME_INVALID');
});

test('sha512 blobs: monolithic and chunked uploads, then reads by sha512 digest', async (t) => {
  const { app } = await testApp(t);
  const mono = Buffer.from('sha512 monolithic');
  await pushBlob(app, 'a', mono, sha512(mono));
  const chunked = bytes(5000, 12);
  const location = (await app.inject({ method: 'POST', url: '/v2/a/blobs/uploads/' })).headers.location as string;
  await app.inject({ method: 'PATCH', url: location, payload: chunked.subarray(0, 2000), headers: { 'content-range': '0-1999' } });
  const put = await app.inject({ method: 'PUT', url: `${location}?digest=${sha512(chunked)}`, payload: chunked.subarray(2000) });
  assert.equal(put.statusCode, 201, put.body);
  for (const [d, data] of [
    [sha512(mono), mono],
    [sha512(chunked), chunked],
  ] as const) {
    const get = await app.inject({ method: 'GET', url: `/v2/a/blobs/${d}` });
    assert.equal(get.statusCode, 200);
    assert.equal(get.headers['docker-content-digest'], d);
    assert.deepEqual(get.rawPayload, data);
  }
  assertError(await app.inject({ method: 'HEAD', url: `/v2/a/blobs/${sha256(mono)}` }), 404, 'BLOB_UNKNOWN', 'HEAD');
});

test('an empty PATCH without Content-Type is accepted and changes nothing', async (t) => {
  const { app } = await testApp(t);
  const location = (await app.inject({ method: 'POST', url: '/v2/a/blobs/uploads/' })).headers.location as string;
  await app.inject({ method: 'PATCH', url: location, payload: 'abc' });
  const res = await app.inject({ method: 'PATCH', url: location });
  assert.equal(res.statusCode, 202, res.body);
  assert.equal(res.headers.range, '0-2');
});

test('a manifest PUT without Content-Type and without a body is MANIFEST_INVALID, not a 500', async (t) => {
  const { app } = await testApp(t);
  assertError(await app.inject({ method: 'PUT', url: '/v2/a/manifests/v1' }), 400, 'MANIFEST_INVALID');
});
