// Runs every conformance case against regcache's registry port, started in-process on a free
// 127.0.0.1 port over a fresh storage dir. Every case must pass unless known-differences.ts
// lists it for 'regcache' (it should list none).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/server/index.js';
import { describeRegcacheConformance } from './regcache-run.js';

let storage: string | undefined;
describeRegcacheConformance(
  'OCI conformance: regcache',
  {},
  async () => {
    storage = await mkdtemp(join(tmpdir(), 'regcache-conformance-'));
    return startServer({ registryAddr: '127.0.0.1:0', cacheAddr: '127.0.0.1:0', storage, logLevel: 'silent' });
  },
  async () => {
    if (storage) await rm(storage, { recursive: true, force: true });
  },
);
