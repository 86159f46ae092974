// The streaming reader of Actions cache entries (src/persist/entry-download.ts) when things go
// wrong mid-stream, against a real HTTP server on loopback serving real tar + zstd archives:
// a connection cut halfway, a download that stalls, a corrupt archive, and a consumer that
// fails. Each ends in a rejection (never an uncaught error or a hang), the file being read
// ends with the failure, and no zstd process is left running.
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
import { EntryConsumerError, readEntry, type EntryFile } from '../../src/persist/entry-download.js';

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

/** Serves `body` at /, then does `end` with the connection: cut it, stall, or finish. */
async function serve(t: TestContext, body: Buffer, end: 'cut' | 'stall' | 'finish', upTo = body.length): Promise<string> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
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

/** A consumer that reads each file to its end and records how each read ended. */
function reader(): { onFile: (f: EntryFile) => Promise<void>; ends: string[] } {
  const ends: string[] = [];
  return {
    ends,
    onFile: async (f) => {
      let n = 0;
      try {
        for await (const c of f.body) n += c.byteLength;
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

test('an intact archive: each file handed over whole, in order', { skip }, async (t) => {
  const url = await serve(t, await archive(t), 'finish');
  const r = reader();
  await readEntry(url, r.onFile, { idleTimeoutMs: 10_000 });
  assert.deepEqual(r.ends, [`ok ${4 * 1024 * 1024}`, `ok ${4 * 1024 * 1024}`]);
  await noZstdLeft();
});

test('the connection cut halfway: readEntry rejects, the file being read ends with the failure', { skip, timeout: 30_000 }, async (t) => {
  const bytes = await archive(t);
  const url = await serve(t, bytes, 'cut', Math.floor(bytes.length * 0.3));
  const r = reader();
  await assert.rejects(readEntry(url, r.onFile, { idleTimeoutMs: 10_000 }), (err) => !(err instanceof EntryConsumerError));
  assert.equal(r.ends.length, 1, `one file started: ${r.ends.join(', ')}`);
  assert.match(r.ends[0]!, /^failed after \d+$/);
  await noZstdLeft();
});

test('a download that stalls: readEntry rejects after the idle timeout', { skip, timeout: 30_000 }, async (t) => {
  const bytes = await archive(t);
  const url = await serve(t, bytes, 'stall', Math.floor(bytes.length * 0.3));
  const r = reader();
  const t0 = Date.now();
  await assert.rejects(readEntry(url, r.onFile, { idleTimeoutMs: 500 }));
  assert.ok(Date.now() - t0 < 10_000, `${Date.now() - t0} ms`);
  assert.match(r.ends[0] ?? '', /^failed after \d+$/);
  await noZstdLeft();
});

test('a corrupt archive (bytes flipped in the middle): readEntry rejects', { skip, timeout: 30_000 }, async (t) => {
  const bytes = await archive(t);
  const mid = bytes.length >> 1;
  for (let i = mid; i < mid + 64; i++) bytes[i] = bytes[i]! ^ 0xff;
  const url = await serve(t, bytes, 'finish');
  await assert.rejects(readEntry(url, reader().onFile, { idleTimeoutMs: 10_000 }), (err) => !(err instanceof EntryConsumerError));
  await noZstdLeft();
});

test('a consumer that fails: readEntry rejects with EntryConsumerError naming its error', { skip, timeout: 30_000 }, async (t) => {
  const url = await serve(t, await archive(t), 'finish');
  const disk = new Error('ENOSPC: no space left on device');
  await assert.rejects(
    readEntry(url, async () => {
      throw disk;
    }, { idleTimeoutMs: 10_000 }),
    (err) => err instanceof EntryConsumerError && err.cause === disk,
  );
  await noZstdLeft();
});
