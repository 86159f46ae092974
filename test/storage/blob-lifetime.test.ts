// The lifetime owner's rules, one scenario each: a sweep keeps a blob that is held or that was
// published or linked after it began; a publish that finds the blob there freshens its time; a
// mount of a blob the store no longer holds fails; and no code but the owner changes which blobs
// exist or which repositories link them.
import assert from 'node:assert/strict';
import { readdir, readFile, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { chunks, digest, tempStorage } from './fixtures.js';

test('a sweep keeps a held blob, and a blob linked after it began; it deletes the rest with their links', async (t) => {
  const { storage } = await tempStorage(t);
  const blob = (s: string) => ({ d: digest(s), data: Buffer.from(s) });
  const held = blob('held');
  const relinked = blob('relinked');
  const free = blob('free');
  for (const b of [held, relinked, free]) await storage.blobs.putBytes(b.d, b.data, { repositories: storage.cacheRepositories, name: 'c' });
  const sweep = storage.lifetime.beginSweep();
  const release = storage.lifetime.hold(held.d.value);
  assert.equal(await storage.lifetime.link({ repositories: storage.repositories, name: 'pushed' }, relinked.d), true);
  const unlink = [{ repositories: storage.cacheRepositories, name: 'c' }];
  assert.equal(await sweep.remove(held.d, { unlink }), 'held');
  assert.equal(await sweep.remove(relinked.d, { unlink }), 'referenced-since');
  assert.equal(await sweep.remove(free.d, { unlink }), true);
  sweep.end();
  release();
  assert.notEqual(await storage.blobs.stat(held.d), undefined);
  assert.notEqual(await storage.blobs.stat(relinked.d), undefined);
  assert.equal(await storage.blobs.stat(free.d), undefined);
  assert.equal(await storage.cacheRepositories.hasBlobLink('c', free.d), false);
  // A sweep opened after the link does not know of it: the deleter's own mark must keep it.
  const later = storage.lifetime.beginSweep();
  assert.equal(await later.remove(relinked.d, { stillUnreferenced: async () => false }), 'still-referenced');
  later.end();
});

test('pushing bytes the store already holds freshens the blob, so a gc grace period counts from the push', async (t) => {
  const { storage } = await tempStorage(t);
  const d = digest('cached long ago');
  await storage.blobs.putBytes(d, Buffer.from('cached long ago'), { repositories: storage.cacheRepositories, name: 'c' });
  const old = new Date(Date.now() - 5 * 60 * 60 * 1000);
  await utimes(storage.layout.blob(d), old, old);
  await storage.registry.putBlob('app', d, chunks('cached long ago'));
  assert.ok((await stat(storage.layout.blob(d))).mtimeMs > Date.now() - 60_000);
  assert.equal(await storage.repositories.hasBlobLink('app', d), true);
});

test('a mount of a blob the store does not hold fails and links nothing', async (t) => {
  const { storage } = await tempStorage(t);
  const d = digest('never stored');
  assert.equal(await storage.registry.mountBlob('app', d), false);
  assert.equal(await storage.repositories.hasBlobLink('app', d), false);
});

test('no code but the lifetime owner calls the tools that create or remove blobs and links', async () => {
  const src = new URL('../../src/', import.meta.url).pathname;
  const offenders: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('storage/blob-lifetime.ts')) {
        const text = await readFile(p, 'utf8');
        for (const m of text.matchAll(/\.(placeFile|placeBytes|removeBlob|writeBlobLink|removeBlobLink)\(/g)) offenders.push(`${p.slice(src.length)}: ${m[1]}`);
      }
    }
  };
  await walk(src);
  assert.deepEqual(offenders, []);
});
