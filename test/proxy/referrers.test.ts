// The referrers API through the cache port, discovered as oras does it (test/helpers/referrers.ts):
// from an upstream that implements it (regcache's own registry port, paginating 2 referrers a
// page), with artifactType filtering, Link pages, the tag TTL, the routing forms and credentials,
// an upstream that ignores the filter, and an upstream that is down; and from one that does not
// implement it (Debian's distribution 2.8), where the cache answers 404 and clients read the
// referrers tag (`sha256-<hex>`) through the cache instead.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import bcrypt from 'bcryptjs';
import { request } from 'undici';
import { startDistribution } from '../helpers/distribution.js';
import { startRegcache, type Regcache } from '../helpers/regcache.js';
import { byDigest, discover, pushReferrer, referrersTag, writeReferrersTag, type Referrer, type Subject } from '../helpers/referrers.js';
import { OCI_INDEX, getManifest, seedImage, type PushOptions } from '../helpers/upstream-images.js';
import { skipUnless } from '../helpers/tools.js';
import { tempDir, waitFor } from '../helpers/proc.js';
import type { StatsSnapshot } from '../../src/stats/index.js';
import { parseDigest } from '../../src/oci/index.js';
import { cleanup, expectError, getJson, logWindow, matching, show, startCache, startGate } from './support.js';

const SBOM = 'application/vnd.example.sbom.v1+json';
const SIGNATURE_CONFIG = 'application/vnd.example.signature.config.v1+json';

/** A subject image in `name` of `base`, with 3 SBOMs (artifactType) and 2 signatures (config media type), each annotated. */
async function seedReferrers(base: string, name: string, push: PushOptions = {}): Promise<{ subject: Subject; sboms: Referrer[]; signatures: Referrer[]; all: Referrer[] }> {
  const image = await seedImage(base, name, 'v1', { ...push, layers: 1, layerSize: 1024 });
  const subject = { mediaType: image.mediaType, digest: image.digest, size: image.manifest.byteLength };
  const sboms: Referrer[] = [];
  const signatures: Referrer[] = [];
  for (let i = 0; i < 3; i++) sboms.push(await pushReferrer(base, name, subject, { artifactType: SBOM, annotations: { 'org.example.kind': 'sbom', 'org.example.n': String(i) } }, push));
  for (let i = 0; i < 2; i++) signatures.push(await pushReferrer(base, name, subject, { configMediaType: SIGNATURE_CONFIG, annotations: { 'org.example.kind': 'signature', 'org.example.n': String(i) } }, push));
  return { subject, sboms, signatures, all: [...sboms, ...signatures] };
}

/** The referrers GETs the upstream regcache answered, as `path?query`. */
function upstreamReferrerGets(upstream: Regcache): string[] {
  return upstream.requests.filter((r) => r.method === 'GET' && r.url.includes('/referrers/')).map((r) => r.url);
}

/** The referrers GETs after the first `before`, once there are at least `count` (a response is recorded when its connection is done with it). */
function referrerGetsSince(upstream: Regcache, before: number, count: number): Promise<string[]> {
  return waitFor(() => upstreamReferrerGets(upstream).length >= before + count && upstreamReferrerGets(upstream).slice(before), { what: `${count} referrers GETs upstream`, timeoutMs: 5_000 });
}

async function stats(cacheUrl: string, repository: string) {
  return (await getJson<StatsSnapshot>(`${cacheUrl}/_regcache/stats`)).repositories[repository];
}

test('an upstream with the referrers API, 2 referrers a page: the cache lists all 5 from every page, in one answer naming no upstream URL', async (t) => {
  const upstream = await startRegcache({ referrersPageSize: 2 }, t);
  const seeded = await seedReferrers(upstream.url, 'library/app');
  const direct = await discover(upstream.url, 'library/app', seeded.subject.digest);
  assert.equal(direct.links.length, 2, `the upstream itself lists them on 3 pages: ${direct.links.join(' | ')}`);
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });

  const before = upstreamReferrerGets(upstream).length;
  const res = await request(`${cache.cacheUrl}/v2/app/referrers/${seeded.subject.digest}`, { headers: { accept: OCI_INDEX } });
  const text = await res.body.text();
  assert.equal(res.statusCode, 200, text);
  assert.equal(res.headers['content-type'], OCI_INDEX);
  assert.equal(res.headers.link, undefined, 'one answer: no Link');
  for (const [k, v] of Object.entries(res.headers)) assert.ok(!String(v).includes(upstream.host), `header ${k} names the upstream: ${String(v)}`);
  assert.ok(!text.includes(upstream.host), 'the body names no upstream URL');
  const manifests = (JSON.parse(text) as { manifests: Referrer['descriptor'][] }).manifests;
  assert.deepEqual(byDigest(manifests), byDigest(seeded.all.map((r) => r.descriptor)), 'every referrer, with its artifactType and annotations');

  const asked = await referrerGetsSince(upstream, before, 3);
  assert.equal(asked.length, 3, `the cache read the upstream's 3 pages:\n${asked.join('\n')}`);
  assert.equal(asked.filter((u) => u.includes('last=')).length, 2, `pages 2 and 3 by the upstream's Link:\n${asked.join('\n')}`);

  // As oras discovers them: the same list by the API.
  const found = await discover(cache.cacheUrl, 'app', seeded.subject.digest);
  assert.equal(found.via, 'api');
  assert.deepEqual(byDigest(found.referrers), byDigest(seeded.all.map((r) => r.descriptor)));
});

test('through the cache, ?artifactType= lists only that type (the upstream filtering), with OCI-Filters-Applied', async (t) => {
  const upstream = await startRegcache({ referrersPageSize: 2 }, t);
  const seeded = await seedReferrers(upstream.url, 'library/app');
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });
  for (const [type, expected] of [[SBOM, seeded.sboms], [SIGNATURE_CONFIG, seeded.signatures]] as const) {
    const res = await request(`${cache.cacheUrl}/v2/app/referrers/${seeded.subject.digest}?artifactType=${encodeURIComponent(type)}`);
    const doc = (await res.body.json()) as { manifests: Referrer['descriptor'][] };
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['oci-filters-applied'], 'artifactType');
    assert.deepEqual(byDigest(doc.manifests), byDigest(expected.map((r) => r.descriptor)), type);
  }
  const asked = upstreamReferrerGets(upstream);
  assert.ok(asked.every((u) => u.includes('artifactType=')), `the filter was sent upstream, on every page:\n${asked.join('\n')}`);
});

test('the cache paginates a long list itself (a client\'s n): its Link pages are its own and hold every referrer', async (t) => {
  const upstream = await startRegcache({}, t);
  const seeded = await seedReferrers(upstream.url, 'library/app');
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });
  const found = await discover(cache.cacheUrl, 'app', seeded.subject.digest, { n: 2 });
  assert.equal(found.links.length, 2, `3 pages of at most 2: ${found.links.join(' | ')}`);
  for (const link of found.links) assert.match(link, /^<\/v2\/app\/referrers\/sha256:[0-9a-f]{64}\?n=2&last=sha256%3A[0-9a-f]{64}>; rel="next"$/);
  assert.deepEqual(byDigest(found.referrers), byDigest(seeded.all.map((r) => r.descriptor)));
  // With a filter and ?ns=, the Link keeps both.
  const filtered = await discover(cache.cacheUrl, 'library/app', seeded.subject.digest, { n: 2, artifactType: SBOM, query: { ns: 'docker.io' } });
  assert.equal(filtered.links.length, 1);
  assert.match(filtered.links[0]!, /ns=docker.io/);
  assert.match(filtered.links[0]!, /artifactType=application%2Fvnd.example.sbom.v1%2Bjson/);
  assert.deepEqual(byDigest(filtered.referrers), byDigest(seeded.sboms.map((r) => r.descriptor)));
});

test('referrers reach the upstream as manifests do: by ?ns= and by a host prefix in the path, with its credentials', async (t) => {
  const dir = await tempDir('rc-referrers-auth-', t);
  const htpasswd = join(dir.path, 'htpasswd');
  await writeFile(htpasswd, `ci:${bcrypt.hashSync('s3cret', 4)}\n`);
  const upstream = await startRegcache({ htpasswd }, t);
  const push = { authorization: `Basic ${Buffer.from('ci:s3cret').toString('base64')}` };
  const seeded = await seedReferrers(upstream.url, 'team/app', push);
  const cache = await startCache(t, {
    upstreams: [`docker.io=${upstream.url}`, `registry.test=${upstream.url}`],
    credentials: new Map([
      ['docker.io', { username: 'nobody', password: 'wrong' }],
      ['registry.test', { username: 'ci', password: 's3cret' }],
    ]),
  });
  const expected = byDigest(seeded.all.map((r) => r.descriptor));
  assert.deepEqual(byDigest((await discover(cache.cacheUrl, 'team/app', seeded.subject.digest, { query: { ns: 'registry.test' } })).referrers), expected, '?ns=');
  assert.deepEqual(byDigest((await discover(cache.cacheUrl, 'registry.test/team/app', seeded.subject.digest)).referrers), expected, 'path prefix');
  const asked = upstream.requests.filter((r) => r.url.includes('/referrers/'));
  assert.ok(asked.some((r) => r.status === 200 && r.headers.authorization === push.authorization), `the credentials of registry.test were sent:\n${asked.map((r) => `${r.status} ${r.url}`).join('\n')}`);
  // docker.io's wrong credentials: the upstream refuses them, and so does the cache.
  const refused = await expectError('GET', `${cache.cacheUrl}/v2/team/app/referrers/${seeded.subject.digest}`);
  assert.equal(refused.code, 'DENIED');
});

test('an upstream that ignores artifactType (no OCI-Filters-Applied): the cache filters and says so', async (t) => {
  const upstream = await startRegcache({}, t);
  const seeded = await seedReferrers(upstream.url, 'library/app');
  const gate = cleanup(t, await startGate(upstream.url));
  gate.dropQuery = ['artifactType'];
  const cache = await startCache(t, { upstreams: [`docker.io=${gate.url}`] });
  const res = await request(`${cache.cacheUrl}/v2/app/referrers/${seeded.subject.digest}?artifactType=${encodeURIComponent(SIGNATURE_CONFIG)}`);
  const doc = (await res.body.json()) as { manifests: Referrer['descriptor'][] };
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['oci-filters-applied'], 'artifactType');
  assert.deepEqual(byDigest(doc.manifests), byDigest(seeded.signatures.map((r) => r.descriptor)));
  const asked = upstreamReferrerGets(upstream);
  assert.ok(asked.length > 0 && asked.every((u) => !u.includes('artifactType')), `the upstream saw no filter:\n${asked.join('\n')}`);
});

test('within the tag TTL an answer is not asked again (a filtered one is cut from it); after the TTL it is fetched again by GET', async (t) => {
  const upstream = await startRegcache({}, t);
  const seeded = await seedReferrers(upstream.url, 'library/app');
  const kept = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], tagTtlMs: 10 * 60_000 });
  const expired = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], tagTtlMs: 0 });
  const d = seeded.subject.digest;
  for (const cache of [kept, expired]) assert.equal((await discover(cache.cacheUrl, 'app', d)).referrers.length, 5);

  const added = await pushReferrer(upstream.url, 'library/app', seeded.subject, { artifactType: SBOM });
  const before = upstreamReferrerGets(upstream).length;
  assert.equal((await discover(kept.cacheUrl, 'app', d)).referrers.length, 5, 'within the TTL: the kept answer');
  assert.deepEqual(byDigest((await discover(kept.cacheUrl, 'app', d, { artifactType: SBOM })).referrers), byDigest(seeded.sboms.map((r) => r.descriptor)));
  assert.equal(upstreamReferrerGets(upstream).length, before, 'nothing asked upstream within the TTL');
  assert.equal((await stats(kept.cacheUrl, 'docker.io/library/app'))!.manifestHits, 2, 'both served from the kept answer');

  const again = await discover(expired.cacheUrl, 'app', d);
  assert.deepEqual(byDigest(again.referrers), byDigest([...seeded.all, added].map((r) => r.descriptor)), 'after the TTL: the new referrer too');
  const [asked] = await referrerGetsSince(upstream, before, 1);
  assert.equal(asked!.split('?')[0], `/v2/library/app/referrers/${d}`, 'fetched again by GET');
});

test('upstream down: a listed answer is served stale (filtered too) and counted; referrers of manifests pulled through stand in for one never listed; else 503', async (t) => {
  const upstream = await startRegcache({}, t);
  const listed = await seedReferrers(upstream.url, 'library/app');
  const pulled = await seedReferrers(upstream.url, 'library/other');
  const never = await seedReferrers(upstream.url, 'library/third');
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], tagTtlMs: 0, upstreamRetries: 0, upstreamBackoffMs: 10 });
  assert.equal((await discover(cache.cacheUrl, 'app', listed.subject.digest)).referrers.length, 5);
  // Pulled by digest through the cache (what `oras pull` of each referrer does), never listed.
  for (const r of pulled.all) await getManifest({ base: cache.cacheUrl, name: 'other' }, r.digest);
  await upstream.close();

  const stale = await discover(cache.cacheUrl, 'app', listed.subject.digest);
  assert.deepEqual(byDigest(stale.referrers), byDigest(listed.all.map((r) => r.descriptor)));
  const staleSboms = await discover(cache.cacheUrl, 'app', listed.subject.digest, { artifactType: SBOM });
  assert.deepEqual(byDigest(staleSboms.referrers), byDigest(listed.sboms.map((r) => r.descriptor)));
  assert.equal((await stats(cache.cacheUrl, 'docker.io/library/app'))!.manifestStale, 2, 'both counted as stale serves');

  // The cache's records of the pulled referrers keep artifactType and annotations.
  const local = await discover(cache.cacheUrl, 'other', pulled.subject.digest);
  assert.deepEqual(byDigest(local.referrers), byDigest(pulled.all.map((r) => r.descriptor)));
  const localSignatures = await discover(cache.cacheUrl, 'other', pulled.subject.digest, { artifactType: SIGNATURE_CONFIG });
  assert.deepEqual(byDigest(localSignatures.referrers), byDigest(pulled.signatures.map((r) => r.descriptor)));

  const unknown = await expectError('GET', `${cache.cacheUrl}/v2/third/referrers/${never.subject.digest}`);
  assert.deepEqual([unknown.status, unknown.code], [503, 'UNAVAILABLE'], unknown.text);
});

const skip = skipUnless(['docker-registry']);

test('an upstream without the referrers API (distribution 2.8): the cache answers 404, and the referrers tag is served through the cache', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution());
  const seeded = await seedReferrers(upstream.url, 'library/app');
  // What oras writes to a registry without the API: the tag schema's index.
  await writeReferrersTag(upstream.url, 'library/app', seeded.subject.digest, seeded.all.map((r) => r.descriptor));
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], tagTtlMs: 0 });
  const window = await logWindow(upstream);

  const notFound = await expectError('GET', `${cache.cacheUrl}/v2/app/referrers/${seeded.subject.digest}`);
  assert.equal(notFound.status, 404);
  assert.notEqual(notFound.code, 'NAME_UNKNOWN', 'a 404 clients read as "no referrers API", not as "no repository"');

  const found = await discover(cache.cacheUrl, 'app', seeded.subject.digest);
  assert.equal(found.via, 'tag');
  assert.deepEqual(byDigest(found.referrers), byDigest(seeded.all.map((r) => r.descriptor)));
  const sboms = await discover(cache.cacheUrl, 'app', seeded.subject.digest, { artifactType: SBOM });
  assert.deepEqual(byDigest(sboms.referrers), byDigest(seeded.sboms.map((r) => r.descriptor)));
  const log = await window.entries();
  assert.ok(matching(log, 'GET', `/referrers/${seeded.subject.digest}`).every((e) => e.status === 404), show(log));
  assert.ok(matching(log, 'GET', `/manifests/${referrersTag(seeded.subject.digest)}`).some((e) => e.status === 200), `the tag was read upstream through the cache:\n${show(log)}`);

  // Then each referrer by digest (as `oras cp -r` does): the cache records them with artifactType and annotations.
  for (const r of seeded.all) await getManifest({ base: cache.cacheUrl, name: 'app' }, r.digest);
  const records = await cache.server.storage.cacheRepositories.listReferrers('docker.io/library/app', parseDigest(seeded.subject.digest));
  assert.deepEqual(byDigest(records), byDigest(seeded.all.map((r) => r.descriptor)));
  // The tag is cached like any tag: served stale once distribution is gone.
  await upstream.stop();
  const stale = await discover(cache.cacheUrl, 'app', seeded.subject.digest);
  assert.equal(stale.via, 'tag');
  assert.deepEqual(byDigest(stale.referrers), byDigest(seeded.all.map((r) => r.descriptor)));
});
