// Runs every conformance case against regcache's registry port, started in-process on a free
// 127.0.0.1 port over a fresh storage dir. Every case must pass unless known-differences.ts
// lists it for 'regcache' (it should list none).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../../src/server/index.js';
import { knownDifference, runCase, unknownDifferenceIds } from './known-differences.js';
import { conformanceCases, type ConformanceContext } from './suite.js';

describe('OCI conformance: regcache', { concurrency: 4 }, () => {
  const runId = randomBytes(4).toString('hex');
  let storage: string | undefined;
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  const ctx: ConformanceContext = {
    get baseUrl() {
      if (!server) throw new Error('regcache is not running');
      return server.registryUrl;
    },
    repo: (suffix) => `conformance/${runId}/${suffix}`,
  };

  before(async () => {
    storage = await mkdtemp(join(tmpdir(), 'regcache-conformance-'));
    server = await startServer({ registryAddr: '127.0.0.1:0', cacheAddr: '127.0.0.1:0', storage, logLevel: 'silent' });
  });
  after(async () => {
    await server?.close();
    if (storage) await rm(storage, { recursive: true, force: true });
  });

  test('known-differences.ts names only existing cases', () => {
    assert.deepEqual(unknownDifferenceIds('regcache', conformanceCases), []);
  });

  for (const c of conformanceCases) {
    const known = knownDifference('regcache', c.id) ? ' (known difference)' : '';
    test(`${c.workflow}: ${c.id}${known}`, () => runCase('regcache', c, ctx));
  }
});
