// Only invalid inputs fail the step: exit code 1 with an ::error:: naming the input (and never
// echoing a credential). A registry port already taken is such an error; a cache port already
// taken is not: main warns and the cache takes a free port, since main configures the mirror.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ActionsJob, type StepResult, node24Binary, sandboxInputs } from '../helpers/actions-runner.js';
import { pidAlive, tempDir } from '../helpers/proc.js';

async function job(t: TestContext, inputs: Record<string, string>): Promise<ActionsJob | undefined> {
  const node = node24Binary(t);
  if (!node) return undefined;
  const dir = await tempDir('rc-action-', t);
  const j = new ActionsJob(join(dir.path, 'job'), { node, inputs: { ...sandboxInputs(dir.path), 'configure-docker': 'false', 'configure-containerd': 'false', ...inputs } });
  t.after(() => j.stopLeftoverServer());
  return j;
}

/** A listener on 127.0.0.1:<free port>, closed after the test. */
async function takenPort(t: TestContext): Promise<number> {
  const srv: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve);
  });
  t.after(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  return (srv.address() as { port: number }).port;
}

function assertFailed(step: StepResult, input: string): void {
  const detail = `\nstdout:\n${step.stdout}\nstderr:\n${step.stderr}`;
  assert.equal(step.code, 1, `the step fails${detail}`);
  assert.equal(step.errors.length, 1, `one ::error::${detail}`);
  assert.match(step.errors[0]!, new RegExp(`\\binput ${input}\\b`), `the error names ${input}${detail}`);
  assert.deepEqual(step.outputs, {}, 'no outputs');
}

const INVALID: Array<[input: string, value: string]> = [
  ['registry-port', 'abc'],
  ['cache-port', '70000'],
  ['tag-ttl', 'soon'],
  ['configure-docker', 'maybe'],
  ['summary', 'perhaps'],
  ['upstreams', 'docker.io=ftp://example.test'],
  ['bind-address', 'example.test'],
  ['log-level', 'loud'],
  ['persist-registry', 'sometimes'],
];

for (const [input, value] of INVALID) {
  test(`invalid input ${input}=${value} fails the step naming the input`, { timeout: 30_000 }, async (t) => {
    const j = await job(t, { [input]: value });
    if (!j) return;
    const main = await j.main();
    assertFailed(main, input);
    assert.equal(existsSync(join(j.runnerTemp, 'regcache', 'ready.json')), false, 'no server was started');
  });
}

test('a malformed upstream-credentials line fails the step without echoing it', { timeout: 30_000 }, async (t) => {
  const secret = `CANARY-${Math.random().toString(36).slice(2)}`;
  const j = await job(t, { 'upstream-credentials': `docker.io=${secret}` }); // no USER: part
  if (!j) return;
  const main = await j.main();
  assertFailed(main, 'upstream-credentials');
  assert.ok(!main.stdout.includes(secret) && !main.stderr.includes(secret), `the line is not echoed:\n${main.stdout}`);
});

test('a registry port already in use fails the step with an error naming registry-port', { timeout: 30_000 }, async (t) => {
  const port = await takenPort(t);
  const j = await job(t, { 'registry-port': String(port) });
  if (!j) return;
  const main = await j.main();
  assertFailed(main, 'registry-port');
  assert.match(main.errors[0]!, new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
  assert.equal(existsSync(join(j.runnerTemp, 'regcache', 'ready.json')), false, 'no server was started');
  const post = await j.post();
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(post.errors, []);
});

test('a cache port already in use: a warning naming cache-port, and the cache takes a free port', { timeout: 30_000 }, async (t) => {
  const port = await takenPort(t);
  const j = await job(t, { 'cache-port': String(port) });
  if (!j) return;
  const main = await j.main();
  assert.equal(main.code, 0, main.stdout + main.stderr);
  assert.deepEqual(main.errors, []);
  assert.equal(main.warnings.length, 1, main.stdout);
  assert.match(main.warnings[0]!, new RegExp(`cache-port ${port} is in use`));
  const cache = new URL(main.outputs['cache-url']!);
  assert.equal(cache.hostname, '127.0.0.1');
  assert.notEqual(Number(cache.port), port);
  const res = await fetch(`${cache.origin}/v2/`);
  assert.equal(res.status, 200, 'the cache answers on its new port');
  await res.arrayBuffer();
  const { pid } = JSON.parse(main.state.regcache!) as { pid: number };
  const post = await j.post();
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(post.warnings, []);
  assert.equal(pidAlive(pid), false);
});
