// A canary credential passed as `upstream-credentials` (and really used: the upstream requires
// it) must appear nowhere but in the ::add-mask:: commands, which come before any other output:
// not in stdout/stderr otherwise, the state, the outputs, the job summary, the stats file, the
// server's log (at the most verbose level), nor the server's command line; and neither in plain
// text nor as the base64 `user:canary` of the Authorization header the cache sends upstream.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ActionsJob, type StepResult, node24Binary, sandboxInputs, startSeededUpstream } from '../helpers/actions-runner.js';
import { pidAlive, tempDir } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';

const skip = skipUnless(['docker-registry', 'busybox']);

/**
 * The forms a credential can leak in: the canary itself, and the base64 of `user:canary` as a
 * Basic Authorization header carries it (standard and URL-safe alphabets, without padding).
 */
function forms(user: string, canary: string): string[] {
  const basic = Buffer.from(`${user}:${canary}`);
  return [canary, basic.toString('base64').replace(/=+$/, ''), basic.toString('base64url')];
}

/** The first of `needles` that `text` contains. */
function containsAny(text: string | Buffer, needles: readonly string[]): string | undefined {
  return needles.find((n) => text.includes(n));
}

/** Where in a step's output a form of the canary shows up, other than in ::add-mask:: commands. */
function leaks(step: StepResult, needles: readonly string[], what: string): string[] {
  const found: string[] = [];
  step.lines.forEach((line, i) => {
    if (containsAny(line, needles) && !line.startsWith('::add-mask::')) found.push(`${what} stdout line ${i}: ${line}`);
  });
  if (containsAny(step.stderr, needles)) found.push(`${what} stderr`);
  for (const [name, text] of Object.entries(step.raw)) if (containsAny(text, needles)) found.push(`${what} ${name} file`);
  return found;
}

test('a canary upstream credential is masked first and appears in no log, state, output, summary, stats file or command line, plain or as the base64 of an Authorization header', { skip, timeout: 60_000 }, async (t) => {
  const node = node24Binary(t);
  if (!node) return;
  const canary = `CANARY-${randomBytes(12).toString('hex')}`;
  const user = 'regcache-user';
  const needles = forms(user, canary);
  const dir = await tempDir('rc-action-', t);
  const upstream = await startSeededUpstream(join(dir.path, 'layout'), { htpasswd: { user, password: canary } });
  t.after(() => upstream.registry.stop());
  const job = new ActionsJob(join(dir.path, 'job'), {
    node,
    inputs: {
      ...sandboxInputs(dir.path),
      upstreams: `docker.io=${upstream.registry.url}`,
      'upstream-credentials': `docker.io=${user}:${canary}`,
      'configure-docker': 'false',
      'log-level': 'trace',
    },
  });
  t.after(() => job.stopLeftoverServer());

  const main = await job.main();
  assert.equal(main.code, 0, main.stdout + main.stderr);
  assert.ok(main.masks.includes(canary), 'the token is masked');
  assert.ok(main.masks.includes(`docker.io=${user}:${canary}`), 'the whole credential line is masked');
  const firstOther = main.lines.findIndex((l) => l !== '' && !l.startsWith('::add-mask::'));
  const lastMask = main.commands.filter((c) => c.command === 'add-mask').reduce((a, c) => Math.max(a, c.line), -1);
  assert.ok(firstOther === -1 || lastMask < firstOther, `every ::add-mask:: comes before any other output:\n${main.stdout}`);

  const { pid } = JSON.parse(main.state.regcache!) as { pid: number };
  const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
  assert.ok(cmdline.includes('serve'), cmdline);
  assert.equal(containsAny(cmdline, needles), undefined, `the server's command line has no credential: ${cmdline}`);

  // a pull through the cache, which needs the credential upstream
  const cacheUrl = main.outputs['cache-url']!;
  const accept = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';
  const res = await fetch(`${cacheUrl}/v2/${upstream.repository}/manifests/${upstream.tag}`, { headers: { accept } });
  assert.equal(res.status, 200, `the cache pulled with the credential: ${await res.clone().text()}`);
  await res.arrayBuffer();
  for (const digest of upstream.blobs) {
    const blob = await fetch(`${cacheUrl}/v2/${upstream.repository}/blobs/${digest}`);
    assert.equal(blob.status, 200);
    await blob.arrayBuffer();
  }
  const authorized = (await upstream.requests()).filter((e) => e.path.includes('/blobs/') && e.status === 200);
  assert.equal(authorized.length, upstream.blobs.length, 'the upstream served the blobs to the authenticated cache');

  const post = await job.post();
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.equal(pidAlive(pid), false);
  assert.match(post.summary, new RegExp(upstream.repository), 'the summary reports the pull');

  const found = [...leaks(main, needles, 'main'), ...leaks(post, needles, 'post')];
  const files = {
    'stats file': main.outputs['stats-file']!,
    'server log': join(job.runnerTemp, 'regcache', 'server.log'),
  };
  for (const [what, file] of Object.entries(files)) {
    const text = await readFile(file, 'utf8');
    assert.ok(text.length > 0, `${what} is not empty`);
    if (containsAny(text, needles)) found.push(what);
  }
  // nor any other file regcache left in RUNNER_TEMP (ready file, storage metadata, ...)
  for (const entry of await readdir(job.runnerTemp, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = join(entry.parentPath, entry.name);
    if (containsAny(await readFile(file), needles)) found.push(file);
  }
  assert.deepEqual(found, [], `the canary leaked`);
  t.diagnostic(`main ${main.durationMs} ms, post ${post.durationMs} ms`);
});
