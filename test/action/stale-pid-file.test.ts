// A docker-pid-file that names some other process (a stale pid file whose pid was reused):
// main must not send that process SIGHUP (which would kill it), must not leave daemon.json
// changed behind post's back, and warns instead of failing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ActionsJob, node24Binary, startTestHost } from '../helpers/actions-runner.js';
import { pidAlive, tempDir } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';

const skip = skipUnless(['dockerd', 'containerd', 'docker'], { root: true });

test('a pid file naming a process that is not dockerd: no signal to it, daemon.json put back, a warning', { skip, timeout: 90_000 }, async (t) => {
  const node = node24Binary(t);
  if (!node) return;
  const dir = await tempDir('rc-action-', t);
  const host = await startTestHost();
  t.after(() => host.dockerd.stop());
  const bystander = spawn('sleep', ['120'], { stdio: 'ignore' });
  t.after(() => bystander.kill('SIGKILL'));
  const pidFile = join(dir.path, 'run', 'docker.pid');
  await mkdir(join(dir.path, 'run'));
  await writeFile(pidFile, `${bystander.pid}\n`);
  const job = new ActionsJob(join(dir.path, 'job'), {
    node,
    inputs: {
      ...host.inputs,
      'docker-pid-file': pidFile,
      upstreams: 'docker.io=http://127.0.0.1:1',
      'registry-port': '0',
      'cache-port': '0',
      'configure-containerd': 'false',
    },
    env: host.env,
  });
  t.after(() => job.stopLeftoverServer());

  const main = await job.main();
  assert.equal(main.code, 0, main.stdout + main.stderr);
  assert.deepEqual(main.errors, []);
  assert.equal(main.warnings.length, 1, main.stdout);
  assert.match(main.warnings[0]!, /regcache: could not configure docker: .*does not name a running dockerd/);
  assert.ok(pidAlive(bystander.pid!), 'the bystander got no SIGHUP');
  assert.ok((await readFile(host.dockerd.configFile)).equals(host.daemonJsonBefore), 'daemon.json is as before');
  assert.equal((JSON.parse(main.state.regcache!) as { docker?: unknown }).docker, undefined, 'no docker change for post to undo');

  const post = await job.post();
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(post.warnings, []);
  assert.ok((await readFile(host.dockerd.configFile)).equals(host.daemonJsonBefore));
});
