// The step log as a user reads it: every line regcache prints starts with `regcache:`, the start
// sits in a group, details are ::debug:: lines; when the server died during the job, post warns
// and prints the end of server.log in a group; with step debug on (RUNNER_DEBUG=1) post always
// prints it.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ActionsJob, type StepResult, node24Binary, sandboxInputs } from '../helpers/actions-runner.js';
import { pidAlive, tempDir, waitFor } from '../helpers/proc.js';

async function newJob(t: TestContext, env: Record<string, string> = {}): Promise<ActionsJob | undefined> {
  const node = node24Binary(t);
  if (!node) return undefined;
  const dir = await tempDir('rc-action-', t);
  const job = new ActionsJob(join(dir.path, 'job'), { node, inputs: { ...sandboxInputs(dir.path), 'configure-docker': 'false', 'configure-containerd': 'false' }, env });
  t.after(() => job.stopLeftoverServer());
  return job;
}

/** The lines between `::group::<title…>` and its `::endgroup::`. */
function groupLines(step: StepResult, title: RegExp): string[] | undefined {
  const start = step.lines.findIndex((l) => l.startsWith('::group::') && title.test(l.slice('::group::'.length)));
  if (start < 0) return undefined;
  const end = step.lines.indexOf('::endgroup::', start);
  return step.lines.slice(start + 1, end < 0 ? undefined : end);
}

function serverPid(main: StepResult): number {
  return (JSON.parse(main.state.regcache!) as { pid: number }).pid;
}

test('main: every line prefixed, the start in a group, details as ::debug:: lines with step debug on', { timeout: 60_000 }, async (t) => {
  const job = await newJob(t, { RUNNER_DEBUG: '1' });
  if (!job) return;
  const main = await job.main();
  assert.equal(main.code, 0, main.stdout + main.stderr);
  const plain = main.lines.filter((l) => l && !l.startsWith('::'));
  assert.ok(plain.length > 0, main.stdout);
  for (const l of plain) assert.match(l, /^regcache: /, `prefixed: ${l}`);
  for (const c of main.commands.filter((x) => x.command === 'warning' || x.command === 'debug')) assert.match(c.message, /^regcache: /, `prefixed: ${c.message}`);
  const group = groupLines(main, /^regcache: start the server/);
  assert.ok(group, `the start is grouped:\n${main.stdout}`);
  assert.ok(group.some((l) => /^::debug::regcache: server ready/.test(l)), `its details in the group:\n${main.stdout}`);
  assert.ok(!group.some((l) => /^regcache: registry http/.test(l)), `the outcome line is not hidden in the group:\n${main.stdout}`);
  assert.ok(main.lines.some((l) => /^regcache: registry http/.test(l)), main.stdout);
  assert.ok(main.commands.some((c) => c.command === 'debug' && /^regcache: inputs: /.test(c.message)), `::debug:: details:\n${main.stdout}`);
  const post = await job.post({ env: { RUNNER_DEBUG: '1' } });
  assert.equal(post.code, 0, post.stdout + post.stderr);
  const shown = groupLines(post, /^regcache: server log \(step debug\)/);
  assert.ok(shown?.some((l) => l.includes('regcache: registry http')), `with step debug on, post shows the server log:\n${post.stdout}`);
});

test('the server died during the job: post warns and shows the end of its log in a group', { timeout: 60_000 }, async (t) => {
  const job = await newJob(t);
  if (!job) return;
  const main = await job.main();
  assert.equal(main.code, 0, main.stdout + main.stderr);
  const pid = serverPid(main);
  process.kill(pid, 'SIGKILL');
  await waitFor(() => !pidAlive(pid), { what: 'the server to die', timeoutMs: 10_000 });
  const post = await job.post();
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.ok(post.warnings.some((w) => /^regcache: the server had exited before the post step/.test(w)), post.stdout);
  const shown = groupLines(post, /^regcache: server log \(exited early\)/);
  assert.ok(shown?.some((l) => l.includes('regcache: registry http')), `the log's end is shown:\n${post.stdout}`);
});

test('a normal post without step debug does not print the server log', { timeout: 60_000 }, async (t) => {
  const job = await newJob(t);
  if (!job) return;
  const main = await job.main();
  assert.equal(main.code, 0, main.stdout + main.stderr);
  const post = await job.post();
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.equal(groupLines(post, /server log/), undefined, post.stdout);
  assert.deepEqual(post.warnings, [], post.stdout);
});
