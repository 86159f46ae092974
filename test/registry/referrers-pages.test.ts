// Pagination of the referrers API (both ports share the route): a page holds at most the
// configured number of referrers, a client's `n`, and 4 MiB of descriptors (what clients read of
// an index); a Link names the next page with the request's own parameters (artifactType kept).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { OCI_INDEX, OCI_MANIFEST } from '../../src/oci/index.js';
import { imageManifest, pushBlob, pushImage, sha256, testApp, type Response } from './fixtures.js';

const SIG = 'application/vnd.example.sig';
const SBOM = 'application/vnd.example.sbom';

interface Listed {
  digest: string;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** Pushes a subject and `types.length` referrers of it (one per artifact type given); returns the subject's digest and the referrers' digests. */
async function seed(app: FastifyInstance, types: string[], annotations: (i: number) => Record<string, string> = (i) => ({ n: String(i) })): Promise<{ subject: string; referrers: Map<string, string> }> {
  const img = await pushImage(app, 'a', 'v1');
  const subject = { mediaType: OCI_MANIFEST, digest: img.digest, size: img.manifest.length };
  const empty = await pushBlob(app, 'a', '{}');
  const referrers = new Map<string, string>();
  for (const [i, artifactType] of types.entries()) {
    const body = imageManifest({ digest: empty, size: 2 }, [], { artifactType, subject, annotations: annotations(i) });
    const put = await app.inject({ method: 'PUT', url: `/v2/a/manifests/${sha256(body)}`, payload: body, headers: { 'content-type': OCI_MANIFEST } });
    assert.equal(put.statusCode, 201, put.body);
    referrers.set(sha256(body), artifactType);
  }
  return { subject: img.digest, referrers };
}

/** Follows the Link pages from `url`; returns each page's descriptors and Link. */
async function pages(app: FastifyInstance, url: string): Promise<Array<{ manifests: Listed[]; link?: string; bytes: number }>> {
  const out: Array<{ manifests: Listed[]; link?: string; bytes: number }> = [];
  for (let next: string | undefined = url; next; ) {
    assert.ok(out.length < 20, 'too many pages');
    const res: Response = await app.inject({ method: 'GET', url: next });
    assert.equal(res.statusCode, 200, res.body.slice(0, 300));
    assert.equal(res.headers['content-type'], OCI_INDEX);
    const link = res.headers.link === undefined ? undefined : String(res.headers.link);
    out.push({ manifests: (JSON.parse(res.body) as { manifests: Listed[] }).manifests, bytes: res.rawPayload.byteLength, ...(link ? { link } : {}) });
    next = link ? /^<([^>]+)>; rel="next"$/.exec(link)?.[1] : undefined;
    if (link) assert.ok(next, `a Link clients can follow: ${link}`);
  }
  return out;
}

test('referrers beyond the page size come on further pages, in digest order, each once', async (t) => {
  const { app } = await testApp(t, { referrersPageSize: 2 });
  const { subject, referrers } = await seed(app, [SIG, SBOM, SIG, SBOM, SIG]);
  const got = await pages(app, `/v2/a/referrers/${subject}`);
  assert.deepEqual(got.map((p) => p.manifests.length), [2, 2, 1]);
  assert.match(got[0]!.link!, new RegExp(`^</v2/a/referrers/${subject}\\?last=sha256%3A[0-9a-f]{64}>; rel="next"$`));
  assert.equal(got[2]!.link, undefined, 'no Link after the last page');
  const digests = got.flatMap((p) => p.manifests.map((m) => m.digest));
  assert.deepEqual(digests, [...referrers.keys()].sort(), 'every referrer once, in digest order');
  for (const m of got.flatMap((p) => p.manifests)) assert.equal(m.artifactType, referrers.get(m.digest));
});

test('a client\'s n bounds the page below the page size; a filter stays on every page', async (t) => {
  const { app } = await testApp(t, { referrersPageSize: 2 });
  const { subject, referrers } = await seed(app, [SIG, SBOM, SIG, SBOM, SIG]);
  const got = await pages(app, `/v2/a/referrers/${subject}?artifactType=${encodeURIComponent(SIG)}&n=1`);
  assert.deepEqual(got.map((p) => p.manifests.length), [1, 1, 1]);
  for (const p of got.slice(0, 2)) assert.match(p.link!, /\?artifactType=application%2Fvnd.example.sig&n=1&last=sha256%3A/);
  const sigs = [...referrers].filter(([, type]) => type === SIG).map(([d]) => d).sort();
  assert.deepEqual(got.flatMap((p) => p.manifests.map((m) => m.digest)), sigs);
  // n larger than the page size: the page size wins. n=0: an empty page and no Link.
  assert.deepEqual((await pages(app, `/v2/a/referrers/${subject}?n=100`)).map((p) => p.manifests.length), [2, 2, 1]);
  const none = await pages(app, `/v2/a/referrers/${subject}?n=0`);
  assert.deepEqual(none.map((p) => p.manifests.length), [0]);
});

test('without a page size, a list over 4 MiB is split into pages that each stay within 4 MiB', async (t) => {
  const { app } = await testApp(t);
  // Three referrers with 1.5 MiB of annotations each: 4.5 MiB of descriptors.
  const big = (i: number) => ({ n: String(i), blob: String(i).repeat(1.5 * 1024 * 1024) });
  const { subject, referrers } = await seed(app, [SIG, SBOM, SIG], big);
  const got = await pages(app, `/v2/a/referrers/${subject}`);
  assert.deepEqual(got.map((p) => p.manifests.length), [2, 1]);
  for (const p of got) assert.ok(p.bytes <= 4 * 1024 * 1024, `a page of ${p.bytes} bytes`);
  assert.deepEqual(got.flatMap((p) => p.manifests.map((m) => m.digest)), [...referrers.keys()].sort());
  assert.equal(got[0]!.manifests[0]!.annotations!.blob!.length, 1.5 * 1024 * 1024, 'annotations listed whole');
});
