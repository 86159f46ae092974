// Shared fixtures of the route tests: an app built by buildRegistryApp over a real storage
// root in a temp dir (driven with app.inject), pushes of blobs and images through the API,
// and the assertions every error answer must satisfy.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { LightMyRequestResponse } from 'fastify';
import { buildRegistryApp, type BasicAuth } from '../../src/registry/index.js';
import type { Storage } from '../../src/storage/index.js';
import { OCI_MANIFEST } from '../../src/oci/index.js';
import { tempStorage } from '../storage/fixtures.js';

export type Response = LightMyRequestResponse;

/** Options of {@link testApp}. */
export interface TestAppOptions {
  writable?: boolean;
  auth?: BasicAuth;
  /** Runs before the core routes are registered (buildRegistryApp's extraRoutes). */
  extraRoutes?: (app: FastifyInstance) => void;
  /** An existing storage to serve instead of a fresh one. */
  storage?: Storage;
  /** Deletes on the writable port (default: enabled). */
  deleteEnabled?: boolean;
}

/** A registry app over a fresh storage root; closed and removed after the test. */
export async function testApp(t: TestContext, opts: TestAppOptions = {}): Promise<{ app: FastifyInstance; storage: Storage }> {
  const storage = opts.storage ?? (await tempStorage(t)).storage;
  const common = { ...(opts.auth ? { auth: opts.auth } : {}), ...(opts.extraRoutes ? { extraRoutes: opts.extraRoutes } : {}) };
  const app =
    opts.writable === false
      ? buildRegistryApp({ backend: storage.registry, writable: false, ...common })
      : buildRegistryApp({ backend: storage.registry, writable: true, ...(opts.deleteEnabled !== undefined ? { deleteEnabled: opts.deleteEnabled } : {}), ...common });
  t.after(() => app.close());
  await app.ready();
  return { app, storage };
}

/** `sha256:<hex>` of the bytes. */
export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** `sha512:<hex>` of the bytes. */
export function sha512(data: Uint8Array | string): string {
  return `sha512:${createHash('sha512').update(data).digest('hex')}`;
}

/** Every response carries the API version header. */
export function assertApiVersion(res: Response): void {
  assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0', `${res.statusCode} ${res.body.slice(0, 200)}`);
}

/**
 * Asserts an error answer: status, the OCI envelope with `code` (no body for HEAD), the API
 * version header, and nothing of the server's internals (stack frames, file paths).
 */
export function assertError(res: Response, status: number, code: string, method = 'GET'): { code: string; message: string; detail?: unknown } | undefined {
  assert.equal(res.statusCode, status, res.body.slice(0, 300));
  assertApiVersion(res);
  if (method === 'HEAD') {
    assert.equal(res.body, '');
    return undefined;
  }
  assert.match(String(res.headers['content-type']), /^application\/json/);
  assert.doesNotMatch(res.body, /\n\s+at |\.ts:\d|\.js:\d|node_modules|\/tmp\/|stack/i);
  const body = JSON.parse(res.body) as { errors: Array<{ code: string; message: string; detail?: unknown }> };
  assert.equal(Array.isArray(body.errors), true, res.body);
  assert.equal(body.errors.length, 1);
  const e = body.errors[0]!;
  assert.equal(e.code, code, res.body);
  assert.equal(typeof e.message, 'string');
  assert.deepEqual(Object.keys(body), ['errors']);
  return e;
}

/** Pushes a blob in one request (POST ?digest=); returns its digest. */
export async function pushBlob(app: FastifyInstance, name: string, data: Buffer | string, digest = sha256(data)): Promise<string> {
  const res = await app.inject({ method: 'POST', url: `/v2/${name}/blobs/uploads/?digest=${digest}`, payload: data, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(res.statusCode, 201, res.body);
  return digest;
}

/** An OCI image manifest over the given config and layers. */
export function imageManifest(config: { digest: string; size: number }, layers: Array<{ digest: string; size: number }>, extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l })),
      ...extra,
    }),
  );
}

/** A pushed image: its config, one layer, and its manifest under `reference`. */
export interface PushedImage {
  config: string;
  layer: string;
  layerBytes: Buffer;
  manifest: Buffer;
  digest: string;
}

/** Pushes a small image (config, one layer, manifest) under `reference`. */
export async function pushImage(app: FastifyInstance, name: string, reference = 'latest', seed = 'x', extra: Record<string, unknown> = {}): Promise<PushedImage> {
  const configBytes = Buffer.from(JSON.stringify({ seed, architecture: 'amd64', os: 'linux' }));
  const layerBytes = Buffer.from(`layer of ${seed}`);
  const config = await pushBlob(app, name, configBytes);
  const layer = await pushBlob(app, name, layerBytes);
  const manifest = imageManifest({ digest: config, size: configBytes.length }, [{ digest: layer, size: layerBytes.length }], extra);
  const res = await app.inject({ method: 'PUT', url: `/v2/${name}/manifests/${reference}`, payload: manifest, headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(res.statusCode, 201, res.body);
  assert.equal(res.headers['docker-content-digest'], sha256(manifest));
  return { config, layer, layerBytes, manifest, digest: sha256(manifest) };
}
