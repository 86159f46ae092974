#!/usr/bin/env node
// Bundles the entry points into dist/ with esbuild: the CLI (dist/cli.js), the container image's
// health check (dist/healthcheck.js), the Action's main and post (main starts the server as
// `dist/cli.js serve`) and the @actions/cache worker (dist/cache-worker.js, run beside them). dist/ is committed, and CI checks
// that it is what this script builds from the committed source.
import { build } from 'esbuild';
import { existsSync, rmSync } from 'node:fs';

const entries = {
  cli: 'src/cli.ts',
  // The container image's HEALTHCHECK (node only, no dependencies).
  healthcheck: 'src/healthcheck.ts',
  main: 'src/action/main.ts',
  post: 'src/action/post.ts',
  // One @actions/cache call in a child process of its own (src/persist/library-call.ts): the
  // only bundle holding the library.
  'cache-worker': 'src/persist/cache-worker.ts',
};
const entryPoints = Object.fromEntries(Object.entries(entries).filter(([, p]) => existsSync(p)));

rmSync('dist', { recursive: true, force: true });
await build({
  entryPoints,
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  legalComments: 'none',
  // Libraries check error classes by name (@actions/cache's ReserveCacheError, ValidationError).
  keepNames: true,
  logLevel: 'warning',
  // Some bundled CommonJS dependencies call require(); give ESM output one.
  banner: { js: "import { createRequire as __rcCreateRequire } from 'node:module'; const require = __rcCreateRequire(import.meta.url);" },
});
