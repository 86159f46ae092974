// `regcache stats`: a running server's statistics on demand, found by URL or by its ready file,
// to standard output or (atomically) to a file; no server is a one-line error and exit 1.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { run, tempDir } from '../helpers/proc.js';
import { DIST_CLI, startRegcacheProcess } from '../helpers/regcache.js';

interface Snapshot {
  startedAtMs: number;
  totals: { requests: number };
}

test('regcache stats: by --ready-file to stdout, by --url to --out', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir('rc-cli-stats-', t);
  const server = await startRegcacheProcess(dir.path, ['--upstream', 'docker.io=http://127.0.0.1:1']);
  t.after(() => server.stop());
  const v2 = await fetch(`${server.ready.cache}/v2/`);
  await v2.arrayBuffer();

  const byReadyFile = await run(process.execPath, [DIST_CLI, 'stats', '--ready-file', join(dir.path, 'ready.json')]);
  const printed = JSON.parse(byReadyFile.stdout) as Snapshot;
  assert.ok(printed.totals.requests >= 1, byReadyFile.stdout);

  const out = join(dir.path, 'stats.json');
  const byUrl = await run(process.execPath, [DIST_CLI, 'stats', '--url', server.ready.cache, '--out', out]);
  assert.equal(byUrl.stdout, '');
  const written = JSON.parse(await readFile(out, 'utf8')) as Snapshot;
  assert.equal(written.startedAtMs, printed.startedAtMs, 'the same server');
  assert.ok(written.totals.requests > printed.totals.requests, 'asked again: the first stats request is counted');
});

test('regcache stats without a server: one line naming the URL, exit 1', { timeout: 30_000 }, async () => {
  const r = await run(process.execPath, [DIST_CLI, 'stats', '--url', 'http://127.0.0.1:1'], { allowFail: true });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^regcache: no regcache server answers at http:\/\/127\.0\.0\.1:1 \(.+\)\n$/);
});
