// `regcache gc`: collects garbage in a storage root and says what it deleted, what it kept and
// why (the grace period, with the flag that changes it), what a dry run would delete, and which
// upload sessions are incomplete (removed once idle past --upload-max-age). It refuses a storage
// directory that does not exist. When a server holds the storage, the server collects, asked
// over the storage's gc socket; `serve --gc-interval` collects periodically.
import assert from 'node:assert/strict';
import { readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test, type TestContext } from 'node:test';
import { openStorage } from '../../src/storage/index.js';
import { OCI_MANIFEST, parseReference } from '../../src/oci/index.js';
import { chunks, digest, tempDir } from '../storage/fixtures.js';
import { runCliToEnd, serve } from '../server/cli-process.js';
import { fetchBytes } from '../helpers/upstream-images.js';

const HOUR = 60 * 60 * 1000;

/** A storage root with one image, one old orphan blob (12 bytes) and one fresh one (5 bytes); closed again. */
async function prepared(t: TestContext, o: { fresh?: boolean } = {}): Promise<{ dir: string; orphanPath: string; freshPath: string; keptPaths: string[] }> {
  const dir = await tempDir(t);
  const storage = await openStorage(dir);
  try {
    const config = digest('{}');
    await storage.registry.putBlob('app', config, chunks('{}'));
    const orphan = digest('orphan bytes');
    await storage.registry.putBlob('app', orphan, chunks('orphan bytes'));
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.value, size: 2 }, layers: [] }));
    const { digest: manifest } = await storage.registry.putManifest('app', parseReference('v1', 'write'), body, OCI_MANIFEST);
    const old = new Date(Date.now() - 3 * HOUR);
    for (const d of [config, orphan, manifest]) await utimes(storage.layout.blob(d), old, old);
    const fresh = digest('fresh');
    if (o.fresh) await storage.registry.putBlob('app', fresh, chunks('fresh'));
    return { dir, orphanPath: storage.layout.blob(orphan), freshPath: storage.layout.blob(fresh), keptPaths: [storage.layout.blob(config), storage.layout.blob(manifest)] };
  } finally {
    await storage.close();
  }
}

/** An upload session of `repository` holding `bytes`, last written `idleMs` ago; returns its id. */
async function incompleteUpload(dir: string, repository: string, bytes: string, idleMs: number): Promise<string> {
  const storage = await openStorage(dir);
  try {
    const session = await storage.uploads.create(repository);
    await storage.uploads.append(session, chunks(bytes));
    const sessionDir = storage.layout.upload(session.id);
    const then = Date.now() - idleMs;
    await writeFile(join(sessionDir, 'session.json'), JSON.stringify({ repository, startedAt: then }));
    await utimes(join(sessionDir, 'data'), new Date(then), new Date(then));
    return session.id;
  } finally {
    await storage.close();
  }
}

const exists = (p: string) => stat(p).then(() => true, () => false);

// Each test has its own storage, ports and processes: they run side by side.
describe('regcache gc', { concurrency: true }, () => {
  test('gc says what it deleted and what it kept, and deletes the old orphan only', async (t) => {
    const { dir, orphanPath, keptPaths } = await prepared(t);
    const r = await runCliToEnd(t, ['gc', '--storage', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^deleted 1 blob \(12 B\) that nothing references$/m);
    assert.match(r.stdout, /^kept 2 blobs that manifests or the cache reference$/m);
    assert.match(r.stdout, /^no incomplete uploads$/m);
    assert.doesNotMatch(r.stdout, /would delete|younger than/);
    assert.equal(await exists(orphanPath), false);
    for (const p of keptPaths) assert.ok(await exists(p));
    assert.equal(await exists(join(dir, 'lock')), false);
  });

  test('gc --json prints the result as one JSON line', async (t) => {
    const { dir } = await prepared(t);
    const r = await runCliToEnd(t, ['gc', '--storage', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trimEnd().split('\n').length, 1, r.stdout);
    const result = JSON.parse(r.stdout);
    assert.deepEqual(
      { marked: result.marked, deleted: result.deleted, deletedBytes: result.deletedBytes, keptRecent: result.keptRecent, dryRun: result.dryRun, uploads: result.uploads },
      { marked: 2, deleted: 1, deletedBytes: 12, keptRecent: 0, dryRun: false, uploads: [] },
    );
  });

  test('gc --dry-run says what it would delete and deletes nothing', async (t) => {
    const { dir, orphanPath } = await prepared(t);
    const r = await runCliToEnd(t, ['gc', '--storage', dir, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /dry run: nothing is deleted/);
    assert.match(r.stdout, /^would delete 1 blob \(12 B\) that nothing references$/m);
    assert.doesNotMatch(r.stdout, /^deleted/m);
    assert.ok(await exists(orphanPath));
  });

  test('gc names the blobs it kept for the grace period, with the flag that deletes them', async (t) => {
    const { dir, orphanPath, freshPath } = await prepared(t, { fresh: true });
    const r = await runCliToEnd(t, ['gc', '--storage', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^kept 1 blob \(5 B\) younger than --grace 1h; --grace 0 deletes them now$/m);
    assert.ok(await exists(freshPath));
    assert.equal(await exists(orphanPath), false);
    const longer = await runCliToEnd(t, ['gc', '--storage', dir, '--grace', '4h', '--dry-run']);
    assert.match(longer.stdout, /^kept 1 blob \(5 B\) younger than --grace 4h; --grace 0 deletes them now$/m);
    const now = await runCliToEnd(t, ['gc', '--storage', dir, '--grace', '0']);
    assert.match(now.stdout, /^deleted 1 blob \(5 B\) that nothing references$/m);
    assert.equal(await exists(freshPath), false);
  });

  test('gc reports incomplete uploads with age and size, and removes those idle past --upload-max-age', async (t) => {
    const { dir } = await prepared(t);
    const stale = await incompleteUpload(dir, 'app', 'x'.repeat(3000), 3 * HOUR + 5 * 60_000);
    const recent = await incompleteUpload(dir, 'other/repo', 'abc', 10 * 60_000);
    const r = await runCliToEnd(t, ['gc', '--storage', dir, '--upload-max-age', '1h', '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^2 incomplete uploads \(3\.0 KB\):$/m);
    assert.match(r.stdout, new RegExp(`^  app ${stale}: 3\\.0 KB, idle 3h5m: would remove \\(idle past --upload-max-age 1h\\)$`, 'm'));
    assert.match(r.stdout, new RegExp(`^  other/repo ${recent}: 3 B, idle 10m(\\d+s)?: kept \\(idle less than --upload-max-age 1h\\)$`, 'm'));
    assert.ok(await exists(join(dir, 'uploads', stale)));

    const removed = await runCliToEnd(t, ['gc', '--storage', dir, '--upload-max-age', '1h']);
    assert.match(removed.stdout, new RegExp(`^  app ${stale}: 3\\.0 KB, idle 3h5m: removed \\(idle past --upload-max-age 1h\\)$`, 'm'));
    assert.equal(await exists(join(dir, 'uploads', stale)), false);
    assert.ok(await exists(join(dir, 'uploads', recent)));
    // The default is 24h: the same sessions are then kept.
    const byDefault = await runCliToEnd(t, ['gc', '--storage', dir]);
    assert.match(byDefault.stdout, /kept \(idle less than --upload-max-age 1d\)/);
  });

  test('gc takes REGCACHE_STORAGE when --storage is not given', async (t) => {
    const { dir, orphanPath } = await prepared(t);
    const r = await runCliToEnd(t, ['gc'], { REGCACHE_STORAGE: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^deleted 1 blob/m);
    assert.equal(await exists(orphanPath), false);
  });

  test('gc refuses a storage directory that does not exist, naming --storage, and creates nothing', async (t) => {
    const dir = await tempDir(t);
    const typo = join(dir, 'typo');
    const r = await runCliToEnd(t, ['gc', '--storage', typo]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^regcache: --storage ${typo} is not a storage directory \\(it does not exist\\)`));
    assert.equal(await exists(typo), false);
    const fromEnv = await runCliToEnd(t, ['gc'], { REGCACHE_STORAGE: typo });
    assert.equal(fromEnv.code, 1);
    assert.match(fromEnv.stderr, /^regcache: \$REGCACHE_STORAGE .* does not exist/);
  });

  test('gc on a storage a live process holds without answering gc requests is a one-line error, exit 1, and deletes nothing', async (t) => {
    const { dir, orphanPath } = await prepared(t);
    // This test process is alive, is not the gc process, and listens on no gc socket.
    await writeFile(join(dir, 'lock'), String(process.pid));
    const r = await runCliToEnd(t, ['gc', '--storage', dir]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^regcache: storage .* is in use by process ${process.pid}, and it did not collect: .*gc\\.sock`));
    assert.ok(await exists(orphanPath));
  });

  test('gc with a malformed --grace is refused before touching the storage', async (t) => {
    const dir = await tempDir(t);
    const r = await runCliToEnd(t, ['gc', '--storage', join(dir, 'never-created'), '--grace', 'soon']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--grace/);
    assert.equal(await exists(join(dir, 'never-created')), false);
  });

  test('gc on a storage a running server holds asks the server, which collects while it serves', async (t) => {
    const { dir, orphanPath, freshPath, keptPaths } = await prepared(t, { fresh: true });
    const readyFile = join(await tempDir(t), 'ready.json');
    const server = await serve(t, { storage: dir, readyFile });
    const dry = await runCliToEnd(t, ['gc', '--storage', dir, '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`collected by the server running on it, pid ${server.ready.pid}`));
    assert.match(dry.stdout, /^would delete 1 blob \(12 B\)/m);
    assert.match(dry.stdout, /^kept 1 blob \(5 B\) younger than --grace 1h/m);
    assert.ok(await exists(orphanPath));

    const r = await runCliToEnd(t, ['gc', '--storage', dir, '--grace', '0']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^deleted 2 blobs \(17 B\) that nothing references$/m);
    assert.equal(await exists(orphanPath), false);
    assert.equal(await exists(freshPath), false);
    for (const p of keptPaths) assert.ok(await exists(p));
    // The server goes on serving the image.
    const m = await fetchBytes(`${server.ready.registry}/v2/app/manifests/v1`, { headers: { accept: OCI_MANIFEST } });
    assert.equal(m.status, 200);
    server.child.kill('SIGTERM');
    await server.exited;
    assert.equal(await exists(join(dir, 'gc.sock')), false, 'the server removes its gc socket on exit');
  });

  test('serve --gc-interval collects periodically', async (t) => {
    const { dir, orphanPath, keptPaths } = await prepared(t);
    const readyFile = join(await tempDir(t), 'ready.json');
    const server = await serve(t, { storage: dir, readyFile, extra: ['--gc-interval', '1s'] });
    for (let i = 0; i < 400 && (await exists(orphanPath)); i++) await sleep(50);
    assert.equal(await exists(orphanPath), false, 'the old orphan was not collected');
    for (const p of keptPaths) assert.ok(await exists(p));
    server.child.kill('SIGTERM');
    assert.equal((await server.exited).code, 0);
    assert.ok((await readFile(readyFile, 'utf8')).length > 0);
  });
});
