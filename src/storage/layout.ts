// The one place that maps storage contents to paths. Every path is built here from values
// that were validated by src/oci before they arrive, and stays under the storage root.
//
//   <root>/
//     blobs/<alg>/<hex[0..2]>/<hex>            blob bytes, immutable, named by their digest
//     uploads/<id>/data                        bytes of an upload session received so far
//     uploads/<id>/session.json                {repository, startedAt}
//     repositories/<name>/_layers/<alg>/<hex>   link: the repository may serve this blob
//     repositories/<name>/_manifests/<alg>/<hex> revision: JSON {mediaType, size}
//     repositories/<name>/_tags/<tag>           JSON {digest}
//     repositories/<name>/_referrers/<alg>/<subject-hex>/<alg>-<hex>  JSON descriptor
//     cache/<ns>/<name>/...                      the same records for repositories of the
//                                               pull-through cache, kept apart from pushed ones
//     tmp/                                      temp files, renamed into place when complete
//     lock                                      symlink whose target names the server that owns the
//                                               storage; its mtime is the lease (lock.ts)
//     lock.takeover                             held for a moment while a dead owner's lock is replaced
//     gc.sock                                   Unix socket of that server: `regcache gc` asks it to collect
//
// On a bucket (s3://bucket/prefix) the repository records, blobs and upload sessions are keys of
// the same names under the prefix; tmp/, the lock and gc.sock stay in each server's local root,
// whose blobs/ then holds read-through copies of the bucket's blobs.
//
// Repository name components never start with `_`, so `_layers` and friends cannot collide
// with a nested repository name.
import { join } from 'node:path';
import type { Digest } from '../oci/index.js';

/**
 * Keys of the repository records of one tree (`repositories`: pushed, or `cache`), relative to
 * the storage root: the same names on the filesystem (paths under the root) and on a bucket
 * (keys under the prefix).
 */
export class RecordKeys {
  constructor(readonly tree: 'repositories' | 'cache' = 'repositories') {}

  /** Prefix of every repository of this tree. */
  get repositories(): string {
    return this.tree;
  }

  /** Prefix of one repository's records. */
  repository(name: string): string {
    return `${this.tree}/${name}`;
  }

  /** Link that lets `name` serve blob `d`. */
  layerLink(name: string, d: Digest): string {
    return `${this.tree}/${name}/_layers/${d.algorithm}/${d.hex}`;
  }

  /** Prefix of the blob links of `name`. */
  layerLinks(name: string): string {
    return `${this.tree}/${name}/_layers`;
  }

  /** Revision record of manifest `d` in `name`. */
  manifestRevision(name: string, d: Digest): string {
    return `${this.tree}/${name}/_manifests/${d.algorithm}/${d.hex}`;
  }

  /** Prefix of the revision records of `name`. */
  manifestRevisions(name: string): string {
    return `${this.tree}/${name}/_manifests`;
  }

  /** Tag record `tag` of `name`. */
  tag(name: string, tag: string): string {
    return `${this.tree}/${name}/_tags/${tag}`;
  }

  /** Prefix of the tags of `name`. */
  tags(name: string): string {
    return `${this.tree}/${name}/_tags`;
  }

  /** Prefix of the referrers of `subject` in `name`. */
  referrers(name: string, subject: Digest): string {
    return `${this.tree}/${name}/_referrers/${subject.algorithm}/${subject.hex}`;
  }

  /** Record of `referrer` among the referrers of `subject` in `name`. */
  referrer(name: string, subject: Digest, referrer: Digest): string {
    return `${this.referrers(name, subject)}/${referrer.algorithm}-${referrer.hex}`;
  }
}

/** Path builder for one storage root. */
export class Layout {
  readonly root: string;
  readonly blobsDir: string;
  readonly uploadsDir: string;
  readonly repositoriesDir: string;
  readonly tmpDir: string;
  readonly lockFile: string;
  readonly gcSocket: string;
  /** Keys of this tree's records, relative to the root. */
  readonly keys: RecordKeys;

  /** `tree` names the directory of repository records: `repositories` (pushed) or `cache`. */
  constructor(root: string, tree: 'repositories' | 'cache' = 'repositories') {
    this.root = root;
    this.keys = new RecordKeys(tree);
    this.blobsDir = join(root, 'blobs');
    this.uploadsDir = join(root, 'uploads');
    this.repositoriesDir = join(root, tree);
    this.tmpDir = join(root, 'tmp');
    this.lockFile = join(root, 'lock');
    this.gcSocket = join(root, 'gc.sock');
  }

  /** Where the bytes of a blob live once committed. */
  blob(d: Digest): string {
    return join(this.blobsDir, d.algorithm, d.hex.slice(0, 2), d.hex);
  }

  /** Directory of one upload session. */
  upload(id: string): string {
    return join(this.uploadsDir, id);
  }

  /** Directory of one repository's metadata. */
  repository(name: string): string {
    return join(this.root, this.keys.repository(name));
  }

  /** Link that lets `name` serve blob `d`. */
  layerLink(name: string, d: Digest): string {
    return join(this.root, this.keys.layerLink(name, d));
  }

  /** Revision record of manifest `d` in `name`. */
  manifestRevision(name: string, d: Digest): string {
    return join(this.root, this.keys.manifestRevision(name, d));
  }

  /** Directory of the revision records of one algorithm in `name`. */
  manifestRevisions(name: string): string {
    return join(this.root, this.keys.manifestRevisions(name));
  }

  /** Tag record `tag` of `name`. */
  tag(name: string, tag: string): string {
    return join(this.root, this.keys.tag(name, tag));
  }

  /** Directory of the tags of `name`. */
  tags(name: string): string {
    return join(this.root, this.keys.tags(name));
  }

  /** Directory of the referrers of `subject` in `name`. */
  referrers(name: string, subject: Digest): string {
    return join(this.root, this.keys.referrers(name, subject));
  }

  /** Record of `referrer` among the referrers of `subject` in `name`. */
  referrer(name: string, subject: Digest, referrer: Digest): string {
    return join(this.root, this.keys.referrer(name, subject, referrer));
  }
}
