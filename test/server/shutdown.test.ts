// Shutdown of `regcache serve` with a slow upload in flight: the drain is bounded by
// --drain-timeout (a client that stalls mid-body no longer holds the server until its body
// timeout), the server says what it waits for and what it cut off, a second SIGTERM exits at
// once, and the upload cut off is resumed on the restarted server and completes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { tempDir } from '../storage/fixtures.js';
import { serve, withTimeout, type CliChild, type ReadyInfo } from './cli-process.js';

const REPO = 'drain/slow';
const part = Buffer.alloc(256 * 1024, 0x61);
const rest = Buffer.alloc(128 * 1024, 0x62);
const whole = Buffer.concat([part, rest]);
const digest = `sha256:${createHash('sha256').update(whole).digest('hex')}`;

/** Flags of a server whose clients may be slow: only the drain timeout can end their requests. */
const SLOW_CLIENTS = ['--body-timeout', '10m', '--idle-timeout', '10m'];

/**
 * Opens an upload session and sends the first part of one PATCH that announces the whole blob,
 * then stalls (a slow client). Resolves once the server has stored the part.
 */
async function stalledUpload(t: TestContext, s: CliChild & { ready: ReadyInfo }, storage: string): Promise<{ id: string; location: string }> {
  const post = await fetch(`${s.ready.registry}/v2/${REPO}/blobs/uploads/`, { method: 'POST' });
  assert.equal(post.status, 202);
  const location = post.headers.get('location')!;
  const id = post.headers.get('docker-upload-uuid')!;
  const req = http.request(new URL(location, s.ready.registry), {
    method: 'PATCH',
    headers: { 'content-type': 'application/octet-stream', 'content-range': `0-${whole.length - 1}`, 'content-length': whole.length },
  });
  req.on('error', () => {}); // the server closes the connection: expected
  req.on('response', (res) => res.resume());
  t.after(() => req.destroy());
  req.write(part);
  const dataFile = join(storage, 'uploads', id, 'data');
  for (let i = 0; (await stat(dataFile)).size < part.length; i++) {
    assert.ok(i < 1000, 'the first part never reached the server');
    await new Promise((r) => setTimeout(r, 10));
  }
  return { id, location };
}

/** Waits until the server's output matches. */
async function said(s: CliChild, pattern: RegExp): Promise<void> {
  for (let i = 0; !pattern.test(s.stdout()); i++) {
    assert.ok(i < 1000, `the server never said ${pattern}:\n${s.stdout()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('regcache serve: bounded shutdown', { concurrency: true }, () => {
  test('SIGTERM with a stalled upload: the connection is closed after --drain-timeout, the server exits 0, and the upload is resumed after a restart', async (t) => {
    const dir = await tempDir(t);
    const storage = join(dir, 'storage');
    const s = await serve(t, { storage, readyFile: join(dir, 'ready.json'), extra: [...SLOW_CLIENTS, '--drain-timeout', '1s'] });
    const { id, location } = await stalledUpload(t, s, storage);

    s.child.kill('SIGTERM');
    // The client stalls for good: only the drain timeout ends its request (bodies may idle 10 min).
    assert.deepEqual(await withTimeout(s.exited, 30_000, 'exit after the drain timeout'), { code: 0, signal: null });
    assert.match(s.stdout(), /SIGTERM, draining \(a second signal exits at once\)/);
    assert.match(s.stdout(), /waiting up to 1 s for 1 request \(1 upload\) in flight/);
    assert.match(s.stdout(), /drain timeout \(1 s\): closing the connections of 1 request \(1 upload\) still in flight; an upload cut off can be resumed after a restart/);

    // Restarted, the server knows how far the upload got; the client sends the rest and completes it.
    const again = await serve(t, { storage, readyFile: join(dir, 'ready-2.json') });
    const status = await fetch(new URL(location, again.ready.registry));
    assert.equal(status.status, 204);
    const range = status.headers.get('range')!;
    const received = Number(/^0-(\d+)$/.exec(range)![1]) + 1;
    assert.ok(received >= part.length && received <= whole.length, `range ${range}`);
    const patch = await fetch(new URL(location, again.ready.registry), {
      method: 'PATCH',
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${received}-${whole.length - 1}` },
      body: whole.subarray(received),
    });
    assert.equal(patch.status, 202, await patch.text());
    const put = new URL(patch.headers.get('location')!, again.ready.registry);
    put.searchParams.set('digest', digest);
    const done = await fetch(put, { method: 'PUT' });
    assert.equal(done.status, 201, await done.text());
    const blob = await fetch(`${again.ready.registry}/v2/${REPO}/blobs/${digest}`);
    assert.ok(Buffer.from(await blob.arrayBuffer()).equals(whole));
    await assert.rejects(stat(join(storage, 'uploads', id)), { code: 'ENOENT' });
  });

  test('a second SIGTERM while draining exits at once, releasing the storage', async (t) => {
    const dir = await tempDir(t);
    const storage = join(dir, 'storage');
    const s = await serve(t, { storage, readyFile: join(dir, 'ready.json'), extra: [...SLOW_CLIENTS, '--drain-timeout', '10m'] });
    await stalledUpload(t, s, storage);

    s.child.kill('SIGTERM');
    await said(s, /waiting up to \d+ s for 1 request \(1 upload\) in flight/);
    assert.equal(s.child.exitCode, null, 'the server drains');
    s.child.kill('SIGTERM');
    // 128 + SIGTERM: the drain (10 min) was cut short.
    assert.deepEqual(await withTimeout(s.exited, 30_000, 'exit after the second SIGTERM'), { code: 143, signal: null });
    assert.match(s.stdout(), /SIGTERM again, exiting now/);
    await assert.rejects(stat(join(storage, 'lock')), { code: 'ENOENT' });
  });
});
