// The read buffers of blob GETs (src/registry/buffer-pool.ts): their size per answer as more
// answers stream at once, small answers with small buffers, and reuse of released buffers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BUFFER_SIZES, BufferLease, streamingAnswers } from '../../src/registry/buffer-pool.js';

const KIB = 1024;
const LARGE = 64 * 1024 * KIB;

test('buffers are 256 KiB while up to 32 answers stream, then 128 KiB, then 64 KiB at most', () => {
  const leases = Array.from({ length: 100 }, () => BufferLease.start(LARGE));
  try {
    assert.equal(streamingAnswers(), 100);
    assert.deepEqual([leases[0]!.size, leases[31]!.size], [256 * KIB, 256 * KIB]);
    assert.deepEqual([leases[32]!.size, leases[63]!.size], [128 * KIB, 128 * KIB]);
    assert.deepEqual([leases[64]!.size, leases[99]!.size], [64 * KIB, 64 * KIB]);
  } finally {
    for (const l of leases) l.end();
  }
  assert.equal(streamingAnswers(), 0);
});

test('an answer smaller than a buffer gets the smallest size that holds it', () => {
  const sizes = [1, 64 * KIB, 64 * KIB + 1, 200 * KIB].map((n) => {
    const l = BufferLease.start(n);
    l.end();
    return l.size;
  });
  assert.deepEqual(sizes, [64 * KIB, 64 * KIB, 128 * KIB, 256 * KIB]);
});

test('a released buffer is taken again by the next answer; ending a lease twice counts once', () => {
  const first = BufferLease.start(LARGE);
  const buf = first.take();
  assert.equal(buf.length, BUFFER_SIZES[0]);
  first.release(buf);
  first.end();
  first.end();
  assert.equal(streamingAnswers(), 0);
  const second = BufferLease.start(LARGE);
  assert.equal(second.take(), buf);
  second.end();
});
