// Runs every conformance case against Debian's distribution registry (2.8, delete enabled),
// started on a free 127.0.0.1 port by the test helper. Cases listed for 'distribution' in
// known-differences.ts must still fail the recorded way; every other case must pass.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startDistribution, type Distribution } from '../helpers/distribution.js';
import { knownDifference, runCase, unknownDifferenceIds } from './known-differences.js';
import { conformanceCases, type ConformanceContext } from './suite.js';

describe('OCI conformance: distribution 2.8', { concurrency: 4 }, () => {
  const runId = randomBytes(4).toString('hex');
  let registry: Distribution | undefined;
  const ctx: ConformanceContext = {
    get baseUrl() {
      if (!registry) throw new Error('distribution is not running');
      return registry.url;
    },
    repo: (suffix) => `conformance/${runId}/${suffix}`,
  };

  before(async () => {
    registry = await startDistribution({ deleteEnabled: true });
  });
  after(async () => {
    await registry?.stop();
  });

  test('known-differences.ts names only existing cases', () => {
    assert.deepEqual(unknownDifferenceIds('distribution', conformanceCases), []);
  });

  for (const c of conformanceCases) {
    const known = knownDifference('distribution', c.id) ? ' (known difference)' : '';
    test(`${c.workflow}: ${c.id}${known}`, () => runCase('distribution', c, ctx));
  }
});
