// Referrers as the OCI clients make and find them: artifact manifests with a `subject` (an SBOM,
// a signature) pushed over HTTP, the referrers tag schema's index (`sha256-<hex>`, written as
// oras writes it to a registry without the referrers API), and discovery as oras-go does it:
// the referrers API with its Link pages and client-side filtering, and the fallback to the tag
// schema when the API answers 404 with anything but NAME_UNKNOWN.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request, type Dispatcher } from 'undici';
import { OCI_INDEX, OCI_MANIFEST, pushBlob, pushManifest, sha256, type Blob, type PushOptions } from './upstream-images.js';

/** The empty config of artifacts (OCI image spec 1.1). */
export const EMPTY_CONFIG_TYPE = 'application/vnd.oci.empty.v1+json';

/** A descriptor as the referrers API lists it. */
export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** What an artifact manifest refers to. */
export interface Subject {
  mediaType: string;
  digest: string;
  size: number;
}

/** An artifact manifest with a subject, and the descriptor the referrers API must list for it. */
export interface Referrer {
  manifest: Buffer;
  digest: string;
  blobs: Blob[];
  /** artifactType: the manifest's own, else its config's media type (the spec's rule). */
  descriptor: ReferrerDescriptor;
}

/** What a referrer is made of: `artifactType` or a config of `configMediaType` (or both), and annotations. */
export interface ReferrerOptions {
  artifactType?: string;
  configMediaType?: string;
  annotations?: Record<string, string>;
}

/** Builds (without pushing) an artifact manifest referring to `subject`: one small random layer. */
export function referrerOf(subject: Subject, opts: ReferrerOptions = {}): Referrer {
  const configData = Buffer.from('{}');
  const config: Blob = { digest: sha256(configData), size: configData.byteLength, data: configData, mediaType: opts.configMediaType ?? EMPTY_CONFIG_TYPE };
  const layerData = randomBytes(64);
  const layer: Blob = { digest: sha256(layerData), size: layerData.byteLength, data: layerData, mediaType: 'application/octet-stream' };
  const descriptor = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    ...(opts.artifactType ? { artifactType: opts.artifactType } : {}),
    config: descriptor(config),
    layers: [descriptor(layer)],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    ...(opts.annotations ? { annotations: opts.annotations } : {}),
  }));
  const digest = sha256(manifest);
  return {
    manifest,
    digest,
    blobs: [config, layer],
    descriptor: {
      mediaType: OCI_MANIFEST,
      digest,
      size: manifest.byteLength,
      artifactType: opts.artifactType ?? config.mediaType,
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
    },
  };
}

/** Builds and pushes (blobs, then the manifest by digest) a referrer of `subject` to `name`. */
export async function pushReferrer(base: string, name: string, subject: Subject, opts: ReferrerOptions = {}, push: PushOptions = {}): Promise<Referrer> {
  const r = referrerOf(subject, opts);
  for (const b of r.blobs) await pushBlob(base, name, b, push);
  await pushManifest(base, name, r.digest, r.manifest, OCI_MANIFEST, push);
  return r;
}

/** The referrers tag of a subject digest: `sha256:<hex>` → `sha256-<hex>`. */
export function referrersTag(subject: string): string {
  return subject.replace(':', '-');
}

/**
 * Writes the tag schema's referrers index of `subject` (what oras pushes to a registry without
 * the referrers API): an image index listing `referrers`, tagged `sha256-<hex>`.
 */
export async function writeReferrersTag(base: string, name: string, subject: string, referrers: readonly ReferrerDescriptor[], push: PushOptions = {}): Promise<Buffer> {
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: referrers }));
  await pushManifest(base, name, referrersTag(subject), index, OCI_INDEX, push);
  return index;
}

/** What {@link discover} found, and how. */
export interface Discovered {
  /** 'api' when the referrers API answered, 'tag' when it answered 404 and the tag schema was read. */
  via: 'api' | 'tag';
  referrers: ReferrerDescriptor[];
  /** Every URL requested, in order (the API's pages, or the referrers tag). */
  urls: string[];
  /** The Link headers of the API's pages. */
  links: string[];
}

/**
 * Finds the referrers of `subject` in `name` as oras-go does (`oras discover`): GETs the
 * referrers API (`?artifactType=` when given, and `n` when given), follows `Link: <...>;
 * rel="next"` pages (relative to the page's URL), insists on the OCI index Content-Type, filters
 * client side when no `OCI-Filters-Applied: artifactType` came back; on a 404 that is not
 * NAME_UNKNOWN it reads the referrers tag instead (a 404 there: no referrers).
 * `query` holds extra parameters sent on the first request (the cache port's `ns`).
 */
export async function discover(base: string, name: string, subject: string, opts: { artifactType?: string; n?: number; query?: Record<string, string> } = {}): Promise<Discovered> {
  const first = new URL(`${base}/v2/${name}/referrers/${subject}`);
  for (const [k, v] of Object.entries(opts.query ?? {})) first.searchParams.set(k, v);
  if (opts.artifactType) first.searchParams.set('artifactType', opts.artifactType);
  if (opts.n !== undefined) first.searchParams.set('n', String(opts.n));
  const out: Discovered = { via: 'api', referrers: [], urls: [], links: [] };
  for (let url: URL | undefined = first, pages = 0; url; pages++) {
    assert.ok(pages < 100, `more than 100 pages of referrers from ${first}`);
    out.urls.push(url.toString());
    const res: Dispatcher.ResponseData = await request(url, { headers: { accept: OCI_INDEX } });
    const text = await res.body.text();
    if (res.statusCode === 404 && pages === 0) {
      const code = (JSON.parse(text.startsWith('{') ? text : '{}') as { errors?: Array<{ code?: string }> }).errors?.[0]?.code;
      assert.notEqual(code, 'NAME_UNKNOWN', `GET ${url}: the repository is unknown: ${text}`);
      return fromTag(base, name, subject, opts.artifactType, opts.query, out);
    }
    assert.equal(res.statusCode, 200, `GET ${url}: ${text.slice(0, 300)}`);
    assert.equal(res.headers['content-type'], OCI_INDEX, `GET ${url}: Content-Type`);
    const index = JSON.parse(text) as { schemaVersion?: number; mediaType?: string; manifests?: ReferrerDescriptor[] };
    assert.equal(index.schemaVersion, 2);
    assert.equal(index.mediaType, OCI_INDEX);
    assert.ok(Array.isArray(index.manifests), `GET ${url}: manifests`);
    const applied = String(res.headers['oci-filters-applied'] ?? '').split(',').map((s) => s.trim());
    out.referrers.push(...(opts.artifactType && !applied.includes('artifactType') ? index.manifests.filter((d) => d.artifactType === opts.artifactType) : index.manifests));
    const link = res.headers.link === undefined ? undefined : String(res.headers.link);
    if (link !== undefined) out.links.push(link);
    const next = link && /<([^>]*)>\s*;\s*rel="?next"?/.exec(link);
    url = next ? new URL(next[1]!, url) : undefined;
  }
  return out;
}

async function fromTag(base: string, name: string, subject: string, artifactType: string | undefined, query: Record<string, string> | undefined, out: Discovered): Promise<Discovered> {
  const url = new URL(`${base}/v2/${name}/manifests/${referrersTag(subject)}`);
  for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v);
  out.via = 'tag';
  out.urls.push(url.toString());
  const res = await request(url, { headers: { accept: OCI_INDEX } });
  const text = await res.body.text();
  if (res.statusCode === 404) return out;
  assert.equal(res.statusCode, 200, `GET ${url}: ${text.slice(0, 300)}`);
  const manifests = (JSON.parse(text) as { manifests?: ReferrerDescriptor[] }).manifests ?? [];
  out.referrers = artifactType ? manifests.filter((d) => d.artifactType === artifactType) : manifests;
  return out;
}

/** Descriptors sorted by digest, on the fields the spec defines (for deepEqual). */
export function byDigest(list: readonly ReferrerDescriptor[]): ReferrerDescriptor[] {
  return list
    .map((d) => ({ mediaType: d.mediaType, digest: d.digest, size: d.size, ...(d.artifactType ? { artifactType: d.artifactType } : {}), ...(d.annotations ? { annotations: d.annotations } : {}) }))
    .sort((a, b) => (a.digest < b.digest ? -1 : 1));
}
