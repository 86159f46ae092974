// The `buildkitd-config` output is a buildkitd.toml that docker/setup-buildx-action can take as
// `buildkitd-config-inline`. BuildKit is not installable here, so it is checked by shape: it
// parses as TOML and has the fields buildkitd reads: `[registry."docker.io"] mirrors` (and one
// per configured upstream) pointing at the cache, and `http = true` for the plain-HTTP cache and
// registry on loopback.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'smol-toml';
import { ActionsJob, UNUSED_UPSTREAM, node24Binary, sandboxInputs } from '../helpers/actions-runner.js';
import { pidAlive, tempDir } from '../helpers/proc.js';

test('the buildkitd-config output parses as TOML and mirrors docker.io and every upstream through the cache', { timeout: 60_000 }, async (t) => {
  const node = node24Binary(t);
  if (!node) return;
  const dir = await tempDir('rc-action-', t);
  const job = new ActionsJob(join(dir.path, 'job'), {
    node,
    inputs: {
      ...sandboxInputs(dir.path),
      upstreams: [`docker.io=${UNUSED_UPSTREAM}`, `ghcr.io=${UNUSED_UPSTREAM}`, `quay.io=${UNUSED_UPSTREAM}`].join('\n'),
      'configure-docker': 'false',
      'configure-containerd': 'false',
    },
  });
  t.after(() => job.stopLeftoverServer());
  const main = await job.main();
  assert.equal(main.code, 0, main.stdout + main.stderr);
  assert.deepEqual(main.warnings, []);
  const cache = main.outputs.cache!;
  const registry = main.outputs.registry!;
  assert.match(cache, /^127\.0\.0\.1:\d+$/);
  assert.equal(`http://${cache}`, main.outputs['cache-url']);

  const config = parse(main.outputs['buildkitd-config']!) as { registry: Record<string, { mirrors?: string[]; http?: boolean; insecure?: boolean }> };
  for (const ns of ['docker.io', 'ghcr.io', 'quay.io']) {
    assert.deepEqual(config.registry[ns]?.mirrors, [cache], `registry."${ns}".mirrors`);
  }
  assert.equal(config.registry[cache]?.http, true, 'the cache is plain HTTP');
  assert.equal(config.registry[registry]?.http, true, 'the registry is plain HTTP');
  for (const [name, section] of Object.entries(config.registry)) {
    assert.deepEqual(Object.keys(section).filter((k) => !['mirrors', 'http', 'insecure'].includes(k)), [], `registry."${name}" has only fields buildkitd reads`);
  }

  const pid = (JSON.parse(main.state.regcache!) as { pid: number }).pid;
  const post = await job.post();
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(post.warnings, []);
  assert.equal(pidAlive(pid), false);
  t.diagnostic(`main ${main.durationMs} ms, post ${post.durationMs} ms`);
});
