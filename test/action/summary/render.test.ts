// The summary's markdown on its own, from statistics the real Stats class counted: escaping
// outside and inside code spans read back through a GFM parser, a job with 500 images under
// GitHub's 1 MiB per step, a job with none in one line, Docker Hub's counted pulls and parsed
// rate limit (and no other upstream's), plurals and zero counts left out, the reason nothing
// was saved. (What the counters themselves record: test/stats/origins.test.ts.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Stats } from '../../../src/stats/index.js';
import { code, escapeCell, renderJobSummary } from '../../../src/action/summary/index.js';
import type { PersistState } from '../../../src/action/state.js';
import type { SaveReport } from '../../../src/persist/index.js';
import { marked } from 'marked';
import { assertWellFormed, parseSummary } from '../../helpers/summary-markdown.js';

const HOSTILE = ['a *b* c', '_x_', '<img src=x onerror=alert(1)>', 'x|y', '`tick`', '[l](http://e)', '#1 ~~s~~', 'a\\b', 'integration_tests', 'a & b'];

/** A digest of 64 hex digits made of `seed`. */
const digest = (seed: string) => `sha256:${Buffer.from(seed).toString('hex').padEnd(64, '0').slice(0, 64)}`;

function persist(o: Partial<PersistState> = {}): PersistState {
  return { indexFile: '/tmp/none', restoreSeconds: 0.2, save: false, saveMode: 'auto', keyPrefix: 'regcache', maxSaveBytes: 1 << 30, ...o };
}

function saveReport(o: Partial<SaveReport> = {}): SaveReport {
  return { packsSaved: 1, packsExisting: 0, packsRefused: 0, packsRateLimited: 0, packsFailed: 0, packsSkippedForSize: 0, packsDropped: 0, bytesSaved: 2048, index: 'saved', indexKey: 'regcache-index-1', workingSetBytes: 2048, seconds: 1.2, ...o };
}

/** An image pulled cold through the cache: a manifest by tag, docker's re-request by digest, its blobs. */
function coldPull(s: Stats, ns: string, name: string, tag: string, blobs: number[]): void {
  const m = digest(`${name}:${tag}`);
  s.upstreamRequest(ns, 'GET', 200, 3, true);
  s.fromUpstream(m);
  s.bytesFetched(ns, name, 500);
  s.manifestServed(name, tag, m, 'upstream', 500);
  s.manifestServed(name, m, m, 'local', 500);
  blobs.forEach((size, i) => {
    const d = digest(`${name}:${tag}:${i}`);
    s.upstreamRequest(ns, 'GET', 200, 3, false);
    s.blobServed(name, d, size, 'upstream');
    s.bytesFetched(ns, name, size);
    s.bytesServed(name, d, size);
  });
}

test('escapeCell: a GFM parser reads back exactly the text escaped, in a table cell', () => {
  for (const text of HOSTILE) {
    const md = `| Image |\n|---|\n| ${escapeCell(text)} |\n`;
    assert.equal(parseSummary(md).tables[0]!.rows[0]![0], text, `${text} -> ${escapeCell(text)}`);
    assert.doesNotMatch(escapeCell(text), /<[a-z]/i, 'no HTML tag survives');
  }
});

test('code: a code span shows its text as it is, with no backslash, in a table cell', () => {
  for (const text of ['integration_tests', 'v1.2_rc*', 'a`b', '`x`', 'sha256:abc']) {
    const md = `| Tag |\n|---|\n| ${code(text)} |\n`;
    const parsed = parseSummary(md);
    assert.equal(parsed.tables[0]!.rows[0]![0], text);
    assert.deepEqual(parsed.codeSpans.map((c) => c.trim()), [text.trim()]);
  }
  assert.equal(code('integration_tests'), '`integration_tests`', 'no escape inside a code span');
});

test('a job in which nothing went through regcache is one line (what the Actions cache did folded under it)', () => {
  const none = renderJobSummary({ stats: new Stats().snapshot() });
  assert.equal(none, '**regcache**: no image went through the cache or the registry in this job.\n');
  assert.equal(renderJobSummary({ stats: undefined }), none);
  const md = renderJobSummary({ stats: new Stats().snapshot(), persist: persist({ save: true }), saved: saveReport({ packsSaved: 0, bytesSaved: 0, index: 'unchanged', indexKey: undefined }) });
  const html = marked.parse(md) as string;
  assert.match(html, /^<details>\n<summary>regcache: no image went through the cache or the registry in this job\.<\/summary>/, 'the one visible line is the summary of a closed details');
  assert.doesNotMatch(html, /<details open/);
  assert.equal(parseSummary(md).items['Index entry'], 'unchanged (nothing new: no upload)');
});

test('500 images with long tags: under 1 MiB, 100 rows shown and the rest counted, every row well formed', () => {
  const s = new Stats();
  for (let i = 0; i < 500; i++) {
    const name = `docker.io/acme/service-${String(i).padStart(3, '0')}-${'x'.repeat(150)}`;
    coldPull(s, 'docker.io', name, `release-${'y'.repeat(100)}-${i}`, [1000, 2000]);
    for (let t = 0; t < 49; t++) s.manifestServed(name, `t${t}-${'z'.repeat(120)}`, digest(`${name}:${t}`), 'upstream', 500);
  }
  const md = renderJobSummary({ stats: s.snapshot(), persist: persist({ save: true }), saved: saveReport() });
  assert.ok(Buffer.byteLength(md) < 1024 * 1024, `${Buffer.byteLength(md)} bytes`);
  assertWellFormed(md);
  const parsed = parseSummary(md);
  assert.equal(parsed.tables[0]!.rows.length, 100);
  assert.match(md, /…and 400 more images/);
  assert.match(parsed.headline, /^500 images pulled/);
});

test("Docker Hub's pulls and rate limit in the headline, parsed; another upstream's requests by its name only", () => {
  const s = new Stats();
  coldPull(s, 'docker.io', 'docker.io/library/alpine', 'latest', [4096]);
  coldPull(s, 'ghcr.io', 'ghcr.io/owner/integration_tests', 'v1', [8192]);
  s.rateLimit('docker.io', '100;w=21600', '93;w=21600');
  s.rateLimit('ghcr.io', '5000;w=3600', '4990;w=3600');
  const md = renderJobSummary({ stats: s.snapshot() });
  assertWellFormed(md);
  const p = parseSummary(md);
  assert.equal(p.headline, '2 images pulled, none from cache · Docker Hub: 1 pull counted, 93 of 100 left in the 6 h window');
  const upstreams = p.tables.find((t) => t.header[0] === 'Upstream')!;
  const ghcr = upstreams.rows.find((r) => r[0] === 'ghcr.io')!;
  assert.equal(ghcr[5], '4990 of 5000 left, 1 h window');
  assert.doesNotMatch(ghcr[3]!, /counted/, 'only Docker Hub counts pulls');
  const images = p.tables[0]!;
  assert.deepEqual(images.header, ['Image', 'Tags', 'Digest', 'Bytes from', 'Size', 'From upstream']);
  assert.deepEqual(images.rows.map((r) => r.slice(0, 4)), [
    ['alpine', 'latest', digest('docker.io/library/alpine:latest').slice(0, 19), 'upstream'],
    ['ghcr.io/owner/integration_tests', 'v1', digest('ghcr.io/owner/integration_tests:v1').slice(0, 19), 'upstream'],
  ]);
  assert.equal(p.pie, undefined, 'one source: no chart');
});

test('the Actions cache section: plurals, zero counts left out, and why nothing was saved on a pull request', () => {
  const s = new Stats();
  coldPull(s, 'docker.io', 'docker.io/library/alpine', 'latest', [4096]);
  const saved = renderJobSummary({ stats: s.snapshot(), persist: persist({ save: true }), saved: saveReport() });
  assertWellFormed(saved);
  assert.equal(parseSummary(saved).items.Saved, '1 new pack (2 KiB) in 1.2 s');
  assert.doesNotMatch(saved, /\| \| \|/, 'no empty table header');
  const two = renderJobSummary({ stats: s.snapshot(), persist: persist({ save: true }), saved: saveReport({ packsSaved: 2, packsExisting: 1, packsRefused: 3, packsRateLimited: 3 }) });
  assert.equal(parseSummary(two).items.Saved, '2 new packs (2 KiB), 1 already saved by another job, 3 refused (3 for the rate limit) in 1.2 s');
  const pr = renderJobSummary({ stats: s.snapshot(), persist: persist(), event: { name: 'pull_request', ref: 'refs/pull/7/merge' } });
  assertWellFormed(pr);
  assert.match(pr, /Nothing was saved to the Actions cache: `save: auto` does not save on pull requests \(set `save: true` to save from them\)\./);
  const off = renderJobSummary({ stats: s.snapshot(), persist: persist({ saveMode: 'false' }) });
  assert.equal(parseSummary(off).items.Saved, 'nothing: `save: false`');
});

test('pushed images: a row each, "pushed here", and whether persist-registry keeps them', () => {
  const s = new Stats();
  s.blobPushed('team/app', digest('layer'), 3000);
  s.manifestPushed('team/app', 'v1', digest('team/app'), 400);
  const md = renderJobSummary({ stats: s.snapshot(), registryHost: '127.0.0.1:5000', persist: persist({ save: true }), saved: saveReport() });
  assertWellFormed(md);
  const p = parseSummary(md);
  assert.equal(p.headline, '1 image pushed');
  assert.deepEqual(p.tables[0]!.rows[0], ['127.0.0.1:5000/team/app', 'v1', digest('team/app').slice(0, 19), 'pushed here', '3.3 KiB', '0 B']);
  assert.equal(p.items['Pushed images'], 'not saved (set `persist-registry: true` to keep them for the next job)');
  const kept = parseSummary(renderJobSummary({ stats: s.snapshot(), persist: persist({ save: true, persistRegistry: true }), saved: saveReport() }));
  assert.equal(kept.items['Pushed images'], 'saved with the cache (persist-registry)');
  const lost = parseSummary(renderJobSummary({ stats: s.snapshot(), persist: persist({ save: true, persistRegistry: true }), saved: saveReport({ index: 'failed', indexKey: undefined }) }));
  assert.equal(lost.items['Pushed images'], 'not saved (the index was not saved)');
});

test('an image pulled from the registry port that a previous job pushed and the Actions cache restored: its row says so', () => {
  const s = new Stats();
  s.fromActionsCache([digest('team/app'), digest('layer')]);
  s.registryServed('team/app', digest('team/app'), 400, 'v1');
  s.registryServed('team/app', digest('layer'), 3000);
  s.registryServed('team/app', digest('layer'), 3000);
  const p = parseSummary(renderJobSummary({ stats: s.snapshot(), registryHost: 'localhost:5000' }));
  assert.deepEqual(p.tables[0]!.rows, [['localhost:5000/team/app', 'v1', digest('team/app').slice(0, 19), 'Actions cache', '3.3 KiB', '0 B']]);
  assert.equal(p.headline, '1 image pulled, 1 from cache (3.3 KiB not downloaded)');
});

test('docker not pointed at the cache: said at the top, with the reason', () => {
  const s = new Stats();
  coldPull(s, 'docker.io', 'docker.io/library/alpine', 'latest', [4096]);
  const md = renderJobSummary({ stats: s.snapshot(), docker: { configured: false, detail: 'no docker daemon answers on /var/run/docker.sock' } });
  assert.match(md.split('\n').slice(0, 6).join('\n'), /⚠ docker was not pointed at the cache: no docker daemon answers on \/var\/run\/docker\.sock\./);
});
