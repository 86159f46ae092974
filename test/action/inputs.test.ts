// Only invalid inputs fail the step: exit code 1 with one ::error:: naming every invalid input
// (and never echoing a credential). Boolean inputs take core.getBooleanInput's words (YAML 1.2:
// true | True | TRUE | false | False | FALSE), `save` those and auto. A registry port already
// taken fails the step too, as a runtime error naming registry-port; a cache port already taken
// does not: main warns and the cache takes a free port, since main configures the mirror.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ActionsJob, type StepResult, actionInputDefaults, evaluatedDefaults, node24Binary, sandboxInputs } from '../helpers/actions-runner.js';
import { InputErrors, readInputs } from '../../src/action/inputs.js';
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
  ['configure-containerd', 'yes'],
  ['save', 'on'],
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

test('several invalid inputs: one error listing each, and no server started', { timeout: 30_000 }, async (t) => {
  const j = await job(t, { 'registry-port': 'abc', save: 'yes', 'tag-ttl': 'soon', prefetch: 'on' });
  if (!j) return;
  const main = await j.main();
  assert.equal(main.code, 1, main.stdout);
  assert.equal(main.errors.length, 1, `one ::error::\n${main.stdout}`);
  for (const input of ['registry-port', 'save', 'tag-ttl', 'prefetch']) assert.match(main.errors[0]!, new RegExp(`\\binput ${input}:`), main.errors[0]);
  assert.match(main.errors[0]!, /^regcache: 4 invalid inputs:/);
  assert.deepEqual(main.outputs, {});
  assert.equal(existsSync(join(j.runnerTemp, 'regcache', 'ready.json')), false, 'no server was started');
});

/** readInputs over action.yml's defaults with `inputs` on top. */
function read(inputs: Record<string, string>) {
  const defaults = evaluatedDefaults(actionInputDefaults());
  return readInputs((n) => inputs[n] ?? defaults[n] ?? '', { RUNNER_TEMP: '/tmp/x' });
}

test("boolean inputs take core.getBooleanInput's words, save those and auto", () => {
  for (const word of ['true', 'True', 'TRUE']) assert.equal(read({ prefetch: word, 'configure-docker': word }).prefetch, true, word);
  for (const word of ['false', 'False', 'FALSE']) assert.equal(read({ summary: word, 'persist-registry': word }).summary, false, word);
  for (const [word, mode] of [['True', 'true'], ['FALSE', 'false'], ['auto', 'auto'], ['', 'auto']] as const) assert.equal(read({ save: word }).save, mode, word);
  for (const word of ['yes', 'no', '1', '0', 'on', 'off', 'tRuE']) {
    assert.throws(() => read({ restore: word }), (err: unknown) => err instanceof InputErrors && /input restore: .*true \| True \| TRUE \| false \| False \| FALSE/.test(err.message), word);
    assert.throws(() => read({ save: word }), (err: unknown) => err instanceof InputErrors && /input save: .*auto/.test(err.message), word);
  }
});

test('readInputs lists every invalid input, each once', () => {
  assert.throws(
    () => read({ 'cache-port': '-1', 'log-level': 'loud', 'key-prefix': 'a b', 'max-save-size': 'lots', summary: 'maybe' }),
    (err: unknown) => err instanceof InputErrors && err.errors.map((e) => e.input).sort().join(',') === 'cache-port,key-prefix,log-level,max-save-size,summary',
  );
});

test('a registry port already in use fails the step with a runtime error naming registry-port', { timeout: 30_000 }, async (t) => {
  const port = await takenPort(t);
  const j = await job(t, { 'registry-port': String(port) });
  if (!j) return;
  const main = await j.main();
  assert.equal(main.code, 1, main.stdout);
  assert.equal(main.errors.length, 1, main.stdout);
  assert.doesNotMatch(main.errors[0]!, /\binput\b/, 'not reported as an invalid input');
  assert.match(main.errors[0]!, /choose another registry-port/);
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
