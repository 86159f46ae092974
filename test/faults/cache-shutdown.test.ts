// Closing the server while a blob fill's follow-up work (linking the blob into its cached
// repository, eviction) is still running: close() must wait for it, so nothing is written to
// the storage after the server released it. It used not to: the link was written after close()
// returned (after the lock was released, and in the tests after the temp dir was removed, which
// it re-created) (regression test; the link is slowed down here to make the window wide).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../../src/server/index.js';
import { type Distribution, startDistribution } from '../helpers/distribution.js';
import { fetchRaw, pushBlob, sha256 } from '../helpers/fault-proxy.js';
import { tempDir } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';

const LINK_DELAY_MS = 300;

describe('pull-through cache: shutdown', { skip: skipUnless(['docker-registry']) }, () => {
  let upstream: Distribution;
  const blob = randomBytes(200 * 1024);
  let digest: string;

  before(async () => {
    upstream = await startDistribution();
    digest = await pushBlob(upstream.url, 'library/shutdown', blob);
  });
  after(() => upstream?.stop());

  test('close() waits for the follow-up work of a fill: the repository link is written before it returns, nothing after', async (t) => {
    const dir = await tempDir('rc-faults-', t);
    const storage = join(dir.path, 'storage');
    const server = await startServer({
      registryAddr: '127.0.0.1:0',
      cacheAddr: '127.0.0.1:0',
      storage,
      upstreams: [`docker.io=${upstream.url}`],
      logLevel: 'silent',
    });
    t.after(() => server.close());
    const repositories = server.storage.cacheRepositories;
    const writeBlobLink = repositories.writeBlobLink.bind(repositories);
    repositories.writeBlobLink = async (name, d) => {
      await sleep(LINK_DELAY_MS);
      return writeBlobLink(name, d);
    };
    const link = join(storage, 'cache', 'docker.io', 'library', 'shutdown', '_layers', 'sha256', digest.slice(7));

    const r = await fetchRaw(`${server.cacheUrl}/v2/shutdown/blobs/${digest}`);
    assert.equal(r.status, 200);
    assert.equal(sha256(r.body), digest);
    assert.equal(existsSync(link), false, 'the link is still being written when the client has the blob');
    const started = Date.now();
    await server.close();
    assert.ok(existsSync(link), `close() returned after ${Date.now() - started} ms without the repository link written`);
  });
});
