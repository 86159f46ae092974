// A `container:` job: the step runs in a container (its own hostname, a container marker) while
// the docker daemon it reaches is the host's, which cannot reach the container's localhost. main
// must warn with the manual steps, leave daemon.json alone, and succeed with the registry and
// cache running. The container is simulated with namespaces: `unshare --uts --mount` gives the
// step another hostname and a private /run holding /run/.containerenv (podman's marker).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ActionsJob, node24Binary, startTestHost } from '../helpers/actions-runner.js';
import { pidAlive, tempDir } from '../helpers/proc.js';
import { inCI, skipUnless } from '../helpers/tools.js';

function utilLinuxMissing(): string | false {
  const missing = ['unshare', 'mount'].filter((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status !== 0);
  if (missing.length === 0) return false;
  if (inCI()) throw new Error(`CI is set and a test prerequisite is absent: ${missing.join(', ')} (util-linux)`);
  return `${missing.join(', ')} (util-linux) not installed`;
}

const skip = skipUnless(['dockerd', 'containerd', 'docker'], { root: true }) || utilLinuxMissing();

/**
 * Runs the step in new UTS and mount namespaces that look like a container's. The setup is a
 * node script, not `sh -c`: a shell drops variables whose names are no identifiers
 * (INPUT_REGISTRY-PORT), which the runner passes on.
 */
const SETUP = `
const { execFileSync, spawnSync } = require('node:child_process');
const { writeFileSync } = require('node:fs');
execFileSync('mount', ['-t', 'tmpfs', 'regcache-test', '/run']);
writeFileSync('/run/.containerenv', '');
writeFileSync('/proc/sys/kernel/hostname', 'regcache-job-container');
const [cmd, ...args] = process.argv.slice(1);
const r = spawnSync(cmd, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
`;

function inContainer(node: string): string[] {
  return ['unshare', '--uts', '--mount', '--propagation', 'private', node, '-e', SETUP];
}

test('container job (the daemon is the host\'s): a warning with the manual steps, daemon.json untouched, the step succeeds', { skip, timeout: 90_000 }, async (t) => {
  const node = node24Binary(t);
  if (!node) return;
  const dir = await tempDir('rc-action-', t);
  const host = await startTestHost();
  t.after(() => host.dockerd.stop());
  const job = new ActionsJob(join(dir.path, 'job'), {
    node,
    wrapper: inContainer(node),
    inputs: {
      ...host.inputs,
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
  assert.match(main.warnings[0]!, /This job runs in a container/);
  assert.match(main.warnings[0]!, /registry-mirrors/, 'with the manual steps');
  assert.ok((await readFile(host.dockerd.configFile)).equals(host.daemonJsonBefore), 'daemon.json untouched');
  const { pid } = JSON.parse(main.state.regcache!) as { pid: number };
  const res = await fetch(`${main.outputs['cache-url']}/v2/`);
  assert.equal(res.status, 200, 'the cache runs');
  await res.arrayBuffer();

  const post = await job.post();
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(post.warnings, []);
  assert.equal(pidAlive(pid), false);
});
