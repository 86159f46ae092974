// The streaming reader of Actions cache entries (src/persist/entry-download.ts) when things go
// wrong mid-stream, against a real HTTP server on loopback serving real tar + zstd archives:
// a connection cut halfway, a download that stalls, a corrupt archive, an error status, a
// consumer that fails or reads slowly, a zstd that cannot start. Each ends in a rejection
// (never an uncaught error or a hang) that says whose fault it was (the transfer's, the
// entry's, the consumer's), the file being read ends with the failure before readEntry
// returns, and no zstd process is left running. Both ways of decompressing run on every Node:
// Node's own zstd where it has one, and the zstd binary.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { childPids, run, tempDir } from '../helpers/proc.js';
import { skipUnless, toolPath } from '../helpers/tools.js';
import { EntryConsumerError, EntryTransportError, readEntry, type EntryFile, type ReadOptions } from '../../src/persist/entry-download.js';

const skip = skipUnless(['zstd']);

/** A zstd-compressed tar of two 4 MiB files, as the library's saves make them. */
async function archive(t: TestContext): Promise<Buffer> {
  const dir = (await tempDir('rc-entry-', t)).path;
  await mkdir(join(dir, 'regcache-pack'), { recursive: true });
  for (let i = 0; i < 2; i++) {
    const data = randomBytes(4 * 1024 * 1024);
    await writeFile(join(dir, 'regcache-pack', `sha256-${createHash('sha256').update(data).digest('hex')}`), data);
  }
  await run('/bin/sh', ['-c', `tar -C '${dir}' -cf - regcache-pack | '${toolPath('zstd')}' -q -o '${dir}/cache.tzst'`]);
  return readFile(join(dir, 'cache.tzst'));
}

/** Serves `body` at / (with `status`), then does `end` with the connection: cut it, stall, or finish. */
async function serve(t: TestContext, body: Buffer, end: 'cut' | 'stall' | 'finish', upTo = body.length, status = 200): Promise<string> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(status, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
    res.write(body.subarray(0, upTo), () => {
      if (end === 'cut') setTimeout(() => res.socket?.destroy(), 50);
      else if (end === 'finish') res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

/** A consumer that reads each file to its end (pausing `pauseMs` between chunks) and records how each read ended. */
function reader(pauseMs = 0): { onFile: (f: EntryFile) => Promise<void>; ends: string[] } {
  const ends: string[] = [];
  return {
    ends,
    onFile: async (f) => {
      let n = 0;
      try {
        for await (const c of f.body) {
          n += c.byteLength;
          if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
        }
        ends.push(`ok ${n}`);
      } catch (err) {
        ends.push(`failed after ${n}`);
        throw err;
      }
    },
  };
}

/** zstd processes this process started that still run. */
function zstdChildren(): number[] {
  return childPids(process.pid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'zstd';
    } catch {
      return false;
    }
  });
}

async function noZstdLeft(): Promise<void> {
  for (let i = 0; i < 50 && zstdChildren().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(zstdChildren(), [], 'no zstd process left running');
}

/** The two ways of decompressing zstd: Node's own where it has one, and the binary. */
const WAYS: Array<[string, Partial<ReadOptions>]> = [
  ['default decompression', {}],
  ['the zstd binary', { zstdBinary: 'zstd' }],
];

for (const [way, extra] of WAYS) {
  const opts = (idleTimeoutMs: number): ReadOptions => ({ idleTimeoutMs, ...extra, ...(extra.zstdBinary ? { zstdBinary: toolPath('zstd') } : {}) });

  test(`${way}: an intact archive: each file handed over whole, in order`, { skip }, async (t) => {
    const url = await serve(t, await archive(t), 'finish');
    const r = reader();
    await readEntry(url, r.onFile, opts(10_000));
    assert.deepEqual(r.ends, [`ok ${4 * 1024 * 1024}`, `ok ${4 * 1024 * 1024}`]);
    await noZstdLeft();
  });

  test(`${way}: the connection cut halfway: a transfer failure; the file being read ends with it`, { skip, timeout: 30_000 }, async (t) => {
    const bytes = await archive(t);
    const url = await serve(t, bytes, 'cut', Math.floor(bytes.length * 0.3));
    const r = reader();
    await assert.rejects(readEntry(url, r.onFile, opts(10_000)), EntryTransportError);
    assert.equal(r.ends.length, 1, `one file started: ${r.ends.join(', ')}`);
    assert.match(r.ends[0]!, /^failed after \d+$/);
    await noZstdLeft();
  });

  test(`${way}: the connection cut while the consumer reads slowly: it has ended before readEntry returns`, { skip, timeout: 30_000 }, async (t) => {
    const bytes = await archive(t);
    const url = await serve(t, bytes, 'cut', Math.floor(bytes.length * 0.3));
    const r = reader(5);
    await assert.rejects(readEntry(url, r.onFile, opts(10_000)), EntryTransportError);
    assert.equal(r.ends.length, 1, 'the consumer had ended when readEntry rejected');
    assert.match(r.ends[0]!, /^failed after \d+$/);
    await noZstdLeft();
  });

  test(`${way}: a download that stalls: a transfer failure after the idle timeout`, { skip, timeout: 30_000 }, async (t) => {
    const bytes = await archive(t);
    const url = await serve(t, bytes, 'stall', Math.floor(bytes.length * 0.3));
    const r = reader();
    const t0 = Date.now();
    await assert.rejects(readEntry(url, r.onFile, opts(500)), EntryTransportError);
    assert.ok(Date.now() - t0 < 10_000, `${Date.now() - t0} ms`);
    assert.match(r.ends[0] ?? '', /^failed after \d+$/);
    await noZstdLeft();
  });

  test(`${way}: a corrupt archive (bytes flipped in the middle): the entry's fault, not the transfer's`, { skip, timeout: 30_000 }, async (t) => {
    const bytes = await archive(t);
    const mid = bytes.length >> 1;
    for (let i = mid; i < mid + 64; i++) bytes[i] = bytes[i]! ^ 0xff;
    const url = await serve(t, bytes, 'finish');
    await assert.rejects(readEntry(url, reader().onFile, opts(10_000)), (err) => !(err instanceof EntryConsumerError) && !(err instanceof EntryTransportError));
    await noZstdLeft();
  });

  test(`${way}: a consumer that fails: EntryConsumerError naming its error`, { skip, timeout: 30_000 }, async (t) => {
    const url = await serve(t, await archive(t), 'finish');
    const disk = new Error('ENOSPC: no space left on device');
    await assert.rejects(
      readEntry(url, async () => {
        throw disk;
      }, opts(10_000)),
      (err) => err instanceof EntryConsumerError && err.cause === disk,
    );
    await noZstdLeft();
  });
}

test('an answer of 503 is a transfer failure; 404 is not', { skip, timeout: 30_000 }, async (t) => {
  const bytes = await archive(t);
  await assert.rejects(readEntry(await serve(t, bytes, 'finish', bytes.length, 503), reader().onFile, { idleTimeoutMs: 10_000 }), EntryTransportError);
  await assert.rejects(readEntry(await serve(t, bytes, 'finish', bytes.length, 404), reader().onFile, { idleTimeoutMs: 10_000 }), (err) => !(err instanceof EntryTransportError) && /404/.test(String(err)));
});

test('a zstd binary that cannot start: readEntry rejects (no uncaught error)', { skip, timeout: 30_000 }, async (t) => {
  const url = await serve(t, await archive(t), 'finish');
  const r = reader();
  await assert.rejects(readEntry(url, r.onFile, { idleTimeoutMs: 10_000, zstdBinary: '/nonexistent/zstd' }), /ENOENT/);
  assert.deepEqual(r.ends, []);
});
