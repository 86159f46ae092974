// Environment detection: where main cannot point docker at the cache it says why, with the
// manual steps, in a warning, and the step still succeeds with the registry and cache running:
// a remote daemon (DOCKER_HOST=tcp://..., Docker-in-Docker), no docker at all. With
// configure-docker=false it does not look at docker at all: no warning, daemon.json untouched.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ActionsJob, type StepResult, STEP_PATH, node24Binary, sandboxInputs } from '../helpers/actions-runner.js';
import { pidAlive, tempDir } from '../helpers/proc.js';

const DAEMON_JSON = '{\n  "log-level": "warn",\n  "data-root": "/nonexistent/regcache-test"\n}';

interface Outcome {
  main: StepResult;
  post: StepResult;
  daemonJsonUnchanged: boolean;
  hostsDirEntries: string[];
}

/** main then post, with a daemon.json main must leave alone; asserts both steps succeed. */
async function runJob(t: TestContext, env: Record<string, string | undefined>, inputs: Record<string, string> = {}): Promise<Outcome | undefined> {
  const node = node24Binary(t);
  if (!node) return undefined;
  const dir = await tempDir('rc-action-', t);
  const sandbox = sandboxInputs(dir.path);
  const daemonJson = sandbox['docker-daemon-config']!;
  await mkdir(dirname(daemonJson), { recursive: true });
  await writeFile(daemonJson, DAEMON_JSON);
  const before = await stat(daemonJson);
  const hostsDir = sandbox['containerd-hosts-dir']!;
  await mkdir(hostsDir, { recursive: true });
  const job = new ActionsJob(join(dir.path, 'job'), { node, inputs: { ...sandbox, ...inputs }, env });
  t.after(() => job.stopLeftoverServer());

  const main = await job.main();
  const detail = `\nstdout:\n${main.stdout}\nstderr:\n${main.stderr}`;
  assert.equal(main.code, 0, `main succeeds${detail}`);
  assert.deepEqual(main.errors, [], detail);
  assert.ok(main.outputs['registry-url'] && main.outputs['cache-url'], 'the registry and cache run');
  for (const url of [main.outputs['registry-url']!, main.outputs['cache-url']!]) {
    const res = await fetch(`${url}/v2/`);
    assert.equal(res.status, 200, `${url} answers`);
    await res.arrayBuffer();
  }
  const after = await stat(daemonJson);
  const daemonJsonUnchanged = (await readFile(daemonJson, 'utf8')) === DAEMON_JSON && after.mtimeMs === before.mtimeMs;
  const { pid } = JSON.parse(main.state.regcache!) as { pid: number };
  const post = await job.post();
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(post.errors, []);
  assert.deepEqual(post.warnings, [], 'post has nothing to warn about');
  assert.equal(pidAlive(pid), false, 'post stopped the server');
  return { main, post, daemonJsonUnchanged, hostsDirEntries: await readdir(hostsDir) };
}

test('DOCKER_HOST=tcp://... (Docker-in-Docker): a warning with the manual steps, daemon.json untouched, the step succeeds', { timeout: 60_000 }, async (t) => {
  const r = await runJob(t, { PATH: STEP_PATH, DOCKER_HOST: 'tcp://127.0.0.1:1' });
  if (!r) return;
  assert.equal(r.main.warnings.length, 1, r.main.stdout);
  assert.match(r.main.warnings[0]!, /DOCKER_HOST is tcp:\/\/127\.0\.0\.1:1/);
  assert.match(r.main.warnings[0]!, /registry-mirrors/, 'the warning gives the manual steps');
  assert.ok(r.main.warnings[0]!.includes(r.main.outputs['cache-url']!), 'with the cache URL');
  assert.ok(r.daemonJsonUnchanged, 'daemon.json untouched');
  assert.deepEqual(r.hostsDirEntries, [], 'post removed the hosts.toml files and their directories');
});

test('no docker on PATH: a warning, daemon.json untouched, the registry and cache still run', { timeout: 60_000 }, async (t) => {
  const emptyBin = await mkdtemp(join((await tempDir('rc-action-', t)).path, 'bin-'));
  const r = await runJob(t, { PATH: emptyBin, DOCKER_HOST: undefined });
  if (!r) return;
  assert.equal(r.main.warnings.length, 1, r.main.stdout);
  assert.match(r.main.warnings[0]!, /No docker daemon answers here/);
  assert.match(r.main.warnings[0]!, /registry-mirrors/, 'the warning gives the manual steps');
  assert.ok(r.daemonJsonUnchanged, 'daemon.json untouched');
  assert.deepEqual(r.hostsDirEntries, [], 'post removed the hosts.toml files and their directories');
});

test('configure-docker=false: no warning, daemon.json untouched', { timeout: 60_000 }, async (t) => {
  const r = await runJob(t, { PATH: STEP_PATH, DOCKER_HOST: 'unix:///nonexistent/docker.sock' }, { 'configure-docker': 'false', 'configure-containerd': 'false' });
  if (!r) return;
  assert.deepEqual(r.main.warnings, [], r.main.stdout);
  assert.ok(r.daemonJsonUnchanged, 'daemon.json untouched');
  assert.deepEqual(r.hostsDirEntries, [], 'no hosts.toml written');
});
