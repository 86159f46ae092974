// The server main starts runs with the server's node flags (src/server/node-flags.ts) on node's
// command line, the only place node takes heap sizes from, and post still stops it.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { SERVER_NODE_FLAGS } from '../../src/server/node-flags.js';
import { ActionsJob, STEP_PATH, node24Binary, sandboxInputs } from '../helpers/actions-runner.js';
import { pidAlive, tempDir } from '../helpers/proc.js';

test('main starts the server as `node <server flags> dist/cli.js serve`; post stops it', { timeout: 60_000 }, async (t) => {
  const node = node24Binary(t);
  if (!node) return;
  const dir = await tempDir('rc-action-', t);
  const job = new ActionsJob(join(dir.path, 'job'), {
    node,
    inputs: { ...sandboxInputs(dir.path), 'configure-docker': 'false', 'configure-containerd': 'false' },
    env: { PATH: STEP_PATH },
  });
  t.after(() => job.stopLeftoverServer());
  const main = await job.main();
  assert.equal(main.code, 0, main.stdout + main.stderr);
  const { pid } = JSON.parse(main.state.regcache!) as { pid: number };
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
  const script = argv.findIndex((a) => a.endsWith('cli.js'));
  assert.deepEqual(argv.slice(1, script), [...SERVER_NODE_FLAGS], argv.join(' '));
  assert.equal(argv[script + 1], 'serve');
  const post = await job.post();
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.equal(pidAlive(pid), false, 'post stopped the server');
});
