// A small OCI distribution client for the conformance suite: raw HTTP calls through undici,
// assertion helpers that fail with messages saying what was expected and what came back, and
// helpers that push blobs, images and manifests by the most widely supported route
// (POST then PUT). Deliberately independent of src/: the suite must judge any registry.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'undici';

/** What every conformance case runs against. */
export interface ConformanceContext {
  /** Registry base URL without a trailing slash, e.g. `http://127.0.0.1:5000`. */
  baseUrl: string;
  /** A repository name unique to this suite run, e.g. `conformance/1a2b3c4d/<suffix>`. */
  repo: (suffix: string) => string;
}

/** A fully read HTTP response. */
export interface Reply {
  method: string;
  url: string;
  status: number;
  /** Response headers, lower-cased names; repeated headers joined with ', '. */
  headers: Record<string, string>;
  body: Buffer;
  /** Header value by case-insensitive name, or undefined. */
  header(name: string): string | undefined;
}

/** Options of {@link call}. */
export interface CallOptions {
  headers?: Record<string, string>;
  body?: Buffer | string;
}

/** Media types used across the suite. */
export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** Accept header a modern client sends for manifests: every type the suite pushes. */
export const ACCEPT_MANIFESTS = [
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerList,
].join(', ');

/** The error codes of the spec's error-code table (code-1 … code-14). */
export const SPEC_ERROR_CODES: ReadonlySet<string> = new Set([
  'BLOB_UNKNOWN', 'BLOB_UPLOAD_INVALID', 'BLOB_UPLOAD_UNKNOWN', 'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN', 'MANIFEST_INVALID', 'MANIFEST_UNKNOWN', 'NAME_INVALID',
  'NAME_UNKNOWN', 'SIZE_INVALID', 'UNAUTHORIZED', 'DENIED', 'UNSUPPORTED', 'TOOMANYREQUESTS',
]);

/** An OCI descriptor as the suite writes it. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
  data?: string;
}

/** `sha256:<hex>` of the bytes. */
export function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** A digest of random bytes: names content that no registry holds. */
export function randomDigest(): string {
  return sha256(randomBytes(32));
}

/** Random bytes, so that content pushed by one case is never already known from another. */
export function randomBlob(size = 256): Buffer {
  return randomBytes(size);
}

/** A descriptor of `bytes` with the given media type. */
export function descriptorOf(mediaType: string, bytes: Buffer): Descriptor {
  return { mediaType, digest: sha256(bytes), size: bytes.length };
}

/** Makes one HTTP request and reads the whole response. `target` is a path or an absolute URL. */
export async function call(ctx: ConformanceContext, method: string, target: string, opts: CallOptions = {}): Promise<Reply> {
  const url = new URL(target, `${ctx.baseUrl}/`).toString();
  const res = await request(url, {
    method: method as 'GET',
    headers: opts.headers,
    body: opts.body ?? (method === 'POST' || method === 'PUT' || method === 'PATCH' ? Buffer.alloc(0) : undefined),
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(res.headers)) {
    if (value !== undefined) headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return { method, url, status: res.statusCode, headers, body, header: (name) => headers[name.toLowerCase()] };
}

/** GET that follows up to 5 redirects (registries MAY redirect blob downloads to other servers). */
export async function getFollowing(ctx: ConformanceContext, target: string, opts: CallOptions = {}): Promise<Reply> {
  let res = await call(ctx, 'GET', target, opts);
  for (let hop = 0; hop < 5 && [301, 302, 303, 307, 308].includes(res.status); hop++) {
    const next = res.header('location');
    if (!next) break;
    res = await call(ctx, 'GET', new URL(next, res.url).toString(), { headers: opts.headers });
  }
  return res;
}

/** Describes a reply in one line for failure messages. */
export function describeReply(res: Reply): string {
  const text = res.body.toString('utf8').slice(0, 300).replace(/\s+/g, ' ');
  return `${res.method} ${new URL(res.url).pathname} -> ${res.status}${text ? ` body: ${text}` : ''}`;
}

/** Asserts the status (one of `expected`); the message names both statuses and the body. */
export function expectStatus(res: Reply, expected: number | number[], what: string): void {
  const allowed = Array.isArray(expected) ? expected : [expected];
  if (!allowed.includes(res.status)) {
    assert.fail(`${what}: expected status ${allowed.join(' or ')}, got ${res.status} (${describeReply(res)})`);
  }
}

/** Asserts a header is present and equals `expected` (string) or matches it (RegExp); returns it. */
export function expectHeader(res: Reply, name: string, expected: string | RegExp | undefined, what: string): string {
  const value = res.header(name);
  if (value === undefined) assert.fail(`${what}: expected header ${name}, it is missing (${describeReply(res)})`);
  if (typeof expected === 'string' && value !== expected) {
    assert.fail(`${what}: expected header ${name}: ${expected}, got ${name}: ${value}`);
  }
  if (expected instanceof RegExp && !expected.test(value)) {
    assert.fail(`${what}: expected header ${name} to match ${expected}, got ${name}: ${value}`);
  }
  return value;
}

/** Asserts the body equals `expected` byte for byte. */
export function expectBody(res: Reply, expected: Buffer, what: string): void {
  if (!res.body.equals(expected)) {
    assert.fail(`${what}: body differs from what was pushed (${res.body.length} bytes, sha ${sha256(res.body)}; expected ${expected.length} bytes, sha ${sha256(expected)})`);
  }
}

/** One entry of the error envelope. */
export interface ErrorEntry {
  code: string;
  message?: string;
  detail?: unknown;
}

/**
 * Parses and checks the spec's error envelope `{"errors":[{code, message?, detail?}]}`: a
 * non-empty array of objects whose `code` is upper case and underscores and whose `message`,
 * when present, is a string.
 */
export function parseErrorEnvelope(res: Reply, what: string): ErrorEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(res.body.toString('utf8'));
  } catch {
    assert.fail(`${what}: expected a JSON error envelope, got a non-JSON body (${describeReply(res)})`);
  }
  const errors = (parsed as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors) || errors.length === 0) {
    assert.fail(`${what}: expected {"errors":[...]} with at least one error (${describeReply(res)})`);
  }
  for (const e of errors as unknown[]) {
    const entry = e as ErrorEntry | null;
    if (typeof entry !== 'object' || entry === null || typeof entry.code !== 'string' || !/^[A-Z_]+$/.test(entry.code)) {
      assert.fail(`${what}: error entry without an upper-case code: ${JSON.stringify(e)}`);
    }
    if (entry.message !== undefined && typeof entry.message !== 'string') {
      assert.fail(`${what}: error message is not a string: ${JSON.stringify(e)}`);
    }
  }
  return errors as ErrorEntry[];
}

/** Asserts an error reply: the status and an envelope containing `code`. */
export function expectError(res: Reply, status: number | number[], code: string, what: string): ErrorEntry[] {
  expectStatus(res, status, what);
  const errors = parseErrorEnvelope(res, what);
  if (!errors.some((e) => e.code === code)) {
    assert.fail(`${what}: expected error code ${code}, got ${errors.map((e) => e.code).join(', ')}`);
  }
  return errors;
}

/** Resolves the reply's Location header (absolute or relative) to an absolute URL. */
export function locationOf(res: Reply, what: string): URL {
  return new URL(expectHeader(res, 'location', undefined, what), res.url);
}

/** `url` with extra query parameters, keeping the ones it has (upload URLs may carry state). */
export function withQuery(url: URL, params: Record<string, string>): string {
  const next = new URL(url);
  for (const [k, v] of Object.entries(params)) next.searchParams.set(k, v);
  return next.toString();
}

/** Starts an upload session (`POST /v2/<name>/blobs/uploads/`), asserting 202 and Location. */
export async function startUpload(ctx: ConformanceContext, repo: string): Promise<{ location: URL; reply: Reply }> {
  const reply = await call(ctx, 'POST', `/v2/${repo}/blobs/uploads/`);
  expectStatus(reply, 202, `POST /v2/${repo}/blobs/uploads/`);
  return { location: locationOf(reply, 'upload session'), reply };
}

/** Pushes a blob with POST then PUT ?digest=, asserting 201; returns its digest. */
export async function pushBlob(ctx: ConformanceContext, repo: string, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes);
  const { location } = await startUpload(ctx, repo);
  const put = await call(ctx, 'PUT', withQuery(location, { digest }), {
    headers: { 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  expectStatus(put, 201, `PUT upload of blob ${digest} to ${repo}`);
  return digest;
}

/** A manifest as pushed: its exact bytes, digest and media type. */
export interface PushedManifest {
  bytes: Buffer;
  digest: string;
  mediaType: string;
  descriptor: Descriptor;
  reply: Reply;
}

/** Serializes a manifest object the way the suite pushes it (compact JSON). */
export function manifestBytes(manifest: object): Buffer {
  return Buffer.from(JSON.stringify(manifest));
}

/** PUTs a manifest (object or exact bytes) at `reference` (tag or digest), asserting 201. */
export async function pushManifest(
  ctx: ConformanceContext,
  repo: string,
  reference: string | undefined,
  manifest: object | Buffer,
  mediaType: string,
): Promise<PushedManifest> {
  const bytes = Buffer.isBuffer(manifest) ? manifest : manifestBytes(manifest);
  const digest = sha256(bytes);
  const ref = reference ?? digest;
  const reply = await call(ctx, 'PUT', `/v2/${repo}/manifests/${ref}`, {
    headers: { 'content-type': mediaType },
    body: bytes,
  });
  expectStatus(reply, 201, `PUT manifest ${repo}:${ref}`);
  return { bytes, digest, mediaType, descriptor: { mediaType, digest, size: bytes.length }, reply };
}

/** Options of {@link buildImage}. */
export interface ImageOptions {
  configMediaType?: string;
  /** Config bytes; default a small JSON document unique to this call. */
  config?: Buffer;
  layerMediaType?: string;
  layerCount?: number;
  artifactType?: string;
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** An image whose blobs have been pushed and whose manifest is ready to push. */
export interface BuiltImage {
  manifest: Record<string, unknown>;
  config: Descriptor;
  layers: Descriptor[];
}

/** Pushes a config and layers to `repo` and returns an OCI image manifest referencing them. */
export async function buildImage(ctx: ConformanceContext, repo: string, opts: ImageOptions = {}): Promise<BuiltImage> {
  const configBytes = opts.config ?? Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Labels: { 'org.example.nonce': randomBytes(8).toString('hex') } },
    rootfs: { type: 'layers', diff_ids: [] },
  }));
  const config = descriptorOf(opts.configMediaType ?? MediaType.ociConfig, configBytes);
  await pushBlob(ctx, repo, configBytes);
  const layers: Descriptor[] = [];
  for (let i = 0; i < (opts.layerCount ?? 1); i++) {
    const layer = randomBlob(512 + i);
    await pushBlob(ctx, repo, layer);
    layers.push(descriptorOf(opts.layerMediaType ?? MediaType.ociLayer, layer));
  }
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    ...(opts.artifactType ? { artifactType: opts.artifactType } : {}),
    config,
    layers,
    ...(opts.subject ? { subject: opts.subject } : {}),
    ...(opts.annotations ? { annotations: opts.annotations } : {}),
  };
  return { manifest, config, layers };
}

/** Pushes an image (blobs, then its OCI manifest at `reference`, default by digest). */
export async function pushImage(
  ctx: ConformanceContext,
  repo: string,
  reference?: string,
  opts: ImageOptions = {},
): Promise<PushedManifest & { image: BuiltImage }> {
  const image = await buildImage(ctx, repo, opts);
  const pushed = await pushManifest(ctx, repo, reference, image.manifest, MediaType.ociManifest);
  return { ...pushed, image };
}

/** The empty JSON blob `{}` and its descriptor (image-spec 1.1's `application/vnd.oci.empty.v1+json`). */
export const EMPTY_JSON = Buffer.from('{}');

/** Pushes the empty JSON blob to `repo` and returns its descriptor. */
export async function pushEmptyConfig(ctx: ConformanceContext, repo: string): Promise<Descriptor> {
  await pushBlob(ctx, repo, EMPTY_JSON);
  return { ...descriptorOf(MediaType.ociEmpty, EMPTY_JSON), data: EMPTY_JSON.toString('base64') };
}

/** Parses a JSON body, failing with the reply described when it is not JSON. */
export function jsonBody<T>(res: Reply, what: string): T {
  try {
    return JSON.parse(res.body.toString('utf8')) as T;
  } catch {
    assert.fail(`${what}: expected a JSON body (${describeReply(res)})`);
  }
}

/** The URL of an RFC 5988 `Link` header's `rel="next"` entry, resolved against the reply, or undefined. */
export function nextLink(res: Reply): string | undefined {
  const link = res.header('link');
  if (!link) return undefined;
  for (const part of link.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>\s*((?:;[^;]*)*)$/.exec(part);
    if (m && /;\s*rel="?next"?(\s|;|$)/.test(m[2] ?? '')) return new URL(m[1] ?? '', res.url).toString();
  }
  return undefined;
}
