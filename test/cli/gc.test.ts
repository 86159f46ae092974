// `regcache gc`: collects garbage in a storage root no server is using and prints the result
// as one JSON line; refuses, in one line, a root that a live process owns.
import assert from 'node:assert/strict';
import { stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { openStorage } from '../../src/storage/index.js';
import { OCI_MANIFEST, parseReference } from '../../src/oci/index.js';
import { chunks, digest, tempDir } from '../storage/fixtures.js';
import { runCliToEnd } from '../server/cli-process.js';

/** A storage root with one image and one old orphan blob; closed again. */
async function prepared(t: TestContext): Promise<{ dir: string; orphanPath: string; keptPaths: string[] }> {
  const dir = await tempDir(t);
  const storage = await openStorage(dir);
  try {
    const config = digest('{}');
    await storage.registry.putBlob('app', config, chunks('{}'));
    const orphan = digest('orphan bytes');
    await storage.registry.putBlob('app', orphan, chunks('orphan bytes'));
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.value, size: 2 }, layers: [] }));
    const { digest: manifest } = await storage.registry.putManifest('app', parseReference('v1', 'write'), body, OCI_MANIFEST);
    const old = new Date(Date.now() - 3 * 60 * 60 * 1000);
    for (const d of [config, orphan, manifest]) await utimes(storage.layout.blob(d), old, old);
    return { dir, orphanPath: storage.layout.blob(orphan), keptPaths: [storage.layout.blob(config), storage.layout.blob(manifest)] };
  } finally {
    await storage.close();
  }
}

// Each test has its own storage, ports and processes: they run side by side.
describe('regcache gc', { concurrency: true }, () => {
  test('gc prints its result as one JSON line and deletes the old orphan only', async (t) => {
    const { dir, orphanPath, keptPaths } = await prepared(t);
    const r = await runCliToEnd(t, ['gc', '--storage', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trimEnd().split('\n').length, 1, r.stdout);
    assert.deepEqual(JSON.parse(r.stdout), { marked: 2, deleted: 1, deletedBytes: 12, keptRecent: 0 });
    await assert.rejects(stat(orphanPath), { code: 'ENOENT' });
    for (const p of keptPaths) assert.ok((await stat(p)).isFile());
    await assert.rejects(stat(join(dir, 'lock')), { code: 'ENOENT' });
  });

  test('gc --dry-run reports the same and deletes nothing', async (t) => {
    const { dir, orphanPath } = await prepared(t);
    const r = await runCliToEnd(t, ['gc', '--storage', dir, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { marked: 2, deleted: 1, deletedBytes: 12, keptRecent: 0 });
    assert.ok((await stat(orphanPath)).isFile());
  });

  test('gc --grace keeps blobs younger than the grace period', async (t) => {
    const { dir, orphanPath } = await prepared(t);
    const r = await runCliToEnd(t, ['gc', '--storage', dir, '--grace', '4h']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { marked: 2, deleted: 0, deletedBytes: 0, keptRecent: 1 });
    assert.ok((await stat(orphanPath)).isFile());
  });

  test('gc takes REGCACHE_STORAGE when --storage is not given', async (t) => {
    const { dir, orphanPath } = await prepared(t);
    const r = await runCliToEnd(t, ['gc'], { REGCACHE_STORAGE: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).deleted, 1);
    await assert.rejects(stat(orphanPath), { code: 'ENOENT' });
  });

  test('gc on a storage a live process owns is a one-line error, exit 1, and deletes nothing', async (t) => {
    const { dir, orphanPath } = await prepared(t);
    // This test process is alive and is not the gc process.
    await writeFile(join(dir, 'lock'), String(process.pid));
    const r = await runCliToEnd(t, ['gc', '--storage', dir]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^regcache: storage .* is in use by process ${process.pid}`));
    assert.ok((await stat(orphanPath)).isFile());
  });

  test('gc with a malformed --grace is refused before touching the storage', async (t) => {
    const dir = await tempDir(t);
    const r = await runCliToEnd(t, ['gc', '--storage', join(dir, 'never-created'), '--grace', 'soon']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--grace/);
    await assert.rejects(stat(join(dir, 'never-created')), { code: 'ENOENT' });
  });
});
