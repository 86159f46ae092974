// What the pull-through cache tests share: regcache in process over a temp storage root,
// upstream access-log windows (the upstream's own record is the source of truth), the error
// envelope, and a tiny HTTP gate in front of an upstream that can answer 429 for manifests.
//
// Importing this file also isolates the tests from the developer's own registry credentials:
// the cache reads ~/.docker/config.json and REGCACHE_UPSTREAM_AUTH, which must not leak into
// (or change the behaviour of) tests against local upstreams.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/index.js';
import type { AccessLogEntry, Distribution } from '../helpers/distribution.js';

process.env.DOCKER_CONFIG = join(tmpdir(), `regcache-proxy-tests-no-docker-config-${process.pid}`);
delete process.env.REGCACHE_UPSTREAM_AUTH;

/** Something with after(), as node:test's TestContext. */
export interface AfterHook {
  after(fn: () => Promise<void> | void): void;
}

/** regcache started by {@link startCache}. */
export interface CacheUnderTest {
  server: RunningServer;
  cacheUrl: string;
  registryUrl: string;
  /** The temp dir holding the storage root (and anything the test puts there). */
  dir: string;
  /** Closes the server (idempotent) and removes the temp dir. */
  close(): Promise<void>;
}

/** Starts regcache in this process on 127.0.0.1:0 over a temp storage root; closed after the test. */
export async function startCache(t: AfterHook, opts: Partial<ServerOptions>): Promise<CacheUnderTest> {
  const dir = await mkdtemp(join(tmpdir(), 'regcache-proxy-test-'));
  let server: RunningServer;
  try {
    server = await startServer({ registryAddr: '127.0.0.1:0', cacheAddr: '127.0.0.1:0', logLevel: 'silent', storage: join(dir, 'storage'), ...opts });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      try {
        await server.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
        // close() does not wait for a finished fill's metadata write (linkBlob, fire-and-forget in
        // pull-through.ts), which can recreate directories just after; remove again once it is done.
        await sleep(200);
        await rm(dir, { recursive: true, force: true });
      }
    })());
  t.after(close);
  return { server, cacheUrl: server.cacheUrl, registryUrl: server.registryUrl, dir, close };
}

/** Registers thing.stop() to run after the test. */
export function cleanup<T extends { stop(): Promise<unknown> }>(t: AfterHook, thing: T): T {
  t.after(async () => {
    await thing.stop();
  });
  return thing;
}

/** The requests an upstream answered from now on. */
export interface LogWindow {
  entries(): Promise<AccessLogEntry[]>;
}

/** Opens a window on `d`'s access log: entries() returns what was logged after this call. */
export async function logWindow(d: Distribution): Promise<LogWindow> {
  const start = (await d.accessLog()).length;
  return { entries: async () => (await d.accessLog()).slice(start) };
}

/** Short form of access-log entries for assertion messages. */
export function show(entries: readonly AccessLogEntry[]): string {
  return entries.map((e) => `${e.method} ${e.path}${e.query ? `?${e.query}` : ''} ${e.status}`).join('\n') || '(none)';
}

/** Entries with the method, whose path ends with `suffix` (e.g. `/manifests/v1`). */
export function matching(entries: readonly AccessLogEntry[], method: string, suffix: string): AccessLogEntry[] {
  return entries.filter((e) => e.method === method && e.path.endsWith(suffix));
}

/** A parsed OCI error envelope and its HTTP status. */
export interface ErrorAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  code: string;
  message: string;
}

/** Sends a request that must fail, and checks that the answer is a well-formed OCI error envelope. */
export async function expectError(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, opts: { body?: Buffer | string; headers?: Record<string, string> } = {}): Promise<ErrorAnswer> {
  const res = await request(url, { method, body: opts.body, headers: opts.headers });
  const text = await res.body.text();
  assert.ok(res.statusCode >= 400, `${method} ${url} should fail, got ${res.statusCode} ${text.slice(0, 200)}`);
  assert.match(String(res.headers['content-type']), /^application\/json/, `error content-type for ${method} ${url}: ${text.slice(0, 200)}`);
  const doc = JSON.parse(text) as { errors?: Array<{ code?: unknown; message?: unknown }> };
  assert.ok(Array.isArray(doc.errors) && doc.errors.length === 1, `one error in the envelope: ${text}`);
  const [e] = doc.errors;
  assert.equal(typeof e!.code, 'string');
  assert.equal(typeof e!.message, 'string');
  assert.doesNotMatch(text, /\bat [\w.<>]+ \(|node:internal|\/src\/|\.ts:\d+/, `no stack trace or source path in the error body: ${text}`);
  return { status: res.statusCode, headers: res.headers, text, code: e!.code as string, message: e!.message as string };
}

/** A request the {@link Gate} saw, and how it answered. */
export interface GateEntry {
  method: string;
  path: string;
  status: number;
  /** True when the gate answered itself instead of forwarding. */
  refused: boolean;
}

/** An HTTP proxy in front of an upstream (or a token service) that can answer 429, 503 or redirects. */
export interface Gate {
  url: string;
  /** 'pass' forwards everything; '429' answers manifest requests with 429 and Retry-After; 'down' answers 503 to everything. */
  mode: 'pass' | '429' | 'down';
  /** Retry-After value (seconds) sent with 429. */
  retryAfterSeconds: number;
  /** Headers added to forwarded responses (e.g. Docker Hub's ratelimit-limit / ratelimit-remaining). */
  responseHeaders: Record<string, string>;
  /** When set, blob GETs are answered `307 Location: <redirectBlobsTo>/<digest>` (like Docker Hub's CDN). */
  redirectBlobsTo: string | undefined;
  /** Query parameters removed before forwarding (an upstream that ignores them, e.g. `artifactType`). */
  dropQuery: string[];
  log: GateEntry[];
  stop(): Promise<void>;
}

/** Starts a {@link Gate} forwarding to `target` (base URL). */
export async function startGate(target: string): Promise<Gate> {
  const to = new URL(target);
  const gate: Gate = { url: '', mode: 'pass', retryAfterSeconds: 30, responseHeaders: {}, redirectBlobsTo: undefined, dropQuery: [], log: [], stop: async () => {} };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const entry: GateEntry = { method: req.method ?? '', path, status: 0, refused: false };
    gate.log.push(entry);
    if (gate.mode === 'down') {
      entry.status = 503;
      entry.refused = true;
      req.resume();
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end(req.method === 'HEAD' ? undefined : 'down for the test');
      return;
    }
    if (gate.mode === '429' && path.includes('/manifests/')) {
      entry.status = 429;
      entry.refused = true;
      req.resume();
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(gate.retryAfterSeconds) });
      res.end(req.method === 'HEAD' ? undefined : JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'You have reached your pull rate limit.' }] }));
      return;
    }
    const blob = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(path);
    if (gate.redirectBlobsTo && blob && req.method === 'GET') {
      entry.status = 307;
      entry.refused = true;
      req.resume();
      res.writeHead(307, { location: `${gate.redirectBlobsTo}/${blob[1]}`, 'content-length': '0' });
      res.end();
      return;
    }
    const up = httpRequest({ host: to.hostname, port: to.port, method: req.method, path: withoutQuery(req.url ?? '/', gate.dropQuery), headers: { ...req.headers, host: to.host } }, (upRes) => {
      entry.status = upRes.statusCode ?? 0;
      res.writeHead(upRes.statusCode ?? 502, { ...upRes.headers, ...gate.responseHeaders });
      upRes.pipe(res);
    });
    up.on('error', () => {
      entry.status = 502;
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  gate.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let stopping: Promise<void> | undefined;
  gate.stop = () =>
    (stopping ??= new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }));
  return gate;
}

/** `url` (path and query) without the query parameters `names`; unchanged when there are none. */
function withoutQuery(url: string, names: readonly string[]): string {
  const q = url.indexOf('?');
  if (names.length === 0 || q === -1) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  for (const k of names) params.delete(k);
  const rest = params.toString();
  return url.slice(0, q) + (rest ? `?${rest}` : '');
}

/** GETs JSON from the cache port (the stats endpoint). */
export async function getJson<T>(url: string): Promise<T> {
  const res = await request(url);
  const text = await res.body.text();
  assert.equal(res.statusCode, 200, `GET ${url}: ${text}`);
  return JSON.parse(text) as T;
}

/** GETs text. */
export async function getText(url: string): Promise<{ status: number; contentType: string; text: string }> {
  const res = await request(url);
  return { status: res.statusCode, contentType: String(res.headers['content-type']), text: await res.body.text() };
}

/** A request the {@link Cdn} answered. */
export interface CdnEntry {
  path: string;
  /** The Authorization header it carried, if any. */
  authorization: string | undefined;
  status: number;
}

/** A static blob server on another origin, standing in for a registry's CDN. */
export interface Cdn {
  /** Base URL: blobs are at `<url>/<digest>`. */
  url: string;
  log: CdnEntry[];
  stop(): Promise<void>;
}

/** Serves `blobs` (digest to bytes) at `/<digest>`, recording each request's Authorization header. */
export async function startCdn(blobs: ReadonlyMap<string, Buffer>): Promise<Cdn> {
  const log: CdnEntry[] = [];
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const data = blobs.get(path.slice(1));
    log.push({ path, authorization: req.headers.authorization, status: data ? 200 : 404 });
    req.resume();
    if (!data) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(data.byteLength) });
    res.end(data);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  let stopping: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    log,
    stop: () =>
      (stopping ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      })),
  };
}
