// Slow and idle clients against the real server process, with the timeouts set short through the
// CLI (--headers-timeout 1s, --body-timeout 1s). Headers sent at 1 byte/s, a connection that sends
// nothing, and request bodies sent at 1 byte/s (a chunk, a monolithic blob, a manifest) are cut
// off within a few seconds; 200 such clients at once cost no memory and give their descriptors
// back; an upload session cut off this way stays usable. A timeout on total duration would break
// large uploads, so there is none: a 24 MiB blob sent at a steady 8 MiB/s (3 s, three times the
// body timeout) and a chunk sent with pauses shorter than the timeout both succeed.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { Rng, type ServeHandle, mib, procUsage, seedFromEnv, sha256, startServe, stopServe } from '../helpers/crash.js';
import { type TempDir, tempDir, waitFor } from '../helpers/proc.js';

const SEED = seedFromEnv();

/** A raw connection that writes `head` whole, then `trickle` one byte per `everyMs`; reports when the server closed it. */
function trickler(port: number, head: string, trickle: string, everyMs = 1000): { closed: Promise<{ afterMs: number; received: string; sent: number }>; socket: Socket } {
  const socket = connect(port, '127.0.0.1');
  const started = Date.now();
  let received = '';
  let sent = 0;
  let timer: NodeJS.Timeout | undefined;
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (received += d));
  socket.on('error', () => {});
  socket.on('connect', () => {
    if (head) socket.write(head);
    let i = 0;
    timer = setInterval(() => {
      if (i < trickle.length && !socket.destroyed) {
        socket.write(trickle[i++]!);
        sent++;
      }
    }, everyMs);
  });
  const closed = new Promise<{ afterMs: number; received: string; sent: number }>((resolve) =>
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ afterMs: Date.now() - started, received, sent });
    }));
  return { closed, socket };
}

describe('slow clients', () => {
  const rng = new Rng(SEED);
  let dir: TempDir;
  let server: ServeHandle;
  let port: number;

  before(async () => {
    console.log(`limits-slow-clients seed ${SEED} (replay: REGCACHE_SEED=${SEED})`);
    dir = await tempDir('rc-limits-slow-');
    server = await startServe({ storage: join(dir.path, 'storage'), dir: dir.path, args: ['--headers-timeout', '1s', '--body-timeout', '1s'] });
    port = Number(new URL(server.registry).port);
  });
  after(async () => {
    await stopServe(server).catch(() => {});
    await dir.cleanup();
  });

  test('headers at 1 byte/s and a connection that sends nothing are closed by the headers timeout (1 s): not before it, and long before the headers could be complete or the idle timeout (5 min) could act', async () => {
    const head = 'GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa\r\n\r\n';
    const slowHeaders = trickler(port, '', head);
    const silent = trickler(port, '', '');
    for (const [what, c, length] of [['headers at 1 byte/s', slowHeaders, head.length], ['a silent connection', silent, 0]] as const) {
      const { afterMs, received, sent } = await c.closed;
      // node checks the headers deadline every half timeout: closed between 1 and 1.5 s after
      // the first byte on an idle machine. What identifies the headers timeout here, whatever the
      // machine's load: not before 1 s; the slow client had sent only part of its headers (it
      // needs ${head.length} s for all of them); and well before the idle timeout of 5 minutes.
      assert.ok(afterMs >= 1_000, `${what}: closed after ${afterMs} ms, before the headers timeout`);
      assert.ok(sent < length || length === 0, `${what}: closed after all ${sent} bytes of the headers were sent`);
      assert.ok(afterMs < 60_000, `${what}: closed after ${afterMs} ms: not by the headers timeout`);
      assert.ok(received === '' || /^HTTP\/1\.1 408/.test(received), `${what}: got ${JSON.stringify(received.slice(0, 80))}`);
    }
  });

  test('request bodies at 1 byte/s are cut off (a chunk, a monolithic blob, a manifest); the upload session stays usable; nothing is left in tmp/', async () => {
    const post = await request(`${server.registry}/v2/slow/app/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
    await post.body.dump();
    const location = String(post.headers.location);
    const data = rng.bytes(2000);
    const clients = {
      chunk: trickler(port, `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nContent-Range: 0-1999\r\n\r\n${'a'.repeat(10)}`, 'bbbbbbbbbb'),
      monolithic: trickler(port, `POST /v2/slow/app/blobs/uploads/?digest=${sha256(data)} HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n`, 'cccccccccc'),
      manifest: trickler(port, 'PUT /v2/slow/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n', '1\r\n{\r\n'),
    };
    for (const [what, c] of Object.entries(clients)) {
      const { afterMs } = await c.closed;
      assert.ok(afterMs < 4_000, `${what} at 1 byte/s: closed after ${afterMs} ms`);
    }
    // The session holds what arrived and goes on from there.
    const status = await request(`${server.registry}${location}`);
    await status.body.dump();
    assert.equal(status.statusCode, 204);
    const have = Number(String(status.headers.range).split('-')[1]) + 1;
    assert.ok(have >= 10 && have <= 20, `the session holds ${have} bytes`);
    const rest = await request(`${server.registry}${location}?digest=${sha256(Buffer.concat([Buffer.from('a'.repeat(10)), Buffer.from('b'.repeat(have - 10)), data]))}`, {
      method: 'PUT',
      body: data,
      headers: { 'content-range': `${have}-${have + data.byteLength - 1}`, 'content-length': String(data.byteLength) },
    });
    assert.equal(rest.statusCode, 201, await rest.body.text());
    await waitFor(async () => (await readdir(join(server.storage, 'tmp'))).length === 0, { what: 'tmp/ empty after the cut-off monolithic push' });
  });

  test('200 clients trickling bodies at once: all cut off, descriptors come back, memory stays flat', async () => {
    const before = procUsage(server.pid);
    const clients = Array.from({ length: 200 }, (_, i) =>
      trickler(port, `POST /v2/slow/many${i % 10}/blobs/uploads/?digest=${sha256(String(i))} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n`, 'x'.repeat(100)));
    const closed = await Promise.all(clients.map((c) => c.closed));
    const slowest = Math.max(...closed.map((c) => c.afterMs));
    assert.ok(slowest < 5_000, `the last of 200 trickling clients was closed after ${slowest} ms`);
    const after = await waitFor(() => {
      const u = procUsage(server.pid);
      return u.fds <= before.fds + 2 ? u : undefined;
    }, { what: 'descriptors to come back' });
    const summary = `200 clients at 1 byte/s: all closed within ${slowest} ms; fds ${before.fds} -> ${after.fds}; peak RSS ${mib(before.hwm)} -> ${mib(after.hwm)}`;
    console.log(`limits-slow-clients (node ${process.version}): ${summary}`);
    assert.ok(after.hwm - before.hwm < 32 * 1024 * 1024, summary);
    // The server cuts a connection off first and removes the upload's temp file after it.
    await waitFor(async () => (await readdir(join(server.storage, 'tmp'))).length === 0, { what: 'tmp/ empty after 200 cut-off uploads', timeoutMs: 5_000 });
  });

  test('no limit on total duration: 24 MiB at a steady 8 MiB/s (3 s) and a chunk sent with pauses under the timeout both go through', async () => {
    const big = rng.bytes(24 * 1024 * 1024);
    async function* steady(): AsyncGenerator<Buffer> {
      const slice = 1024 * 1024;
      for (let off = 0; off < big.byteLength; off += slice) {
        yield big.subarray(off, off + slice);
        await sleep(125);
      }
    }
    const started = Date.now();
    const r = await request(`${server.registry}/v2/slow/big/blobs/uploads/?digest=${sha256(big)}`, { method: 'POST', body: Readable.from(steady()), headers: { 'content-length': String(big.byteLength) } });
    assert.equal(r.statusCode, 201, await r.body.text());
    assert.ok(Date.now() - started > 2_500, 'the upload took longer than the body timeout');

    const post = await request(`${server.registry}/v2/slow/paused/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
    await post.body.dump();
    const data = rng.bytes(8 * 1024);
    async function* paused(): AsyncGenerator<Buffer> {
      for (let off = 0; off < data.byteLength; off += 2048) {
        yield data.subarray(off, off + 2048);
        await sleep(400);
      }
    }
    const put = await request(`${server.registry}${post.headers.location}?digest=${sha256(data)}`, { method: 'PUT', body: Readable.from(paused()), headers: { 'content-length': String(data.byteLength) } });
    assert.equal(put.statusCode, 201, await put.body.text());
  });
});
