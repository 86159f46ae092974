// Repository names, tags and references as the distribution spec defines them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_NAME_LENGTH, RegistryError, assertName, isValidName, isValidTag, parseReference } from '../../src/oci/index.js';

function registryError(code: string, status: number) {
  return (err: unknown) => {
    assert.ok(err instanceof RegistryError, String(err));
    assert.equal(err.code, code);
    assert.equal(err.status, status);
    return true;
  };
}

test('names the spec regex accepts are valid', () => {
  for (const n of ['a', 'library/ubuntu', 'a/b/c/d', 'a.b', 'a_b', 'a__b', 'a-b', 'a---b', 'a0/b1.c2_d3__e4-f5', '0', 'foo/blobs/bar', 'x/manifests/y', 'r/blobs/uploads']) {
    assert.equal(isValidName(n), true, n);
  }
});

test('separators may not lead, trail, double up or mix', () => {
  for (const n of ['_a', 'a_', '.a', 'a.', '-a', 'a-', 'a___b', 'a..b', 'a._b', 'a.-b', 'a-.b', 'a_-b']) {
    assert.equal(isValidName(n), false, n);
  }
});

test('path tricks are not names: empty components, dot segments, slashes at the ends', () => {
  for (const n of ['', '/', '/a', 'a/', 'a//b', '..', '.', 'a/../b', 'a/./b', '../a', 'a/..', 'a/_layers', 'a/_manifests/b']) {
    assert.equal(isValidName(n), false, n);
  }
});

test('upper case, spaces, encoded slashes and other characters are not names', () => {
  for (const n of ['A', 'Library/ubuntu', 'a b', 'a%2Fb', 'a%2fb', 'a\\b', 'a:b', 'a@b', 'a\nb', 'é', 'a\0b']) {
    assert.equal(isValidName(n), false, JSON.stringify(n));
  }
});

test('a name of 255 characters is valid, 256 is not', () => {
  assert.equal(MAX_NAME_LENGTH, 255);
  const name255 = `${'a'.repeat(127)}/${'b'.repeat(127)}`;
  assert.equal(name255.length, 255);
  assert.equal(isValidName(name255), true);
  assert.equal(isValidName(`${name255}c`), false);
  assert.equal(isValidName('a'.repeat(256)), false);
});

test('assertName returns a valid name and throws NAME_INVALID (400) otherwise', () => {
  assert.equal(assertName('a/b'), 'a/b');
  assert.throws(() => assertName('a'.repeat(300)), registryError('NAME_INVALID', 400));
  assert.throws(() => assertName('../etc'), registryError('NAME_INVALID', 400));
});

test('tags: word characters, dots and dashes, not leading with a dot or dash', () => {
  for (const t of ['latest', 'v1.2.3', '_private', '1', 'A-b_C.d', 'sha256-abc']) assert.equal(isValidTag(t), true, t);
  for (const t of ['', '.hidden', '-x', '..', 'a/b', 'a:b', 'a b', 'é', 'a\n']) assert.equal(isValidTag(t), false, JSON.stringify(t));
});

test('a tag of 128 characters is valid, 129 is not', () => {
  assert.equal(isValidTag('t'.repeat(128)), true);
  assert.equal(isValidTag('t'.repeat(129)), false);
});

test('parseReference: a tag and a digest are told apart', () => {
  assert.deepEqual(parseReference('latest', 'read'), { kind: 'tag', tag: 'latest' });
  const d = `sha256:${'b'.repeat(64)}`;
  const ref = parseReference(d, 'write');
  assert.equal(ref.kind, 'digest');
  assert.equal(ref.kind === 'digest' && ref.digest.value, d);
});

test('parseReference: an invalid tag is MANIFEST_UNKNOWN when reading and MANIFEST_INVALID when writing', () => {
  assert.throws(() => parseReference('.bad', 'read'), registryError('MANIFEST_UNKNOWN', 404));
  assert.throws(() => parseReference('.bad', 'write'), registryError('MANIFEST_INVALID', 400));
  assert.throws(() => parseReference('t'.repeat(129), 'read'), registryError('MANIFEST_UNKNOWN', 404));
  assert.throws(() => parseReference('t'.repeat(129), 'write'), registryError('MANIFEST_INVALID', 400));
});

test('parseReference: anything with a colon that is not a supported digest is DIGEST_INVALID in both modes', () => {
  for (const mode of ['read', 'write'] as const) {
    assert.throws(() => parseReference(`sha256:${'b'.repeat(63)}`, mode), registryError('DIGEST_INVALID', 400));
    assert.throws(() => parseReference(`sha384:${'b'.repeat(96)}`, mode), registryError('DIGEST_INVALID', 400));
    assert.throws(() => parseReference('a:b', mode), registryError('DIGEST_INVALID', 400));
  }
});
