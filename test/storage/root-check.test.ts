// The storage root check: a root this process cannot write is refused with its owner and the
// chown that fixes it (run as uid 1000 against a root-owned directory, as the container image
// meets a registry:2 volume), and distribution's layout under a root is found.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { distributionLayoutIn } from '../../src/storage/index.js';
import { tempDir } from '../helpers/proc.js';
import { isRoot, inCI } from '../helpers/tools.js';
import { CLI } from '../server/cli-process.js';

test('a root-owned storage root is refused, for uid 1000, with the owner and the chown that fixes it', { skip: !isRoot() && !inCI() && 'needs root (to run the CLI as uid 1000)' }, async (t) => {
  const dir = await tempDir('rc-root-check-', t);
  await chmod(dir.path, 0o755);
  const root = join(dir.path, 'storage');
  await mkdir(root, { mode: 0o755 });
  const r = spawnSync(process.execPath, [CLI, 'gc', '--storage', root], { uid: 1000, gid: 1000, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stderr, `regcache: storage ${root} is owned by uid 0 and not writable by uid 1000 (this process): give it to uid 1000 (chown -R 1000:1000 ${root}), or choose another directory with --storage\n`);
});

test('distribution\'s layout (docker/registry/v2) under a storage root is found', async (t) => {
  const dir = await tempDir('rc-root-check-', t);
  assert.equal(await distributionLayoutIn(dir.path), undefined);
  await mkdir(join(dir.path, 'docker', 'registry', 'v2'), { recursive: true });
  assert.equal(await distributionLayoutIn(dir.path), join(dir.path, 'docker', 'registry', 'v2'));
});
