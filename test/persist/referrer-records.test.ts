// The cache's referrer records survive the trip through the persistence index: a manifest with a
// subject, exported by one job and imported by the next, is listed among its subject's referrers
// with its artifactType (its own, else its config's media type) and annotations, as pulled.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OCI_MANIFEST, digestOf } from '../../src/oci/index.js';
import { manifestRecordOf } from '../../src/storage/index.js';
import { exportIndex, importIndex } from '../../src/persist/index.js';
import { tempStorage } from '../storage/fixtures.js';

function referrer(subject: string, extra: Record<string, unknown>, configMediaType = 'application/vnd.oci.empty.v1+json'): Buffer {
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: configMediaType, digest: digestOf(Buffer.from('{}')).value, size: 2 },
    layers: [],
    subject: { mediaType: OCI_MANIFEST, digest: subject, size: 100 },
    ...extra,
  }));
}

test('referrers of cached manifests keep artifactType and annotations through export and import of the index', async (t) => {
  const job1 = (await tempStorage(t)).storage;
  const job2 = (await tempStorage(t)).storage;
  const name = 'docker.io/library/app';
  const subject = digestOf(Buffer.from('the subject'));
  const sbom = referrer(subject.value, { artifactType: 'application/vnd.example.sbom', annotations: { 'org.example.kind': 'sbom' } });
  const sig = referrer(subject.value, { annotations: { 'org.example.kind': 'signature' } }, 'application/vnd.example.sig.config');
  for (const body of [sbom, sig]) {
    const d = digestOf(body);
    await job1.blobs.putBytes(d, body);
    await job1.cacheRepositories.putManifest(name, d, manifestRecordOf(body, OCI_MANIFEST));
  }
  const expected = [
    { mediaType: OCI_MANIFEST, digest: digestOf(sbom).value, size: sbom.byteLength, artifactType: 'application/vnd.example.sbom', annotations: { 'org.example.kind': 'sbom' } },
    { mediaType: OCI_MANIFEST, digest: digestOf(sig).value, size: sig.byteLength, artifactType: 'application/vnd.example.sig.config', annotations: { 'org.example.kind': 'signature' } },
  ].sort((a, b) => (a.digest < b.digest ? -1 : 1));
  const sorted = <T extends { digest: string }>(l: T[]) => [...l].sort((a, b) => (a.digest < b.digest ? -1 : 1));
  assert.deepEqual(sorted(await job1.cacheRepositories.listReferrers(name, subject)), expected, 'as pulled');

  const imported = await importIndex(job2, await exportIndex(job1));
  assert.equal(imported.manifests, 2);
  assert.deepEqual(sorted(await job2.cacheRepositories.listReferrers(name, subject)), expected, 'as imported by the next job');
});

test('a manifest the parser refuses still records the subject it names', () => {
  const subject = digestOf(Buffer.from('s')).value;
  const odd = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.example.unknown', subject: { digest: subject } }));
  assert.deepEqual(manifestRecordOf(odd, 'application/vnd.example.unknown'), { mediaType: 'application/vnd.example.unknown', size: odd.byteLength, subject });
});
