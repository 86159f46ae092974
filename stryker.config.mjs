// StrykerJS configuration: mutation testing of the modules that hold regcache's guarantees, each
// against its own fast unit tests (node:test files run by the TAP runner through tsx; never the
// end-to-end tests that drive docker, containerd or a real upstream). Which modules are mutated
// is chosen by REGCACHE_MUTATE (names of MODULES below, comma-separated); scripts/mutation.mjs
// (`npm run test:mutation -- <name> ...`) sets it. Results: the clear-text table on the console,
// .tmp/mutation/<groups>.html and .json; docs/MUTATION.md records the last run.
import { readFileSync } from 'node:fs';

/**
 * The lines of top-level function `name` in `file` (`file:first-last`), found by its
 * `export function name(` line and the first `}` in column 0 after it: a module part that lives
 * in a larger file is mutated alone, wherever the file's edits move it.
 */
function functionRange(file, name) {
  const lines = readFileSync(new URL(file, import.meta.url), 'utf8').split('\n');
  const first = lines.findIndex((l) => l.startsWith(`export function ${name}(`));
  if (first < 0) throw new Error(`stryker.config.mjs: no 'export function ${name}(' in ${file}`);
  const last = lines.findIndex((l, i) => i > first && l.startsWith('}'));
  return `${file}:${first + 1}-${last + 1}`;
}

/** Module groups: what is mutated, and the unit tests that must kill the mutants. */
export const MODULES = {
  digest: { mutate: ['src/oci/digest.ts'], tests: ['test/oci/digest.test.ts'] },
  manifest: { mutate: ['src/oci/manifest.ts'], tests: ['test/oci/manifest.test.ts', 'test/registry/manifests.test.ts'] },
  auth: { mutate: ['src/registry/auth.ts'], tests: ['test/registry/auth.test.ts'] },
  'single-flight': { mutate: ['src/shared/single-flight.ts'], tests: ['test/shared/single-flight.test.ts'] },
  'persist-keys': { mutate: ['src/persist/keys.ts', functionRange('src/persist/save.ts', 'groupNewBlobs')], tests: ['test/persist/index-and-keys.test.ts'] },
  'persist-index': { mutate: ['src/persist/persist-index.ts'], tests: ['test/persist/index-and-keys.test.ts'] },
  storage: { mutate: ['src/storage/blob-store.ts'], tests: ['test/storage/blob-writer.test.ts', 'test/storage/sha512.test.ts', 'test/storage/append-stream.test.ts'] },
};

/** The groups run when REGCACHE_MUTATE is not set. */
export const DEFAULT_MODULES = ['digest', 'auth', 'single-flight', 'persist-keys'];

const chosen = (process.env.REGCACHE_MUTATE ?? DEFAULT_MODULES.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
for (const name of chosen) if (!(name in MODULES)) throw new Error(`stryker.config.mjs: unknown module group '${name}' (known: ${Object.keys(MODULES).join(', ')})`);
const groups = chosen.map((name) => MODULES[name]);
/** Names the sandbox and the reports after the groups, so that runs of other groups can go on side by side. */
const runName = chosen.join('+');

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'tap',
  tap: {
    testFiles: [...new Set(groups.flatMap((g) => g.tests))],
    // tsx runs the TypeScript tests; node:test reports in TAP (Node 23 and later default to spec).
    nodeArgs: ['-r', '{{hookFile}}', '--import', 'tsx', '--test-reporter=tap', '{{testFile}}'],
    forceBail: true,
  },
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  mutate: groups.flatMap((g) => g.mutate),
  coverageAnalysis: 'perTest',
  // The machine is shared (2 cores): one test process at a time; raise with --concurrency.
  concurrency: 1,
  timeoutMS: 20_000,
  // Stryker copies the project into a sandbox: leave out what the unit tests do not read.
  ignorePatterns: ['dist', 'bench', 'docs', '.tmp', '.ci', 'coverage', 'reports'],
  tempDirName: `.tmp/stryker-${runName}`,
  cleanTempDir: 'always',
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: `.tmp/mutation/${runName}.html` },
  jsonReporter: { fileName: `.tmp/mutation/${runName}.json` },
  clearTextReporter: { allowColor: false, logTests: false, maxTestsToLog: 0 },
  thresholds: { high: 90, low: 80, break: null },
};
