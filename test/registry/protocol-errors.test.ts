// Requests node's HTTP server refuses before any route sees them, written byte for byte on a
// socket: each is answered with the OCI error envelope and the API version header, and the
// connection is closed. Regression (found by the fuzz suite): node's and fastify's own answers
// came back instead, a bare 400/417 or `{"error":"Bad Request",...}` without a code, and
// CONNECT got no answer at all.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { type RawResponse, rawExchange } from '../helpers/raw-http.js';
import { testApp } from './fixtures.js';

async function port(t: TestContext, writable = true): Promise<number> {
  const { app } = await testApp(t, { writable });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return (app.server.address() as AddressInfo).port;
}

function assertEnvelope(r: RawResponse | undefined, status: number, code: string): void {
  assert.ok(r, 'an answer');
  assert.equal(r.status, status, r.body.toString());
  assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
  assert.match(r.headers['content-type'] ?? '', /^application\/json/);
  const body = JSON.parse(r.body.toString()) as { errors: Array<{ code: string; message: string }> };
  assert.deepEqual(Object.keys(body), ['errors']);
  assert.equal(body.errors.length, 1);
  assert.equal(body.errors[0]!.code, code);
  assert.equal(typeof body.errors[0]!.message, 'string');
}

const HOST = 'Host: 127.0.0.1';

for (const writable of [true, false]) {
  const which = writable ? 'registry' : 'cache';

  test(`${which} port: malformed HTTP is 400 with the envelope, and the connection closes`, async (t) => {
    const p = await port(t, writable);
    for (const head of [
      `GET /v2/a\u0000b/tags/list HTTP/1.1\r\n${HOST}`,
      `PUT /v2/a/manifests/x HTTP/1.1\r\n${HOST}\r\nContent-Length: 99999999999999999999`,
      `PUT /v2/a/manifests/x HTTP/1.1\r\n${HOST}\r\nContent-Length: 2\r\nContent-Length: 3`,
      `GET /v2/ HTTP/1.1\r\n${HOST}\r\nNoColonHere`,
      `PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\n${HOST}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc`,
    ]) {
      const ex = await rawExchange('127.0.0.1', p, head, '{}');
      assert.ok(ex.closed, head);
      assert.equal(ex.responses.length, 1, head);
      assertEnvelope(ex.responses[0], 400, 'UNSUPPORTED');
      assert.equal(ex.responses[0]!.headers.connection, 'close');
    }
  });

  test(`${which} port: headers over node's limit are 431 SIZE_INVALID with the envelope`, async (t) => {
    const p = await port(t, writable);
    const ex = await rawExchange('127.0.0.1', p, `GET /v2/ HTTP/1.1\r\n${HOST}\r\nX-Pad: ${'p'.repeat(20_000)}`, '');
    assertEnvelope(ex.responses[0], 431, 'SIZE_INVALID');
  });

  test(`${which} port: an Expect other than 100-continue is 417 with the envelope`, async (t) => {
    const p = await port(t, writable);
    const ex = await rawExchange('127.0.0.1', p, `PUT /v2/a/manifests/x HTTP/1.1\r\n${HOST}\r\nExpect: teapot\r\nContent-Length: 2`, '{}');
    assertEnvelope(ex.responses[0], 417, 'UNSUPPORTED');
  });

  test(`${which} port: CONNECT is 405 with the envelope, not a dropped connection`, async (t) => {
    const p = await port(t, writable);
    const ex = await rawExchange('127.0.0.1', p, `CONNECT 127.0.0.1:22 HTTP/1.1\r\n${HOST}`, '');
    assert.ok(ex.closed);
    assertEnvelope(ex.responses[0], 405, 'UNSUPPORTED');
  });

  test(`${which} port: HTTP/1.1 without Host is 400 with the envelope; HTTP/1.0 needs none`, async (t) => {
    const p = await port(t, writable);
    assertEnvelope((await rawExchange('127.0.0.1', p, 'GET /v2/ HTTP/1.1', '')).responses[0], 400, 'UNSUPPORTED');
    const old = (await rawExchange('127.0.0.1', p, 'GET /v2/ HTTP/1.0', '')).responses[0];
    assert.equal(old?.status, 200);
    assert.equal(old?.body.toString(), '{}');
    const ok = (await rawExchange('127.0.0.1', p, `GET /v2/ HTTP/1.1\r\n${HOST}\r\nConnection: close`, '')).responses[0];
    assert.equal(ok?.status, 200);
  });
}
