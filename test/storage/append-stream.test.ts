// appendStream, the write path of every push and cache fill: chunks that arrive while a write
// is in flight go to disk together in one writev (a fast source gets few large writes), a slow
// source is written chunk by chunk as it comes (nothing waits for more data), the progress it
// reports never runs ahead of the file, and a failed write surfaces with no write left behind.
import assert from 'node:assert/strict';
import { fstatSync } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { newHash } from '../../src/oci/index.js';
import { appendStream } from '../../src/storage/blob-store.js';
import { bytes, tempDir } from './fixtures.js';

/** A real file handle whose writes are recorded (their sizes, and how many are running), then carried out. */
function recordingWrites(fh: FileHandle): { fh: FileHandle; writes: number[]; running: () => number } {
  const writes: number[] = [];
  let running = 0;
  const track = <T>(p: Promise<T>): Promise<T> => {
    running++;
    return p.finally(() => running--);
  };
  const recorded = new Proxy(fh, {
    get(target, prop) {
      if (prop === 'writev') {
        return (buffers: Uint8Array[], position: number) => {
          writes.push(buffers.reduce((n, b) => n + b.byteLength, 0));
          return track(target.writev(buffers, position));
        };
      }
      if (prop === 'write') {
        return (buffer: Uint8Array, ...rest: [number, number, number]) => {
          writes.push(rest[1] ?? buffer.byteLength);
          return track(target.write(buffer, ...rest));
        };
      }
      const value = Reflect.get(target, prop) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { fh: recorded, writes, running: () => running };
}

/** `data` in pieces of `size`, all available at once (a fast client). */
async function* fast(data: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < data.byteLength; off += size) yield data.subarray(off, off + size);
}

test('a fast source is written in fewer, larger writes, byte-exact and hashed', async (t) => {
  const dir = await tempDir(t);
  const data = bytes(4 * 1024 * 1024);
  const file = await open(join(dir, 'blob'), 'wx');
  t.after(() => file.close());
  const { fh, writes } = recordingWrites(file);
  const hash = newHash('sha256');
  const n = await appendStream(fh, fast(data, 16 * 1024), hash, 0);
  assert.equal(n, data.byteLength);
  assert.deepEqual(await readFile(join(dir, 'blob')), data);
  assert.equal(hash.digest('hex'), newHash('sha256').update(data).digest('hex'));
  const chunks = data.byteLength / (16 * 1024);
  assert.equal(writes.reduce((a, b) => a + b, 0), data.byteLength, 'every byte went through the recorded writes');
  assert.ok(writes.length < chunks / 4, `${chunks} chunks of 16 KiB went to disk in ${writes.length} writes`);
  // A write gathers at most 256 KiB and the chunk that passed the mark.
  assert.ok(Math.max(...writes) <= 256 * 1024 + 16 * 1024, `largest write ${Math.max(...writes)} bytes`);
});

test('a slow source is written as it comes: each chunk is on disk before the next arrives', async (t) => {
  const dir = await tempDir(t);
  const data = bytes(8 * 1000);
  const file = await open(join(dir, 'blob'), 'wx');
  t.after(() => file.close());
  const { fh, writes } = recordingWrites(file);
  let reported = 0;
  const seenAtEachChunk: Array<[number, number]> = [];
  // The source sends its next chunk only once the previous one is reported written (or after
  // 2 s): a writer that held a chunk back waiting for more would show here.
  async function* slow(): AsyncGenerator<Uint8Array> {
    for (let off = 0; off < data.byteLength; off += 1000) {
      for (const until = Date.now() + 2000; reported < off && Date.now() < until; ) await sleep(5);
      seenAtEachChunk.push([off, reported]);
      yield data.subarray(off, off + 1000);
    }
  }
  await appendStream(fh, slow(), undefined, 0, Number.POSITIVE_INFINITY, (b) => (reported += b));
  for (const [off, seen] of seenAtEachChunk) assert.equal(seen, off, `everything before byte ${off} was written before the next chunk came`);
  assert.deepEqual(writes, Array(8).fill(1000));
  assert.equal(reported, data.byteLength);
});

test('progress never runs ahead of the file: a reader following it finds every reported byte', async (t) => {
  const dir = await tempDir(t);
  const data = bytes(2 * 1024 * 1024, 7);
  const fh = await open(join(dir, 'blob'), 'wx');
  t.after(() => fh.close());
  let reported = 0;
  const behind: string[] = [];
  await appendStream(fh, fast(data, 64 * 1024), undefined, 100, Number.POSITIVE_INFINITY, (b) => {
    reported += b;
    const size = fstatSync(fh.fd).size;
    if (size < 100 + reported) behind.push(`${reported} reported, file holds ${size - 100}`);
  });
  assert.deepEqual(behind, []);
  assert.equal(reported, data.byteLength);
  assert.deepEqual((await readFile(join(dir, 'blob'))).subarray(100), data);
});

test('a failed write surfaces as the error, with no write left in flight', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'blob');
  await (await open(path, 'wx')).close();
  const file = await open(path, 'r');
  const { fh: readOnly, running } = recordingWrites(file);
  let pulled = 0;
  async function* source(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 64; i++) {
      pulled++;
      yield bytes(64 * 1024, i);
    }
  }
  await assert.rejects(appendStream(readOnly, source(), undefined, 0), (err: NodeJS.ErrnoException) => err.code === 'EBADF');
  assert.equal(running(), 0, 'no write is running once appendStream rejected');
  // The source was not read to its end once the disk said no.
  assert.ok(pulled < 64, `${pulled} chunks pulled`);
  await file.close();
});

test('with more than 16 writers at once, chunks are written one by one (gathering would hold memory per writer)', async (t) => {
  const dir = await tempDir(t);
  // 16 other writers, each waiting for data that comes only at the end.
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  async function* idle(): AsyncGenerator<Uint8Array> {
    await released;
  }
  const others: Promise<number>[] = [];
  const handles: FileHandle[] = [];
  for (let i = 0; i < 16; i++) {
    const fh = await open(join(dir, `other-${i}`), 'wx');
    handles.push(fh);
    others.push(appendStream(fh, idle(), undefined, 0));
  }
  t.after(async () => {
    release();
    await Promise.all(others);
    for (const fh of handles) await fh.close();
  });
  const data = bytes(1024 * 1024, 3);
  const file = await open(join(dir, 'blob'), 'wx');
  t.after(() => file.close());
  const { fh, writes } = recordingWrites(file);
  await appendStream(fh, fast(data, 16 * 1024), undefined, 0);
  assert.deepEqual(writes, Array(64).fill(16 * 1024), 'the 17th writer wrote every chunk on its own');
  assert.deepEqual(await readFile(join(dir, 'blob')), data);
});
