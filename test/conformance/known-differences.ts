// Where a registry we test against deviates from the OCI Distribution Spec v1.1, case by case.
// The conformance test files assert that each listed deviation is STILL observed (the case
// fails, with a message matching `failure`), so this list cannot silently go stale: when a
// registry is fixed, its entry must be removed. regcache should have no entries.
import assert from 'node:assert/strict';
import type { ConformanceCase, ConformanceContext } from './suite.js';

/** A registry the conformance suite runs against. */
export type RegistryUnderTest = 'distribution' | 'regcache';

/** One recorded deviation from the spec. */
export interface KnownDifference {
  /** The conformance case (see suite.ts) that this registry fails. */
  id: ConformanceCase['id'];
  registry: RegistryUnderTest;
  /** The spec sentence the registry does not follow, quoted. */
  spec: string;
  /** What the registry does instead. */
  observed: string;
  /** Matches the case's failure message, so that only this deviation counts as "still observed". */
  failure: RegExp;
}

/** Every recorded deviation (Debian's distribution 2.8.2 as `distribution`). */
export const knownDifferences: KnownDifference[] = [
  {
    id: 'push-blob-chunk-out-of-order',
    registry: 'distribution',
    spec: 'If a chunk is uploaded out of order, the registry MUST respond with a `416 Requested Range Not Satisfiable` code.',
    observed: 'Ignores Content-Range on PATCH: a chunk starting past the current offset is appended to the upload and answered 202 Accepted.',
    failure: /PATCH of an out-of-order chunk: expected status 416, got 202/,
  },
  {
    id: 'push-manifest-subject-missing',
    registry: 'distribution',
    spec: 'When processing a request for an image manifest with the `subject` field, a registry implementation that supports the referrers API '
      + 'MUST respond with the response header `OCI-Subject: <subject digest>` to indicate to the client that the registry processed the request\'s `subject`.',
    observed: 'Accepts the manifest (201) and serves it byte for byte, but sends no OCI-Subject header: it predates the referrers API and ignores `subject` '
      + '(clients then fall back to the referrers tag schema).',
    failure: /PUT manifest with a missing subject: expected header oci-subject, it is missing/,
  },
  {
    id: 'discovery-tags-list-sorted',
    registry: 'distribution',
    spec: 'If the list is not empty, the tags MUST be in lexical order (i.e. case-insensitive alphanumeric order).',
    observed: 'Returns the tags in the order the storage driver lists the tag directories (hash order on ext4), not sorted.',
    failure: /tags\/list: every tag, in lexical order/,
  },
  {
    id: 'discovery-tags-list-n',
    registry: 'distribution',
    spec: 'The response to such a request MAY return fewer than `<int>` results, but only when the total number of tags attached to the repository '
      + 'is less than `<int>` or a `Link` header is provided. Otherwise, the response MUST include `<int>` results.',
    observed: 'Ignores `n` on tags/list: returns every tag, unsorted, without a Link header (tag pagination arrived in distribution 3.0).',
    failure: /tags\/list\?n=2: the first two tags/,
  },
  {
    id: 'discovery-tags-list-last',
    registry: 'distribution',
    spec: 'A request of this sort will return up to `<int>` tags, beginning non-inclusively with `<tagname>`.',
    observed: 'Ignores `last` (and `n`) on tags/list: returns every tag.',
    failure: /tags\/list\?n=2&last=b/,
  },
  {
    id: 'discovery-tags-list-n-zero',
    registry: 'distribution',
    spec: 'When `n` is zero, this endpoint MUST return an empty list, and MUST NOT include a `Link` header.',
    observed: 'Ignores `n=0`: returns every tag.',
    failure: /tags\/list\?n=0: tags must be an empty list/,
  },
  ...(['discovery-referrers-list', 'discovery-referrers-filter', 'discovery-referrers-unknown-digest', 'management-delete-referrer'] as const).map(
    (id): KnownDifference => ({
      id,
      registry: 'distribution',
      spec: 'Assuming a repository is found, this request MUST return a `200 OK` response code. If the registry supports the referrers API, '
        + 'the registry MUST NOT return a `404 Not Found` to a referrers API requests.',
      observed: 'No referrers API (OCI 1.1): GET /v2/<name>/referrers/<digest> matches no route and is answered 404 with the plain-text body '
        + '"404 page not found"; clients fall back to the referrers tag schema.',
      failure: /\/referrers\/sha256:[0-9a-f]{64}(\?\S*)?: expected status 200, got 404 .*404 page not found/,
    }),
  ),
  {
    id: 'discovery-referrers-invalid-digest',
    registry: 'distribution',
    spec: 'If the request is invalid, such as a `<digest>` with an invalid syntax, a `400 Bad Request` MUST be returned.',
    observed: 'No referrers API: the request matches no route and is answered 404 "404 page not found".',
    failure: /GET referrers of a malformed digest: expected status 400, got 404/,
  },
  {
    id: 'errors-name-invalid',
    registry: 'distribution',
    spec: '`NAME_INVALID` | invalid repository name (detail.md: "Invalid repository name encountered either during manifest validation or any API operation.", '
      + 'listed under 400 Bad Request)',
    observed: 'A repository name outside the grammar matches no route: 404 with the plain-text body "404 page not found", no error envelope.',
    failure: /POST upload to an invalid repository name: expected status 400, got 404 .*404 page not found/,
  },
  {
    id: 'errors-upload-unknown',
    registry: 'distribution',
    spec: '`BLOB_UPLOAD_UNKNOWN` | blob upload unknown to registry (detail.md: "If a blob upload has been cancelled or was never started, '
      + 'this error code MAY be returned.")',
    observed: 'Answers 404 as the spec says, but with code BLOB_UPLOAD_INVALID: an upload URL without the `_state` parameter distribution '
      + 'signs into its Location headers cannot be decoded, and that is reported as an invalid upload.',
    failure: /GET status of an upload that was never started: expected error code BLOB_UPLOAD_UNKNOWN, got BLOB_UPLOAD_INVALID/,
  },
];

/** The recorded deviation of `registry` for case `id`, if any. */
export function knownDifference(registry: RegistryUnderTest, id: string): KnownDifference | undefined {
  return knownDifferences.find((d) => d.registry === registry && d.id === id);
}

/**
 * Runs one case against `registry`. Without a recorded difference the case must pass; with one,
 * the case must still fail, and fail the recorded way (its message matches `failure`).
 */
export async function runCase(registry: RegistryUnderTest, c: ConformanceCase, ctx: ConformanceContext): Promise<void> {
  const diff = knownDifference(registry, c.id);
  if (!diff) return c.run(ctx);
  let error: unknown;
  try {
    await c.run(ctx);
  } catch (err) {
    error = err;
  }
  if (error === undefined) {
    assert.fail(`${c.id} now passes against ${registry}: remove its entry from known-differences.ts`);
  }
  const message = error instanceof Error ? error.message : String(error);
  if (!diff.failure.test(message)) {
    assert.fail(`${c.id} fails against ${registry}, but not the recorded way (${diff.failure}): ${message}`);
  }
}

/** Ids of recorded differences of `registry` that name no case (stale entries). */
export function unknownDifferenceIds(registry: RegistryUnderTest, cases: ConformanceCase[]): string[] {
  const ids = new Set(cases.map((c) => c.id));
  return knownDifferences.filter((d) => d.registry === registry && !ids.has(d.id)).map((d) => d.id);
}
