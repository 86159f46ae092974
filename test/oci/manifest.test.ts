// Manifest parsing: the four media types, how the media type is decided, and every shape
// of invalid manifest that must answer MANIFEST_INVALID.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  OCI_EMPTY,
  OCI_INDEX,
  OCI_MANIFEST,
  RegistryError,
  baseMediaType,
  manifestKind,
  parseManifest,
} from '../../src/oci/index.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const D3 = `sha512:${'3'.repeat(128)}`;
const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D1, size: 7 };
const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D2, size: 32 };

function bytes(doc: unknown): Buffer {
  return Buffer.from(JSON.stringify(doc));
}

function invalid(reason: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof RegistryError, String(err));
    assert.equal(err.code, 'MANIFEST_INVALID');
    assert.equal(err.status, 400);
    assert.match((err.detail as { reason: string }).reason, reason);
    return true;
  };
}

test('an OCI image manifest yields its config and layers', () => {
  const m = parseManifest(bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] }), OCI_MANIFEST);
  assert.equal(m.mediaType, OCI_MANIFEST);
  assert.equal(m.kind, 'image');
  assert.deepEqual(m.config, config);
  assert.deepEqual(m.layers, [layer]);
  assert.deepEqual(m.manifests, []);
});

test('a Docker schema 2 manifest is an image manifest', () => {
  const m = parseManifest(bytes({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config, layers: [layer] }), DOCKER_MANIFEST);
  assert.equal(m.mediaType, DOCKER_MANIFEST);
  assert.equal(m.kind, 'image');
});

test('an OCI index yields its child manifests with their platforms', () => {
  const child = { mediaType: OCI_MANIFEST, digest: D3, size: 500, platform: { architecture: 'amd64', os: 'linux' } };
  const m = parseManifest(bytes({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [child] }), OCI_INDEX);
  assert.equal(m.kind, 'index');
  assert.deepEqual(m.manifests, [child]);
  assert.equal(m.config, undefined);
  assert.equal(m.artifactType, undefined);
});

test('a Docker manifest list is an index', () => {
  const m = parseManifest(bytes({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: [] }), DOCKER_MANIFEST_LIST);
  assert.equal(m.kind, 'index');
  assert.deepEqual(m.manifests, []);
});

test('without a mediaType field the Content-Type decides (parameters and case ignored)', () => {
  const m = parseManifest(bytes({ schemaVersion: 2, config, layers: [] }), `${DOCKER_MANIFEST.toUpperCase()}; charset=utf-8`);
  assert.equal(m.mediaType, DOCKER_MANIFEST);
});

test('without mediaType or a manifest Content-Type the shape decides', () => {
  assert.equal(parseManifest(bytes({ schemaVersion: 2, config, layers: [] }), 'application/json').mediaType, OCI_MANIFEST);
  assert.equal(parseManifest(bytes({ schemaVersion: 2, manifests: [] })).mediaType, OCI_INDEX);
  assert.throws(() => parseManifest(bytes({ schemaVersion: 2, layers: [] })), invalid(/cannot tell/));
});

test('a mediaType field that disagrees with the Content-Type is invalid', () => {
  const body = bytes({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config, layers: [] });
  assert.throws(() => parseManifest(body, OCI_MANIFEST), invalid(/does not match Content-Type/));
});

test('a mediaType field is authoritative over a non-manifest Content-Type', () => {
  const body = bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [] });
  assert.equal(parseManifest(body, 'application/octet-stream').mediaType, OCI_MANIFEST);
});

test('an unsupported manifest media type is invalid', () => {
  const body = bytes({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v1+prettyjws', config, layers: [] });
  assert.throws(() => parseManifest(body), invalid(/unsupported manifest media type/));
});

test('an image manifest without config is invalid', () => {
  assert.throws(() => parseManifest(bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [layer] })), invalid(/config missing/));
});

test('an index without manifests is invalid', () => {
  assert.throws(() => parseManifest(bytes({ schemaVersion: 2, mediaType: OCI_INDEX })), invalid(/manifests missing/));
  assert.throws(() => parseManifest(bytes({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: {} })), invalid(/must be an array/));
});

test('not JSON, not an object, or not schemaVersion 2 is invalid', () => {
  assert.throws(() => parseManifest(Buffer.from('{')), invalid(/not JSON/));
  assert.throws(() => parseManifest(Buffer.from('[1]')), invalid(/JSON object/));
  assert.throws(() => parseManifest(Buffer.from('null')), invalid(/JSON object/));
  assert.throws(() => parseManifest(bytes({ schemaVersion: 1, mediaType: OCI_MANIFEST, config })), invalid(/schemaVersion/));
  assert.throws(() => parseManifest(bytes({ schemaVersion: '2', mediaType: OCI_MANIFEST, config })), invalid(/schemaVersion/));
});

test('bad descriptors are invalid and named by where they are', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ ...layer, digest: 'sha256:nothex' }, /layers\[1\]: digest invalid/],
    [{ ...layer, digest: `SHA256:${'a'.repeat(64)}` }, /layers\[1\]: digest invalid/],
    [{ ...layer, size: -1 }, /layers\[1\]: size invalid/],
    [{ ...layer, size: 1.5 }, /layers\[1\]: size invalid/],
    [{ ...layer, size: '32' }, /layers\[1\]: size invalid/],
    [{ ...layer, size: 2 ** 53 }, /layers\[1\]: size invalid/],
    [{ ...layer, mediaType: '' }, /layers\[1\]: mediaType missing/],
    [{ digest: D2, size: 1 }, /layers\[1\]: mediaType missing/],
    [{ ...layer, annotations: { a: 1 } }, /layers\[1\]: annotations/],
    [{ ...layer, artifactType: 5 }, /layers\[1\]: artifactType/],
    ['sha256:abc', /layers\[1\]: descriptor must be an object/],
    [null, /layers\[1\]: descriptor must be an object/],
  ];
  for (const [bad, reason] of cases) {
    assert.throws(() => parseManifest(bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer, bad] })), invalid(reason));
  }
  assert.throws(() => parseManifest(bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { ...config, size: null } })), invalid(/config: size invalid/));
});

test('artifactType comes from the manifest, else from the config media type', () => {
  const plain = parseManifest(bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { ...config, mediaType: 'application/vnd.example.sbom' }, layers: [] }));
  assert.equal(plain.artifactType, 'application/vnd.example.sbom');
  const explicit = parseManifest(
    bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/vnd.example.sig', config: { mediaType: OCI_EMPTY, digest: D1, size: 2 }, layers: [] }),
  );
  assert.equal(explicit.artifactType, 'application/vnd.example.sig');
  assert.throws(() => parseManifest(bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 1, config })), invalid(/artifactType must be a string/));
});

test('a subject is parsed as a descriptor; a bad one is invalid', () => {
  const subject = { mediaType: OCI_MANIFEST, digest: D2, size: 1234 };
  const m = parseManifest(bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [], subject, annotations: { 'org.example': 'x' } }));
  assert.deepEqual(m.subject, subject);
  assert.deepEqual(m.annotations, { 'org.example': 'x' });
  assert.throws(() => parseManifest(bytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, subject: { ...subject, digest: 'x' } })), invalid(/subject: digest invalid/));
});

test('media type helpers: kinds and base types', () => {
  assert.equal(manifestKind(OCI_MANIFEST), 'image');
  assert.equal(manifestKind(DOCKER_MANIFEST_LIST), 'index');
  assert.equal(manifestKind('application/json'), undefined);
  assert.equal(baseMediaType(' Application/JSON ; charset=utf-8'), 'application/json');
  assert.equal(baseMediaType(''), undefined);
  assert.equal(baseMediaType(undefined), undefined);
});
