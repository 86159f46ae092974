#!/usr/bin/env node
// Renders the committed job summaries (docs/summary/cold.md and warm.md, written by
// test/action/summary/two-jobs.test.ts) as GitHub shows them: markdown to HTML with `marked`
// (GitHub-flavoured), mermaid charts drawn by `mermaid` loaded from node_modules (no network),
// in a page styled like GitHub's job summary at 900 px; then screenshots it with Debian's
// headless Chromium into docs/summary/summary.png (the README's picture).
//   node scripts/render-summary.mjs [--chromium /usr/bin/chromium]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { marked } from 'marked';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const DIR = join(ROOT, 'docs', 'summary');
const MERMAID = join(ROOT, 'node_modules', 'mermaid', 'dist', 'mermaid.min.js');
const WIDTH = 900;
const chromiumArg = process.argv.indexOf('--chromium');
const CHROMIUM = chromiumArg > 0 ? process.argv[chromiumArg + 1] : 'chromium';

/** Markdown to HTML, mermaid blocks left for mermaid to draw. */
function toHtml(md) {
  const renderer = new marked.Renderer();
  const code = renderer.code.bind(renderer);
  renderer.code = (token) => (token.lang === 'mermaid' ? `<pre class="mermaid">${token.text}</pre>` : code(token));
  return marked.parse(md, { gfm: true, renderer });
}

const STYLE = `
  body { margin: 0; background: #f6f8fa; font: 14px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; color: #1f2328; }
  .job { width: ${WIDTH - 34}px; margin: 16px; background: #fff; border: 1px solid #d1d9e0; border-radius: 6px; }
  .job > h2 { margin: 0; padding: 10px 16px; font-size: 14px; font-weight: 600; border-bottom: 1px solid #d1d9e0; background: #f6f8fa; border-radius: 6px 6px 0 0; }
  .markdown-body { padding: 4px 16px 8px; }
  .markdown-body h3 { font-size: 1.25em; margin: 16px 0 8px; }
  .markdown-body p { margin: 0 0 12px; }
  table { border-collapse: collapse; margin: 0 0 12px; display: block; overflow: auto; max-width: 100%; }
  th, td { border: 1px solid #d1d9e0; padding: 5px 12px; }
  th { font-weight: 600; background: #f6f8fa; }
  tr:nth-child(2n) td { background: #f6f8fa; }
  code { font: 12px ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace; background: rgba(129,139,152,.12); padding: .2em .4em; border-radius: 6px; }
  details { margin: 0 0 8px; }
  summary { cursor: pointer; }
  pre.mermaid { background: none; margin: 0 0 12px; }
`;

function page(jobs) {
  const mermaid = relative(DIR, MERMAID);
  const body = jobs.map(({ title, md }) => `<section class="job"><h2>${title}</h2><div class="markdown-body">${toHtml(md)}</div></section>`).join('\n');
  return `<!doctype html><html><head><meta charset="utf-8"><title>regcache job summary</title><style>${STYLE}</style></head>
<body>${body}
<div id="height" hidden></div>
<script src="${mermaid}"></script>
<script>
  mermaid.initialize({ startOnLoad: false, theme: 'default', pie: { useWidth: ${WIDTH - 80} } });
  mermaid.run({ querySelector: 'pre.mermaid' }).finally(() => {
    const last = document.querySelector('section.job:last-of-type');
    document.getElementById('height').textContent = 'height=' + Math.ceil(last.getBoundingClientRect().bottom + window.scrollY + 16);
  });
</script></body></html>`;
}

function chromium(args, userDataDir) {
  return execFileSync(CHROMIUM, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--hide-scrollbars', '--allow-file-access-from-files', `--user-data-dir=${userDataDir}`, '--virtual-time-budget=10000', ...args,
  ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 120_000 });
}

const jobs = [
  { title: 'Job 1: a cold cache (nothing saved yet)', md: readFileSync(join(DIR, 'cold.md'), 'utf8') },
  { title: 'Job 2: the next run (restored from the Actions cache, one new image)', md: readFileSync(join(DIR, 'warm.md'), 'utf8') },
];
const html = join(DIR, 'summary.html');
writeFileSync(html, page(jobs));
const profile = mkdtempSync(join(tmpdir(), 'regcache-chromium-'));
try {
  const url = pathToFileURL(html).href;
  const dom = chromium([`--window-size=${WIDTH},2000`, '--dump-dom', url], profile);
  const height = Number(/height=(\d+)/.exec(dom)?.[1]);
  if (!height) throw new Error('the page did not report its height (did mermaid load?)');
  chromium([`--window-size=${WIDTH},${height}`, `--screenshot=${join(DIR, 'summary.png')}`, url], profile);
  console.log(`wrote ${relative(ROOT, html)} and ${relative(ROOT, join(DIR, 'summary.png'))} (${WIDTH}x${height})`);
} finally {
  rmSync(profile, { recursive: true, force: true });
}
