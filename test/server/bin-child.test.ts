// The bin on a Node without process.execve (Node 20) runs the server as its child with the
// server's node flags. Killing the bin with SIGKILL (a test's cleanup, a supervisor, the OOM
// killer) must not leave the server running as an orphan that holds the bin's output pipes.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../storage/fixtures.js';
import { serve } from './cli-process.js';

const hasExecve = typeof (process as unknown as { execve?: unknown }).execve === 'function';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('the server the bin runs as its child stops when the bin is killed with SIGKILL', { skip: hasExecve ? 'this Node has process.execve: the bin re-executes itself in place, there is no child' : false, timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t);
  const s = await serve(t, { storage: join(dir, 'storage'), readyFile: join(dir, 'ready.json') });
  assert.notEqual(s.ready.pid, s.child.pid, 'the server is a child of the bin');
  t.after(() => {
    if (alive(s.ready.pid)) process.kill(s.ready.pid, 'SIGKILL');
  });
  s.child.kill('SIGKILL');
  const deadline = Date.now() + 20_000;
  while (alive(s.ready.pid) && Date.now() < deadline) await sleep(50);
  assert.equal(alive(s.ready.pid), false, 'the server exited after its bin was killed');
});
