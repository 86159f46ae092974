// Content digests (`algorithm:hex`): parsing, validation and hashing helpers. The
// registry accepts sha256 and sha512, the two algorithms the OCI image spec registers.
import { createHash, type Hash } from 'node:crypto';
import { RegistryError } from './errors.js';

/** The digest algorithms regcache stores, with the length of their hex encoding. */
export const ALGORITHMS = Object.freeze({ sha256: 64, sha512: 128 } as const);

/** A digest algorithm regcache supports. */
export type Algorithm = keyof typeof ALGORITHMS;

/** A parsed, validated digest. `hex` is lower-case and of the algorithm's exact length. */
export interface Digest {
  readonly algorithm: Algorithm;
  readonly hex: string;
  /** The canonical `algorithm:hex` string. */
  readonly value: string;
}

const DIGEST_RE = /^(sha256|sha512):([a-f0-9]+)$/;

/** Parses `s` as a digest; returns undefined unless it is a supported, well-formed one. */
export function tryParseDigest(s: string): Digest | undefined {
  const m = DIGEST_RE.exec(s);
  if (!m) return undefined;
  const algorithm = m[1] as Algorithm;
  const hex = m[2]!;
  if (hex.length !== ALGORITHMS[algorithm]) return undefined;
  return { algorithm, hex, value: s };
}

/** Parses `s` as a digest or throws DIGEST_INVALID. */
export function parseDigest(s: string): Digest {
  const d = tryParseDigest(s);
  if (!d) throw new RegistryError('DIGEST_INVALID', 'invalid digest', { detail: { digest: s.slice(0, 200) } });
  return d;
}

/** A new incremental hash for the algorithm. */
export function newHash(algorithm: Algorithm): Hash {
  return createHash(algorithm);
}

/** The digest of a buffer held in memory (manifests, small blobs). */
export function digestOf(data: Uint8Array, algorithm: Algorithm = 'sha256'): Digest {
  const hex = createHash(algorithm).update(data).digest('hex');
  return { algorithm, hex, value: `${algorithm}:${hex}` };
}
