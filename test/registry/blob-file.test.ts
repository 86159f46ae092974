// Blob GET of a stored blob, which the route sends from its file through reused buffers
// (src/registry/send-file.ts), on a real 127.0.0.1 socket: blobs and ranges larger than the
// buffers arrive whole, a client that goes away stops the reads and the file is closed, a file
// found short while being sent cuts the answer short, and the server serves on after each.
import assert from 'node:assert/strict';
import http from 'node:http';
import { readdir, readlink, truncate } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { tryParseDigest } from '../../src/oci/index.js';
import { streamingAnswers } from '../../src/registry/buffer-pool.js';
import { bytes } from '../storage/fixtures.js';
import { pushBlob, testApp } from './fixtures.js';

const MIB = 1024 * 1024;

async function listening(t: TestContext) {
  const { app, storage } = await testApp(t);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  const blobPath = (digest: string) => storage.layout.blob(tryParseDigest(digest)!);
  return { app, port, blobPath };
}

/** GET on a fresh connection: status, headers, every byte received, and whether it ended cleanly. */
function get(port: number, path: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      const done = (complete: boolean) => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), complete });
      res.on('end', () => done(res.complete));
      res.on('error', () => done(false));
      res.on('aborted', () => done(false));
    });
    r.on('error', reject);
    r.setTimeout(20_000, () => r.destroy(new Error(`timeout: GET ${path}`)));
    r.end();
  });
}

/** Open descriptors of this process on `path` (the app runs in the test's process). */
async function openDescriptors(path: string): Promise<number> {
  let n = 0;
  for (const fd of await readdir('/proc/self/fd')) {
    if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')) === path) n++;
  }
  return n;
}

/** Waits until no answer streams and nothing holds `path` open. */
async function settled(path: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (streamingAnswers() > 0 || (await openDescriptors(path)) > 0) {
    if (Date.now() > deadline) throw new Error(`still ${streamingAnswers()} answers streaming, ${await openDescriptors(path)} descriptors on ${path}`);
    await sleep(20);
  }
}

test('a blob larger than the read buffers arrives whole, and so do ranges across buffer edges', async (t) => {
  const { app, port, blobPath } = await listening(t);
  const data = bytes(3 * MIB + 123, 7);
  const d = await pushBlob(app, 'big', data);
  const whole = await get(port, `/v2/big/blobs/${d}`);
  assert.equal(whole.status, 200);
  assert.equal(whole.headers['content-length'], String(data.length));
  assert.ok(whole.complete && whole.body.equals(data), `got ${whole.body.length} of ${data.length} bytes`);
  for (const [start, end] of [[256 * 1024 - 1, 768 * 1024], [1, data.length - 2], [data.length - 1, data.length - 1]] as const) {
    const part = await get(port, `/v2/big/blobs/${d}`, { range: `bytes=${start}-${end}` });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], `bytes ${start}-${end}/${data.length}`);
    assert.equal(part.headers['content-length'], String(end - start + 1));
    assert.ok(part.complete && part.body.equals(data.subarray(start, end + 1)), `bytes=${start}-${end}: got ${part.body.length} bytes`);
  }
  await settled(blobPath(d));
});

test('a client that goes away mid-blob stops the reads, and the file is closed', async (t) => {
  const { app, port, blobPath } = await listening(t);
  const data = bytes(48 * MIB, 3);
  const d = await pushBlob(app, 'gone', data);
  await new Promise<void>((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, path: `/v2/gone/blobs/${d}`, agent: false }, (res) => {
      res.once('data', () => {
        assert.equal(streamingAnswers(), 1);
        r.destroy();
        resolve();
      });
    });
    r.on('error', (err) => (r.destroyed ? undefined : reject(err)));
    r.end();
  });
  await settled(blobPath(d));
  const again = await get(port, `/v2/gone/blobs/${d}`);
  assert.ok(again.complete && again.body.equals(data));
});

test('a blob file found shorter than its size cuts the answer short; the server serves on', async (t) => {
  const { app, port, blobPath } = await listening(t);
  const data = bytes(48 * MIB, 5);
  const d = await pushBlob(app, 'short', data);
  const other = await pushBlob(app, 'short', bytes(MIB, 6));
  // The client reads nothing until the file is cut, so the server cannot have read it all.
  const answer = await new Promise<{ received: number; complete: boolean; length: string | undefined }>((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, path: `/v2/short/blobs/${d}`, agent: false }, (res) => {
      res.pause();
      let received = 0;
      const done = () => resolve({ received, complete: res.complete, length: res.headers['content-length'] });
      truncate(blobPath(d), MIB).then(() => {
        res.on('data', (c: Buffer) => (received += c.length));
        res.on('end', done);
        res.on('error', done);
        res.on('aborted', done);
        res.resume();
      }, reject);
    });
    r.on('error', () => {});
    r.end();
  });
  assert.equal(answer.length, String(data.length));
  assert.equal(answer.complete, false);
  assert.ok(answer.received < data.length, `received ${answer.received} bytes`);
  await settled(blobPath(d));
  const next = await get(port, `/v2/short/blobs/${other}`);
  assert.ok(next.complete && next.body.length === MIB);
});
