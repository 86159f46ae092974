// A reader that starts while a blob fill is being published: the verified temp file has been
// renamed to the blob's path, but publication (which fsyncs the directory after the rename)
// has not returned, so the fill does not say "committed" yet. Such a reader used to fail with
// ENOENT on the vanished temp file, cutting off a client that had joined the download just
// before its end (regression test). It must read the blob from its published path instead.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { parseDigest, type Digest } from '../../src/oci/index.js';
import { BlobFill } from '../../src/proxy/blob-fill.js';
import { BlobStore, Layout } from '../../src/storage/index.js';
import { tempDir } from '../helpers/proc.js';

/** A blob store whose publication can be held after the rename, for as long as the test likes. */
class HeldPublication extends BlobStore {
  renamed!: Promise<void>;
  release!: () => void;
  private readonly gate: Promise<void>;
  private onRenamed!: () => void;

  constructor(layout: Layout) {
    super(layout);
    this.renamed = new Promise((resolve) => (this.onRenamed = resolve));
    this.gate = new Promise((resolve) => (this.release = resolve));
  }

  override async placeFile(path: string, d: Digest): Promise<boolean> {
    const existed = await super.placeFile(path, d);
    this.onRenamed();
    await this.gate;
    return existed;
  }
}

function readAll(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

test('a reader starting between the rename of a verified fill and its commit reads the whole blob', async (t) => {
  const dir = await tempDir('rc-faults-', t);
  const layout = new Layout(dir.path);
  await Promise.all([mkdir(layout.tmpDir, { recursive: true }), mkdir(layout.blobsDir, { recursive: true })]);
  const blobs = new HeldPublication(layout);
  const data = randomBytes(300 * 1024);
  const digest = parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`);

  const fill = await BlobFill.start(blobs, digest, { size: data.length, body: Readable.from([data]) });
  const early = readAll(fill.reader());
  await blobs.renamed;
  assert.equal(fill.state, 'filling', 'published on disk, not yet committed');
  const late = readAll(fill.reader());
  const ranged = readAll(fill.reader({ start: 1000, end: 1999 }));
  setTimeout(() => blobs.release(), 50);

  assert.ok((await late).equals(data), 'the late reader got the whole blob');
  assert.ok((await ranged).equals(data.subarray(1000, 2000)));
  assert.ok((await early).equals(data));
  await fill.done;
  assert.equal(fill.state, 'committed');
});
