// Digest parsing: the two supported algorithms at their exact lengths, and every way a
// digest string can be wrong.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RegistryError, digestOf, newHash, parseDigest, tryParseDigest } from '../../src/oci/index.js';

const HEX64 = 'a'.repeat(64);
const HEX128 = '0123456789abcdef'.repeat(8);

test('a sha256 digest of 64 lower-case hex parses into its parts', () => {
  assert.deepEqual(tryParseDigest(`sha256:${HEX64}`), { algorithm: 'sha256', hex: HEX64, value: `sha256:${HEX64}` });
});

test('a sha512 digest of 128 lower-case hex parses into its parts', () => {
  assert.deepEqual(tryParseDigest(`sha512:${HEX128}`), { algorithm: 'sha512', hex: HEX128, value: `sha512:${HEX128}` });
});

test('a digest one hex digit short or long is rejected, for either algorithm', () => {
  for (const s of [`sha256:${HEX64.slice(1)}`, `sha256:${HEX64}a`, `sha512:${HEX128.slice(1)}`, `sha512:${HEX128}0`]) {
    assert.equal(tryParseDigest(s), undefined, s);
  }
});

test('a sha256-length hex under sha512 (and the reverse) is rejected', () => {
  assert.equal(tryParseDigest(`sha512:${HEX64}`), undefined);
  assert.equal(tryParseDigest(`sha256:${HEX128}`), undefined);
});

test('upper-case hex or an upper-case algorithm is rejected', () => {
  assert.equal(tryParseDigest(`sha256:${'A'.repeat(64)}`), undefined);
  assert.equal(tryParseDigest(`SHA256:${HEX64}`), undefined);
});

test('unsupported algorithms are rejected even when well-formed', () => {
  for (const s of [`sha384:${'a'.repeat(96)}`, `md5:${'a'.repeat(32)}`, `blake3:${HEX64}`, `sha256+b64u:${HEX64}`]) {
    assert.equal(tryParseDigest(s), undefined, s);
  }
});

test('strings that are not digests at all are rejected', () => {
  for (const s of ['', 'sha256', 'sha256:', `:${HEX64}`, HEX64, `sha256:${HEX64}\n`, ` sha256:${HEX64}`, `sha256:${'g'.repeat(64)}`, `sha256::${HEX64}`]) {
    assert.equal(tryParseDigest(s), undefined, JSON.stringify(s));
  }
});

test('parseDigest throws DIGEST_INVALID (400) with a truncated detail', () => {
  const long = `sha256:${'z'.repeat(1000)}`;
  assert.throws(
    () => parseDigest(long),
    (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(err.code, 'DIGEST_INVALID');
      assert.match(err.message, /invalid digest/);
      assert.equal(err.status, 400);
      assert.equal((err.detail as { digest: string }).digest.length, 200);
      return true;
    },
  );
});

test('digestOf hashes with the requested algorithm and agrees with parseDigest', () => {
  const data = Buffer.from('hello');
  const d256 = digestOf(data);
  assert.equal(d256.value, 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
  assert.deepEqual(parseDigest(d256.value), d256);
  const d512 = digestOf(data, 'sha512');
  assert.equal(d512.algorithm, 'sha512');
  assert.equal(d512.hex.length, 128);
  assert.deepEqual(parseDigest(d512.value), d512);
});

test('newHash hashes incrementally with the algorithm asked for, as digestOf does at once', () => {
  for (const algorithm of ['sha256', 'sha512'] as const) {
    const h = newHash(algorithm);
    h.update('hel');
    h.update('lo');
    assert.equal(h.digest('hex'), digestOf(Buffer.from('hello'), algorithm).hex, algorithm);
  }
});
