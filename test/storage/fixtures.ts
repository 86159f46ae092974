// Shared fixtures of the storage, registry, server and CLI tests: temporary directories and
// storage roots that are cleaned when the test ends, byte sources, and digest helpers.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { openStorage, type Storage } from '../../src/storage/index.js';
import { parseDigest, type Digest } from '../../src/oci/index.js';

/** A fresh directory removed after the test. */
export async function tempDir(t: TestContext, prefix = 'regcache-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A storage root opened in a fresh directory; closed and removed after the test. */
export async function tempStorage(t: TestContext): Promise<{ dir: string; storage: Storage }> {
  const dir = await mkdtemp(join(tmpdir(), 'regcache-storage-'));
  const storage = await openStorage(dir);
  t.after(async () => {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, storage };
}

/** An async iterable over the given chunks. */
export async function* chunks(...parts: Array<Uint8Array | string>): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield typeof p === 'string' ? Buffer.from(p) : p;
}

/** The digest of `data` with `algorithm`. */
export function digest(data: Uint8Array | string, algorithm: 'sha256' | 'sha512' = 'sha256'): Digest {
  return parseDigest(`${algorithm}:${createHash(algorithm).update(data).digest('hex')}`);
}

/** A made-up but well-formed sha256 digest. */
export function fakeDigest(fill = 'a'): Digest {
  return parseDigest(`sha256:${fill.repeat(64)}`);
}

/** Deterministic pseudo-random bytes (no two calls with different seeds agree). */
export function bytes(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let x = seed * 2654435761 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
