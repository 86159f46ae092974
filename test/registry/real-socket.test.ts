// The registry app on a real 127.0.0.1 socket, for what app.inject cannot show: paths sent
// exactly as written (no URL normalization), connection reuse after an error answered
// before the body was read, and clients that go away mid-upload.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { OCI_MANIFEST } from '../../src/oci/index.js';
import { pushImage, sha256, testApp } from './fixtures.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

async function listening(t: TestContext) {
  const { app, storage } = await testApp(t);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const request = (method: string, path: string, opts: { headers?: http.OutgoingHttpHeaders; write?: (r: http.ClientRequest) => void } = {}) =>
    new Promise<Answer>((resolve, reject) => {
      const r = http.request({ host: '127.0.0.1', port, method, path, agent, headers: opts.headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      });
      r.on('error', reject);
      r.setTimeout(10_000, () => r.destroy(new Error(`timeout: ${method} ${path}`)));
      if (opts.write) opts.write(r);
      else r.end();
    });
  return { app, storage, port, request };
}

function envelopeCode(a: Answer): string {
  return (JSON.parse(a.body) as { errors: Array<{ code: string }> }).errors[0]!.code;
}

test('dot segments sent verbatim in a name are NAME_INVALID, never a path outside the repository', async (t) => {
  const { request } = await listening(t);
  for (const path of ['/v2/a/../b/tags/list', '/v2/../../etc/tags/list', '/v2/a/%2E%2E/b/manifests/latest', '/v2/a/./b/blobs/uploads/', '/v2/a%2F..%2F..%2Fx/tags/list']) {
    const a = await request(path.includes('uploads') ? 'POST' : 'GET', path);
    assert.equal(a.status, 400, `${path}: ${a.body}`);
    assert.equal(envelopeCode(a), 'NAME_INVALID', path);
  }
});

test('an upload id of dot segments sent verbatim is BLOB_UPLOAD_UNKNOWN', async (t) => {
  const { request } = await listening(t);
  for (const id of ['..', '.', '%2E%2E', '..%2F..%2Ftmp']) {
    const a = await request('GET', `/v2/a/blobs/uploads/${id}`);
    assert.equal(a.status, 404, `${id}: ${a.body}`);
    assert.equal(envelopeCode(a), 'BLOB_UPLOAD_UNKNOWN');
  }
});

test('after a 413 on a chunked manifest the next request still gets an answer', async (t) => {
  const { request } = await listening(t);
  const mib = Buffer.alloc(1024 * 1024, 0x20);
  const big = await request('PUT', '/v2/a/manifests/big', {
    headers: { 'content-type': OCI_MANIFEST },
    write: (r) => {
      for (let i = 0; i < 5; i++) r.write(mib);
      r.end();
    },
  });
  assert.equal(big.status, 413);
  assert.equal(envelopeCode(big), 'SIZE_INVALID');
  const next = await request('GET', '/v2/');
  assert.equal(next.status, 200);
  assert.equal(next.body, '{}');
});

test('after a 413 on a manifest with a Content-Length over the limit the connection is reused', async (t) => {
  const { request } = await listening(t);
  const body = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
  const big = await request('PUT', '/v2/a/manifests/big', { headers: { 'content-type': OCI_MANIFEST, 'content-length': body.length }, write: (r) => r.end(body) });
  assert.equal(big.status, 413);
  const next = await request('GET', '/v2/');
  assert.equal(next.status, 200);
});

test('a client that goes away mid-chunk leaves the session resumable at the bytes received', async (t) => {
  const { request, port, app } = await listening(t);
  const post = await request('POST', '/v2/a/blobs/uploads/');
  const location = post.headers.location!;
  const first = Buffer.alloc(64 * 1024, 0x61);
  await new Promise<void>((resolve) => {
    const r = http.request({ host: '127.0.0.1', port, method: 'PATCH', path: location, agent: false, headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' } });
    r.on('error', () => resolve());
    r.write(first);
    // Let the server store what it got, then vanish.
    setTimeout(() => r.destroy(), 200);
  });
  // The server notices the abort and releases the session.
  let status: Answer | undefined;
  for (let i = 0; i < 50; i++) {
    status = await request('GET', location);
    if (status.status === 204 && status.headers.range === `0-${first.length - 1}`) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(status?.headers.range, `0-${first.length - 1}`);
  const rest = Buffer.from('tail');
  const patch = await request('PATCH', location, { headers: { 'content-range': `${first.length}-${first.length + 3}`, 'content-length': 4 }, write: (r) => r.end(rest) });
  assert.equal(patch.status, 202, patch.body);
  const all = Buffer.concat([first, rest]);
  const put = await request('PUT', `${location}?digest=${sha256(all)}`);
  assert.equal(put.status, 201, put.body);
  assert.ok(app.server.listening);
});

test('a blob is streamed to the client whole, with the length announced', async (t) => {
  const { app, request } = await listening(t);
  const img = await pushImage(app, 'a', 'v1');
  const a = await request('GET', `/v2/a/blobs/${img.layer}`);
  assert.equal(a.status, 200);
  assert.equal(a.body, img.layerBytes.toString());
  assert.equal(a.headers['content-length'], String(img.layerBytes.length));
});
