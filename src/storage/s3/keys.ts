// The one map of a bucket: every key regcache writes under the storage's prefix.
//
//   <prefix>blobs/<alg>/<hex[0..2]>/<hex>   blob bytes, written once (BucketBlobs)
//   <prefix>touched/<alg>/<hex>             its LastModified is the blob's last reference; a body
//                                           unique to each touch, so its ETag names the touch
//   <prefix>condemned/<alg>/<hex>           a sweep is about to delete the blob (blob-lifetime.ts)
//   <prefix>leases/<name>                   a WorkLease's holder, JSON (leases.ts)
//   <prefix>fills/<alg>/<hex>               a FillClaim's holder, JSON (fill-claims.ts)
//   <prefix><record key>                    every other Record (repositories, uploads, …), as
//                                           the record keys name them; never under the four above
//
// Blob keys list in the order of their hex (the two-character level is the hex's own first two
// characters), and so do touch keys: bucket-blobs.ts merges the two listings in one pass.
import { tryParseDigest, type Digest } from '../../oci/index.js';

/** The top-level key prefixes this map owns (record keys must not start with them). */
export const RESERVED_PREFIXES = Object.freeze(['blobs/', 'touched/', 'condemned/', 'leases/', 'fills/'] as const);

/** Where blob `d`'s bytes are, relative to the storage prefix. */
export function blobKey(d: Digest): string {
  return `blobs/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}`;
}

/** Where blob `d`'s touch record is, relative to the storage prefix. */
export function touchKey(d: Digest): string {
  return `touched/${d.algorithm}/${d.hex}`;
}

/** Where the mark of a sweep about to delete blob `d` is, relative to the storage prefix. */
export function condemnedKey(d: Digest): string {
  return `condemned/${d.algorithm}/${d.hex}`;
}

/** The record of lease `name`, relative to the storage prefix. */
export function leaseKey(name: string): string {
  return `leases/${name}`;
}

/** The fill claim of blob `d`, relative to the storage prefix. */
export function fillKey(d: Digest): string {
  return `fills/${d.algorithm}/${d.hex}`;
}

/** The digest a blob key names (relative to the storage prefix), or undefined for any other key. */
export function digestOfBlobKey(key: string): Digest | undefined {
  const m = /^blobs\/([a-z0-9]+)\/([a-f0-9]{2})\/([a-f0-9]+)$/.exec(key);
  if (!m || !m[3]!.startsWith(m[2]!)) return undefined;
  return tryParseDigest(`${m[1]}:${m[3]}`);
}

/** The digest a touch key names (relative to the storage prefix), or undefined for any other key. */
export function digestOfTouchKey(key: string): Digest | undefined {
  const m = /^touched\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(key);
  return m ? tryParseDigest(`${m[1]}:${m[2]}`) : undefined;
}
