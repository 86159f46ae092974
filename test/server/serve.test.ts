// `regcache serve` as a process: the ready file, both ports answering, a graceful SIGTERM
// that lets an in-flight upload finish, one-line errors for a busy port or storage, and the
// node flags it runs with.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { openStorage } from '../../src/storage/index.js';
import { tempDir } from '../storage/fixtures.js';
import { SERVER_NODE_FLAGS } from '../../src/server/node-flags.js';
import { CLI, runCliToEnd, serve, withTimeout } from './cli-process.js';

async function get(url: string): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(url);
  return { status: res.status, headers: res.headers, body: await res.text() };
}

/** A port on 127.0.0.1 held by another server until the test ends. */
async function busyPort(t: import('node:test').TestContext): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

function assertOneLineError(stderr: string, pattern: RegExp): void {
  const lines = stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^regcache: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(stderr, /\n\s+at |Error:/);
}

// Each test has its own storage, ports and processes: they run side by side.
describe('regcache serve', { concurrency: true }, () => {
  test('serve on port 0 writes the ready file with both URLs and its pid, and both ports answer', async (t) => {
    const dir = await tempDir(t);
    const storage = join(dir, 'storage');
    const s = await serve(t, { storage, readyFile: join(dir, 'ready.json') });
    assert.match(s.ready.registry, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(s.ready.cache, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(s.ready.registry, s.ready.cache);
    // The server's pid: the bin's own (re-executed in place) or, on Node 20, its child's.
    const cmdline = (await readFile(`/proc/${s.ready.pid}/cmdline`, 'utf8')).split('\0');
    assert.ok(cmdline.includes('serve') && cmdline.some((a) => a.endsWith('dist/cli.js')), `the ready file's pid is the server: ${cmdline.join(' ')}`);
    assert.equal(s.ready.storage, storage);
    for (const base of [s.ready.registry, s.ready.cache]) {
      const res = await get(`${base}/v2/`);
      assert.equal(res.status, 200);
      assert.equal(res.body, '{}');
      assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
    }
    assert.match(s.stdout(), /registry http:\/\/127\.0\.0\.1:\d+, cache http:\/\/127\.0\.0\.1:\d+/);
    // The lock names the server; SIGTERM releases it and exits 0.
    assert.equal((await readlink(join(storage, 'lock'))).split(' ')[0], String(s.ready.pid));
    s.child.kill('SIGTERM');
    assert.deepEqual(await withTimeout(s.exited, 10_000, 'exit after SIGTERM'), { code: 0, signal: null });
    await assert.rejects(stat(join(storage, 'lock')), { code: 'ENOENT' });
  });

  test('SIGTERM during an in-flight upload lets it finish, then exits 0', async (t) => {
    const dir = await tempDir(t);
    const storage = join(dir, 'storage');
    const s = await serve(t, { storage, readyFile: join(dir, 'ready.json') });
    const post = await fetch(`${s.ready.registry}/v2/drain/test/blobs/uploads/`, { method: 'POST' });
    assert.equal(post.status, 202);
    const location = post.headers.get('location')!;
    const id = post.headers.get('docker-upload-uuid')!;
    const first = Buffer.alloc(256 * 1024, 0x61);
    const second = Buffer.alloc(256 * 1024, 0x62);

    // A keep-alive client, as docker is: the drain must not wait for its idle timeout.
    const agent = new http.Agent({ keepAlive: true });
    t.after(() => agent.destroy());
    const url = new URL(location, s.ready.registry);
    let request!: http.ClientRequest;
    const answered = new Promise<{ status: number; range: string | undefined; connection: string | undefined }>((resolve, reject) => {
      request = http.request(url, { method: 'PATCH', agent, headers: { 'content-type': 'application/octet-stream', 'content-range': `0-${first.length + second.length - 1}`, 'content-length': first.length + second.length } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, range: res.headers.range as string | undefined, connection: res.headers.connection }));
      });
      request.on('error', reject);
    });
    request.write(first);
    // Wait until the server has stored part of the chunk: the request is in flight.
    const dataFile = join(storage, 'uploads', id, 'data');
    for (let i = 0; (await stat(dataFile)).size < first.length; i++) {
      assert.ok(i < 400, 'the first half never reached the server');
      await new Promise((r) => setTimeout(r, 10));
    }
    s.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(s.child.exitCode, null, 'the server must wait for the in-flight request');
    request.end(second);
    const res = await withTimeout(answered, 10_000, 'the in-flight PATCH');
    assert.equal(res.status, 202);
    assert.equal(res.range, `0-${first.length + second.length - 1}`);
    const exit = await withTimeout(s.exited, 10_000, 'exit after the drain');
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(s.stdout(), /SIGTERM, draining/);

    // Everything the client sent is on disk, and the session completes after a restart.
    const reopened = await openStorage(storage);
    t.after(() => reopened.close());
    const session = await reopened.uploads.get('drain/test', id);
    assert.equal(session.size, first.length + second.length);
  });

  test('a registry port in use is a one-line error naming --registry-addr, exit 1', async (t) => {
    const dir = await tempDir(t);
    const port = await busyPort(t);
    const r = await runCliToEnd(t, ['serve', '--registry-addr', `127.0.0.1:${port}`, '--cache-addr', '127.0.0.1:0', '--storage', join(dir, 's'), '--log-level', 'silent']);
    assert.equal(r.code, 1);
    assertOneLineError(r.stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use.*--registry-addr`));
    // The storage it had opened is released again.
    await assert.rejects(stat(join(dir, 's', 'lock')), { code: 'ENOENT' });
  });

  test('a cache port in use is a one-line error naming --cache-addr, exit 1', async (t) => {
    const dir = await tempDir(t);
    const port = await busyPort(t);
    const r = await runCliToEnd(t, ['serve', '--registry-addr', '127.0.0.1:0', '--cache-addr', `127.0.0.1:${port}`, '--storage', join(dir, 's')]);
    assert.equal(r.code, 1);
    assertOneLineError(r.stderr, /--cache-addr/);
  });

  test('a malformed listen address is a one-line error naming the flag', async (t) => {
    const dir = await tempDir(t);
    const r = await runCliToEnd(t, ['serve', '--registry-addr', 'localhost', '--cache-addr', '127.0.0.1:0', '--storage', join(dir, 's'), '--log-level', 'silent']);
    assert.equal(r.code, 1);
    assertOneLineError(r.stderr, /--registry-addr: expected HOST:PORT/);
  });

  test('a second server on the same storage is a one-line error naming the owner, exit 1', async (t) => {
    const dir = await tempDir(t);
    const storage = join(dir, 'storage');
    const first = await serve(t, { storage, readyFile: join(dir, 'ready.json') });
    const r = await runCliToEnd(t, ['serve', '--registry-addr', '127.0.0.1:0', '--cache-addr', '127.0.0.1:0', '--storage', storage, '--log-level', 'silent']);
    assert.equal(r.code, 1);
    assertOneLineError(r.stderr, new RegExp(`in use by process ${first.ready.pid}`));
    assert.equal((await get(`${first.ready.registry}/v2/`)).status, 200);
  });

  test("serve started without node flags runs with the server's, on every Node: in place, or (Node 20) as a child the bin passes signals to", async (t) => {
    const dir = await tempDir(t);
    const s = await serve(t, { storage: join(dir, 'storage'), readyFile: join(dir, 'ready.json') });
    const argv = (await readFile(`/proc/${s.ready.pid}/cmdline`, 'utf8')).split('\0');
    const flags = argv.slice(1, argv.indexOf(CLI));
    assert.deepEqual(flags, [...SERVER_NODE_FLAGS]);
    if (typeof (process as { execve?: unknown }).execve === 'function') assert.equal(s.ready.pid, s.child.pid, 'replaced in place: same pid');
    else assert.notEqual(s.ready.pid, s.child.pid, 'Node 20: the server is a child of the bin');
    // SIGTERM to the process the user started stops the server, which drains and exits 0.
    s.child.kill('SIGTERM');
    assert.deepEqual(await withTimeout(s.exited, 10_000, 'exit after SIGTERM'), { code: 0, signal: null });
    await assert.rejects(readFile(`/proc/${s.ready.pid}/cmdline`), { code: 'ENOENT' }, 'the server is gone too');
  });

  test('a server that fails to start makes the bin exit 1 with its one-line error (on Node 20, through the child)', async (t) => {
    const dir = await tempDir(t);
    const port = await busyPort(t);
    const r = await runCliToEnd(t, ['serve', '--registry-addr', `127.0.0.1:${port}`, '--cache-addr', '127.0.0.1:0', '--storage', join(dir, 's'), '--log-level', 'silent']);
    assert.equal(r.code, 1);
    assertOneLineError(r.stderr, /--registry-addr/);
  });
});
