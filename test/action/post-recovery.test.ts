// post runs (post-if: always()) even when main failed half-way, and then it must finish with
// warnings at most, never fail the job: no state at all, a state whose server is already gone
// and whose stats file was never written, and the state a main that failed on its inputs left.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ActionsJob, type StepResult, node24Binary, sandboxInputs } from '../helpers/actions-runner.js';
import { pidAlive, tempDir } from '../helpers/proc.js';

async function newJob(t: TestContext, inputs: Record<string, string> = {}): Promise<{ job: ActionsJob; dir: string } | undefined> {
  const node = node24Binary(t);
  if (!node) return undefined;
  const dir = await tempDir('rc-action-', t);
  const job = new ActionsJob(join(dir.path, 'job'), { node, inputs: { ...sandboxInputs(dir.path), ...inputs } });
  t.after(() => job.stopLeftoverServer());
  return { job, dir: dir.path };
}

function assertWarningsOnly(post: StepResult): void {
  const detail = `\nstdout:\n${post.stdout}\nstderr:\n${post.stderr}`;
  assert.equal(post.code, 0, `post exits 0${detail}`);
  assert.deepEqual(post.errors, [], `no ::error::${detail}`);
  assert.equal(post.stderr, '', `nothing on stderr${detail}`);
}

/** The pid of a process that has exited (and been reaped). */
async function exitedPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('exit', resolve));
  assert.ok(child.pid && !pidAlive(child.pid));
  return child.pid;
}

test('post without any state (main never ran its first line) exits 0 and does nothing', { timeout: 30_000 }, async (t) => {
  const j = await newJob(t);
  if (!j) return;
  const post = await j.job.post({ state: {} });
  assertWarningsOnly(post);
  assert.deepEqual(post.warnings, []);
  assert.equal(post.summary, '', 'no summary without a server');
});

test('post with a state whose server already exited and whose files are missing exits 0 with warnings only', { timeout: 30_000 }, async (t) => {
  const j = await newJob(t);
  if (!j) return;
  const hostsToml = join(j.dir, 'etc-containerd', 'certs.d', 'docker.io', 'hosts.toml');
  const state = {
    version: 1,
    pid: await exitedPid(),
    registryUrl: 'http://127.0.0.1:1',
    cacheUrl: 'http://127.0.0.1:1',
    storage: join(j.dir, 'storage-never-created'),
    logFile: join(j.job.runnerTemp, 'regcache', 'server.log'),
    statsFile: join(j.job.runnerTemp, 'regcache', 'stats.json'),
    summary: true,
    containerdFiles: [hostsToml, `${join(j.dir, 'etc-containerd', 'certs.d', 'docker.io')}/`],
    startedAtMs: Date.now(),
  };
  const post = await j.job.post({ state: { regcache: JSON.stringify(state) } });
  assertWarningsOnly(post);
  assert.ok(post.warnings.some((w) => /^regcache: the server had exited before the post step/.test(w)), `the dead server is a warning:\n${post.stdout}`);
  assert.ok(post.warnings.some((w) => /^regcache: post: write the job summary: /.test(w)), `the missing statistics are a warning:\n${post.stdout}`);
  for (const w of post.warnings) assert.match(w, /^regcache: /, w);
});

test('post with a state whose pid now belongs to another process (pid reused) leaves that process alone', { timeout: 30_000 }, async (t) => {
  const j = await newJob(t);
  if (!j) return;
  const bystander = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => bystander.kill('SIGKILL'));
  const exited = new Promise((resolve) => bystander.once('exit', resolve));
  const state = { version: 1, pid: bystander.pid, summary: true };
  const post = await j.job.post({ state: { regcache: JSON.stringify(state) } });
  assertWarningsOnly(post);
  const outcome = await Promise.race([exited.then(() => 'killed'), new Promise((r) => setTimeout(() => r('alive'), 200))]);
  assert.equal(outcome, 'alive', 'post sent no signal to a process that is not a regcache server');
  assert.ok(pidAlive(bystander.pid!));
});

test('post with a state whose daemon.json change cannot be undone (no pid file to reload) exits 0 with warnings only', { timeout: 30_000 }, async (t) => {
  const j = await newJob(t);
  if (!j) return;
  const daemonJson = join(j.dir, 'etc-docker', 'daemon.json');
  await mkdir(join(j.dir, 'etc-docker'), { recursive: true });
  const original = Buffer.from('{"log-level":"warn"}');
  const written = Buffer.from('{\n  "log-level": "warn",\n  "registry-mirrors": [\n    "http://127.0.0.1:1"\n  ]\n}\n');
  await writeFile(daemonJson, written);
  const state = {
    version: 1,
    pid: await exitedPid(),
    docker: {
      path: daemonJson,
      original: original.toString('base64'),
      written: written.toString('base64'),
      mirror: 'http://127.0.0.1:1',
      insecure: [],
      reload: { kind: 'pid', pidFile: join(j.dir, 'run', 'missing.pid'), sudo: false },
    },
  };
  const post = await j.job.post({ state: { regcache: JSON.stringify(state) }, env: { PATH: '/usr/bin:/bin', DOCKER_HOST: 'unix:///nonexistent.sock' } });
  assertWarningsOnly(post);
  assert.ok(post.warnings.some((w) => w.includes('restore the docker daemon configuration')), post.stdout);
  assert.deepEqual(await readFile(daemonJson), original, 'daemon.json is restored even though dockerd could not be reloaded');
});

test('post after a main that failed on a taken registry port exits 0 without warnings', { timeout: 30_000 }, async (t) => {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen({ host: '127.0.0.1', port: 0 }, resolve));
  t.after(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  const j = await newJob(t, { 'registry-port': String((srv.address() as { port: number }).port), 'configure-docker': 'false' });
  if (!j) return;
  const main = await j.job.main();
  assert.equal(main.code, 1, main.stdout);
  assert.ok(j.job.savedState?.regcache, 'main saved a partial state before failing');
  const post = await j.job.post();
  assertWarningsOnly(post);
  assert.deepEqual(post.warnings, [], post.stdout);
  assert.equal(existsSync(join(j.job.runnerTemp, 'regcache', 'ready.json')), false);
});
