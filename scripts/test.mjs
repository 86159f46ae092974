#!/usr/bin/env node
// Runs the test suite with node's own test runner (TypeScript through tsx).
// Usage: node scripts/test.mjs [path-substring ...]  — no argument runs every test/**/*.test.ts.
// The Node binary that runs this script runs the tests, so the same command checks Node 20 and 24.
// Many tests run the committed dist/ bundles: when a file under src/ (or the build script, or the
// package lock) is newer than the oldest bundle, dist/ is rebuilt first (scripts/build.mjs), so a
// local run tests what was just written. A fresh dist/ costs a walk of src/ (a few ms).
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);

function* walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(p);
    else if (entry.name.endsWith('.test.ts')) yield p;
  }
}

/** The newest modification time (ms) under `dir`: its files and its directories (a removed file changes its directory). */
function newest(dir) {
  let most = statSync(dir).mtimeMs;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    most = Math.max(most, entry.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return most;
}

/** Why dist/ must be rebuilt before the tests, or undefined when it is newer than its inputs. */
function staleDist() {
  const dist = join(root, 'dist');
  let bundles;
  try {
    bundles = readdirSync(dist).filter((f) => f.endsWith('.js')).map((f) => statSync(join(dist, f)).mtimeMs);
  } catch {
    return 'dist/ is missing';
  }
  if (bundles.length === 0) return 'dist/ has no bundle';
  const built = Math.min(...bundles);
  const inputs = { 'src/': newest(join(root, 'src')), 'scripts/build.mjs': statSync(join(root, 'scripts', 'build.mjs')).mtimeMs, 'package-lock.json': statSync(join(root, 'package-lock.json')).mtimeMs };
  const changed = Object.entries(inputs).filter(([, t]) => t > built).map(([what]) => what);
  return changed.length > 0 ? `${changed.join(', ')} changed since dist/ was built` : undefined;
}

const stale = staleDist();
if (stale) {
  console.log(`${stale}: rebuilding dist/ (node scripts/build.mjs)`);
  const b = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
  if (b.status !== 0) {
    console.error('the build failed: not running the tests against an old dist/');
    process.exit(b.status ?? 1);
  }
}

const files = [...walk(join(root, 'test'))]
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error('no test files match', filters);
  process.exit(1);
}
console.log(`node ${process.version}: ${files.length} test files`);
const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-concurrency=${process.env.TEST_CONCURRENCY ?? 2}`, ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(r.status ?? 1);
