// The conformance walk over a regcache registry port, shared by the storage backends' test
// files: the server is started in-process by `start` before the cases and closed after them.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../src/server/index.js';
import { knownDifference, runCase, unknownDifferenceIds } from './known-differences.js';
import { conformanceCases, type ConformanceContext } from './suite.js';

/** Describes every conformance case against the server `start` returns (closed by `stop`). */
export function describeRegcacheConformance(title: string, opts: { skip?: string | false }, start: () => Promise<RunningServer>, stop: () => Promise<void>): void {
  describe(title, { concurrency: 4, ...(opts.skip ? { skip: opts.skip } : {}) }, () => {
    const runId = randomBytes(4).toString('hex');
    let server: RunningServer | undefined;
    const ctx: ConformanceContext = {
      get baseUrl() {
        if (!server) throw new Error('regcache is not running');
        return server.registryUrl;
      },
      repo: (suffix) => `conformance/${runId}/${suffix}`,
    };

    before(async () => {
      server = await start();
    });
    after(async () => {
      await server?.close();
      await stop();
    });

    test('known-differences.ts names only existing cases', () => {
      assert.deepEqual(unknownDifferenceIds('regcache', conformanceCases), []);
    });

    for (const c of conformanceCases) {
      const known = knownDifference('regcache', c.id) ? ' (known difference)' : '';
      test(`${c.workflow}: ${c.id}${known}`, () => runCase('regcache', c, ctx));
    }
  });
}
