// Test fixture: small random OCI images pushed over HTTP (undici) into a registry that stands
// in for an upstream (distribution, with or without auth), and the client side of a pull
// (manifest, then config and layers) that checks every byte against its digest.
//
// The layers are random bytes, not tarballs: registries do not look inside them, and random
// content makes every image's digests unique to the test that made it.
import { createHash, randomBytes } from 'node:crypto';
import { request, type Dispatcher } from 'undici';

/** OCI media types used here. */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** Every manifest media type a client may ask for. */
export const ACCEPT_ALL_MANIFESTS = [
  OCI_INDEX,
  OCI_MANIFEST,
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** A blob with its digest. */
export interface Blob {
  digest: string;
  size: number;
  data: Buffer;
  mediaType: string;
}

/** An image manifest with its config and layers. */
export interface TestImage {
  manifest: Buffer;
  digest: string;
  mediaType: string;
  config: Blob;
  layers: Blob[];
  /** Config and layers. */
  blobs: Blob[];
}

/** A multi-platform index with its child images. */
export interface TestIndex {
  manifest: Buffer;
  digest: string;
  mediaType: string;
  children: TestImage[];
}

/** How to reach the registry: extra headers (Authorization) and an optional dispatcher. */
export interface PushOptions {
  /** The Authorization header value (basic, or a bearer token with push access). */
  authorization?: string;
  dispatcher?: Dispatcher;
}

/** `sha256:<hex>` of `data`. */
export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function blob(data: Buffer, mediaType: string): Blob {
  return { digest: sha256(data), size: data.byteLength, data, mediaType };
}

/**
 * Builds (without pushing) an image of `layers` random layers of `layerSize` bytes each, on top
 * of `baseLayers` (shared with another image) when given.
 */
export function randomImage(opts: { layers?: number; layerSize?: number; platform?: { os: string; architecture: string }; baseLayers?: Blob[] } = {}): TestImage {
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const fresh = Array.from({ length: opts.layers ?? 2 }, () => blob(randomBytes(opts.layerSize ?? 64 * 1024), OCI_LAYER));
  const layers = [...(opts.baseLayers ?? []), ...fresh];
  const config = blob(
    Buffer.from(JSON.stringify({ ...platform, created: new Date(0).toISOString(), rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) }, nonce: randomBytes(8).toString('hex') })),
    OCI_CONFIG,
  );
  const descriptor = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(config), layers: layers.map(descriptor) }));
  return { manifest, digest: sha256(manifest), mediaType: OCI_MANIFEST, config, layers, blobs: [config, ...layers] };
}

/** Builds (without pushing) an index over one small image per platform. */
export function randomIndex(platforms: Array<{ os: string; architecture: string }>, opts: { layers?: number; layerSize?: number } = {}): TestIndex {
  const children = platforms.map((platform) => randomImage({ ...opts, platform }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: children.map((c, i) => ({ mediaType: c.mediaType, digest: c.digest, size: c.manifest.byteLength, platform: platforms[i] })),
  }));
  return { manifest, digest: sha256(manifest), mediaType: OCI_INDEX, children };
}

function headers(opts: PushOptions, extra: Record<string, string> = {}): Record<string, string> {
  return { ...(opts.authorization ? { authorization: opts.authorization } : {}), ...extra };
}

/** Uploads one blob (POST, then PUT with the digest). */
export async function pushBlob(base: string, name: string, b: Blob, opts: PushOptions = {}): Promise<void> {
  const post = await request(`${base}/v2/${name}/blobs/uploads/`, { method: 'POST', headers: headers(opts, { 'content-length': '0' }), dispatcher: opts.dispatcher });
  const postText = await post.body.text();
  if (post.statusCode !== 202) throw new Error(`POST upload for ${name}: ${post.statusCode} ${postText}`);
  const location = new URL(String(post.headers.location), base);
  location.searchParams.set('digest', b.digest);
  const put = await request(location, {
    method: 'PUT',
    body: b.data,
    headers: headers(opts, { 'content-type': 'application/octet-stream', 'content-length': String(b.size) }),
    dispatcher: opts.dispatcher,
  });
  const putText = await put.body.text();
  if (put.statusCode !== 201) throw new Error(`PUT blob ${b.digest} to ${name}: ${put.statusCode} ${putText}`);
}

/** PUTs a manifest under `reference` (a tag or its digest). */
export async function pushManifest(base: string, name: string, reference: string, body: Buffer, mediaType: string, opts: PushOptions = {}): Promise<void> {
  const res = await request(`${base}/v2/${name}/manifests/${reference}`, { method: 'PUT', body, headers: headers(opts, { 'content-type': mediaType }), dispatcher: opts.dispatcher });
  const text = await res.body.text();
  if (res.statusCode !== 201) throw new Error(`PUT manifest ${name}:${reference}: ${res.statusCode} ${text}`);
}

/** Pushes an image's blobs and its manifest, tagged `tag` (or by digest only when tag is undefined). */
export async function pushImage(base: string, name: string, tag: string | undefined, image: TestImage, opts: PushOptions = {}): Promise<TestImage> {
  for (const b of image.blobs) await pushBlob(base, name, b, opts);
  await pushManifest(base, name, tag ?? image.digest, image.manifest, image.mediaType, opts);
  return image;
}

/** Pushes an index with its children (children by digest, the index under `tag`). */
export async function pushIndex(base: string, name: string, tag: string, index: TestIndex, opts: PushOptions = {}): Promise<TestIndex> {
  for (const child of index.children) await pushImage(base, name, undefined, child, opts);
  await pushManifest(base, name, tag, index.manifest, index.mediaType, opts);
  return index;
}

/** Builds and pushes a random image: the usual one-liner for seeding an upstream. */
export function seedImage(base: string, name: string, tag: string, opts: PushOptions & { layers?: number; layerSize?: number } = {}): Promise<TestImage> {
  return pushImage(base, name, tag, randomImage(opts), opts);
}

/** The answer to one GET, read completely. */
export interface Fetched {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request, body read completely. */
export async function fetchBytes(url: string, opts: { method?: 'GET' | 'HEAD'; headers?: Record<string, string>; dispatcher?: Dispatcher } = {}): Promise<Fetched> {
  const res = await request(url, { method: opts.method ?? 'GET', headers: opts.headers, dispatcher: opts.dispatcher });
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
}

/** Where a pull goes: the registry base URL, the name as the client writes it, and the query (`ns=`). */
export interface PullTarget {
  base: string;
  name: string;
  /** Query string without '?', e.g. `ns=ghcr.io`. */
  query?: string;
  dispatcher?: Dispatcher;
}

/** What a pull received. */
export interface Pulled {
  manifest: Buffer;
  digest: string;
  mediaType: string;
  blobs: Map<string, Buffer>;
}

function urlOf(t: PullTarget, path: string): string {
  return `${t.base}/v2/${t.name}/${path}${t.query ? `?${t.query}` : ''}`;
}

/** GETs a manifest; throws unless 200 and the bytes match Docker-Content-Digest. */
export async function getManifest(t: PullTarget, reference: string): Promise<{ body: Buffer; digest: string; mediaType: string }> {
  const r = await fetchBytes(urlOf(t, `manifests/${reference}`), { headers: { accept: ACCEPT_ALL_MANIFESTS }, dispatcher: t.dispatcher });
  if (r.status !== 200) throw new Error(`GET manifest ${t.name}:${reference}${t.query ? `?${t.query}` : ''}: ${r.status} ${r.body.toString('utf8')}`);
  const digest = sha256(r.body);
  if (r.headers['docker-content-digest'] !== digest) throw new Error(`manifest ${t.name}:${reference}: Docker-Content-Digest ${String(r.headers['docker-content-digest'])} but the bytes hash to ${digest}`);
  if (reference.startsWith('sha256:') && reference !== digest) throw new Error(`manifest ${t.name}@${reference}: got bytes of ${digest}`);
  return { body: r.body, digest, mediaType: String(r.headers['content-type']) };
}

/** GETs a blob; throws unless 200 and its bytes hash to `digest`. */
export async function getBlob(t: PullTarget, digest: string): Promise<Buffer> {
  const r = await fetchBytes(urlOf(t, `blobs/${digest}`), { dispatcher: t.dispatcher });
  if (r.status !== 200) throw new Error(`GET blob ${t.name}@${digest}: ${r.status} ${r.body.toString('utf8').slice(0, 500)}`);
  const got = sha256(r.body);
  if (got !== digest) throw new Error(`blob ${t.name}@${digest}: received ${r.body.byteLength} bytes hashing to ${got}`);
  return r.body;
}

/** Pulls an image manifest (by tag or digest) and its config and layers, verifying every digest. */
export async function pullImage(t: PullTarget, reference: string): Promise<Pulled> {
  const m = await getManifest(t, reference);
  const doc = JSON.parse(m.body.toString('utf8')) as { config?: { digest: string }; layers?: Array<{ digest: string }>; manifests?: unknown };
  if (doc.manifests) throw new Error(`${t.name}:${reference} is an index; pull a child by digest`);
  const blobs = new Map<string, Buffer>();
  for (const d of [doc.config!.digest, ...(doc.layers ?? []).map((l) => l.digest)]) blobs.set(d, await getBlob(t, d));
  return { manifest: m.body, digest: m.digest, mediaType: m.mediaType, blobs };
}
