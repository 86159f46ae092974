// A `container:` job: the steps run in a container (its own hostname, PID namespace and a
// container marker) while the docker daemon they reach is the host's, which cannot reach the
// container's localhost. main must warn with the manual steps, leave daemon.json alone, and
// succeed with the registry and cache running; post must stop the server promptly although the
// container's PID 1 is `tail -f /dev/null` (what the runner starts job containers with), which
// never reaps the orphaned server: it stays a zombie after it exited.
// The container is simulated with namespaces: `unshare --pid --fork --mount-proc --uts --mount`
// running the runner's `tail -f /dev/null` with another hostname and /run/.containerenv
// (podman's marker) on a private /run; each step enters it with `nsenter`, as `docker exec`.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ActionsJob, node24Binary, startTestHost } from '../helpers/actions-runner.js';
import { childPids, tempDir, waitFor } from '../helpers/proc.js';
import { inCI, skipUnless } from '../helpers/tools.js';

function utilLinuxMissing(): string | false {
  const missing = ['unshare', 'nsenter', 'mount'].filter((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status !== 0);
  if (missing.length === 0) return false;
  if (inCI()) throw new Error(`CI is set and a test prerequisite is absent: ${missing.join(', ')} (util-linux)`);
  return `${missing.join(', ')} (util-linux) not installed`;
}

const skip = skipUnless(['dockerd', 'containerd', 'docker'], { root: true }) || utilLinuxMissing();

const CONTAINER_INIT = 'mount -t tmpfs regcache-test /run && : > /run/.containerenv && echo regcache-job-container > /proc/sys/kernel/hostname && exec tail -f /dev/null';

/** Starts the "container"; returns the command prefix that runs a step inside it, like `docker exec`. */
async function startContainer(t: TestContext): Promise<string[]> {
  const unshare = spawn('unshare', ['--pid', '--fork', '--mount-proc', '--uts', '--mount', '--propagation', 'private', 'sh', '-c', CONTAINER_INIT], { stdio: 'ignore' });
  const exited = new Promise((resolve) => unshare.once('exit', resolve));
  // killing the namespace's init (tail) makes the kernel kill every process left in it
  t.after(async () => {
    unshare.kill('SIGKILL');
    for (const pid of childPids(unshare.pid!)) process.kill(pid, 'SIGKILL');
    await exited;
  });
  const init = await waitFor(() => {
    const [pid] = childPids(unshare.pid!);
    return pid !== undefined && spawnSync('cat', [`/proc/${pid}/comm`], { encoding: 'utf8' }).stdout.trim() === 'tail' ? pid : undefined;
  }, { what: 'the container init (tail -f /dev/null)', timeoutMs: 10_000 });
  return ['nsenter', `--target=${init}`, '--pid', '--mount', '--uts', '--'];
}

test('container job (the daemon is the host\'s): a warning with the manual steps, daemon.json untouched; post stops the server under a PID 1 that never reaps', { skip, timeout: 90_000 }, async (t) => {
  const node = node24Binary(t);
  if (!node) return;
  const dir = await tempDir('rc-action-', t); // its cleanup also stops a server left in it
  const host = await startTestHost();
  t.after(() => host.dockerd.stop());
  const job = new ActionsJob(join(dir.path, 'job'), {
    node,
    wrapper: await startContainer(t),
    inputs: {
      ...host.inputs,
      upstreams: 'docker.io=http://127.0.0.1:1',
      'registry-port': '0',
      'cache-port': '0',
      'configure-containerd': 'false',
    },
    env: host.env,
  });
  // no job.stopLeftoverServer(): the state's pid is one of the container's PID namespace

  const main = await job.main();
  assert.equal(main.code, 0, main.stdout + main.stderr);
  assert.deepEqual(main.errors, []);
  assert.equal(main.warnings.length, 1, main.stdout);
  assert.match(main.warnings[0]!, /This job runs in a container/);
  assert.match(main.warnings[0]!, /registry-mirrors/, 'with the manual steps');
  assert.ok((await readFile(host.dockerd.configFile)).equals(host.daemonJsonBefore), 'daemon.json untouched');
  const res = await fetch(`${main.outputs['cache-url']}/v2/`);
  assert.equal(res.status, 200, 'the cache runs');
  await res.arrayBuffer();

  const post = await job.post({ timeoutMs: 60_000 });
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(post.warnings, [], post.stdout);
  assert.ok(post.durationMs < 10_000, `post took ${post.durationMs} ms`);
  await assert.rejects(fetch(`${main.outputs['cache-url']}/v2/`), 'the cache stopped');
  assert.match(post.summary, /^\*\*regcache\*\*: no image went through the cache or the registry in this job\. ⚠ docker was not pointed at the cache: .*container/, 'one line, saying docker was left alone and why');
});
