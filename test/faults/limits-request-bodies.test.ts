// Request-size limits against the real server process: 64 MiB sent as a manifest (the limit is
// 4 MiB) is answered 413 with the OCI envelope, with and without Content-Length, and 64 MiB sent
// to routes that take no body (or a body they do not read) is drained or refused; the server's
// peak RSS (VmHWM, read from /proc) must not grow by anything near the size sent: bodies are never
// buffered past the limit.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { Rng, type ServeHandle, mib, procUsage, seedFromEnv, sha256, startServe, stopServe } from '../helpers/crash.js';
import { tempDir } from '../helpers/proc.js';

const SENT = 64 * 1024 * 1024;
/**
 * Peak RSS may grow by this much per 64 MiB request: the 4 MiB a manifest may take, and garbage
 * (drained chunks) not yet collected. Since a refused chunked manifest's remaining 60 MiB are
 * drained too (not cut off), that step reached 17.8 MiB once in CI (7-12 MiB when the connection
 * was closed instead). Buffering the body would take 64 MiB at once.
 */
const HWM_STEP_BUDGET = 24 * 1024 * 1024;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** 64 MiB of `{` in 256 KiB slices, generated as sent (the client holds none of it). */
async function* flood(): AsyncGenerator<Buffer> {
  const slice = Buffer.alloc(256 * 1024, 0x7b);
  for (let sent = 0; sent < SENT; sent += slice.byteLength) yield slice;
}

test('64 MiB bodies: a manifest over 4 MiB is a 413 envelope, other routes drain or refuse, and the server never buffers what it was sent', { timeout: 120_000 }, async (t) => {
  const seed = seedFromEnv();
  const rng = new Rng(seed);
  const dir = await tempDir('rc-limits-bodies-', t);
  let server: ServeHandle | undefined;
  t.after(async () => {
    if (server) await stopServe(server).catch(() => {});
  });
  server = await startServe({ storage: join(dir.path, 'storage'), dir: dir.path, logLevel: 'fatal' });
  const agent = new Agent({ connections: 4 });
  t.after(() => agent.close());
  const send = async (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, withLength: boolean, headers: Record<string, string> = {}) => {
    const res = await request(`${server!.registry}${path}`, {
      method,
      dispatcher: agent,
      body: Readable.from(flood()),
      headers: { ...headers, ...(withLength ? { 'content-length': String(SENT) } : {}) },
    });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  };

  // Warm up (a real push), then take the baseline of the peak RSS.
  const config = rng.bytes(512);
  assert.equal((await request(`${server.registry}/v2/limits/app/blobs/uploads/?digest=${sha256(config)}`, { method: 'POST', body: config, dispatcher: agent })).statusCode, 201);
  const manifest = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: 512 }, layers: [] });
  const warm = await request(`${server.registry}/v2/limits/app/manifests/v1`, { method: 'PUT', body: manifest, headers: { 'content-type': OCI_MANIFEST }, dispatcher: agent });
  await warm.body.dump();
  assert.equal(warm.statusCode, 201);
  const before = procUsage(server.pid);

  const rows: string[] = [];
  let last = before.hwm;
  let maxStep = 0;
  const step = (what: string) => {
    const hwm = procUsage(server!.pid).hwm;
    maxStep = Math.max(maxStep, hwm - last);
    assert.ok(hwm - last < HWM_STEP_BUDGET, `${what}: the server's peak RSS jumped by ${mib(hwm - last)}`);
    rows.push(`${what}: peak RSS +${mib(hwm - last)}`);
    last = hwm;
  };
  for (const withLength of [true, false]) {
    const how = withLength ? 'with Content-Length' : 'chunked';
    const m = await send('PUT', '/v2/limits/app/manifests/big', withLength, { 'content-type': OCI_MANIFEST });
    assert.equal(m.status, 413, `manifest ${how}: ${m.status} ${m.text.slice(0, 200)}`);
    const env = JSON.parse(m.text) as { errors: Array<{ code: string; detail: { limit: number } }> };
    assert.equal(env.errors[0]?.code, 'SIZE_INVALID');
    assert.equal(env.errors[0]?.detail.limit, 4 * 1024 * 1024);
    step(`PUT manifest 64 MiB ${how} -> ${m.status}`);

    // Routes that read no body: the body is drained (never kept) and the answer is the route's own.
    const others: Array<[string, 'GET' | 'POST' | 'DELETE' | 'PUT', string, number]> = [
      ['base', 'GET', '/v2/', 200],
      ['upload session start', 'POST', '/v2/limits/app/blobs/uploads/', 202],
      ['tag list', 'GET', '/v2/limits/app/tags/list', 200],
      ['manifest delete (unknown)', 'DELETE', `/v2/limits/app/manifests/${sha256('nothing')}`, 404],
      ['no such route', 'PUT', '/v2/limits/app/nothing/here', 404],
    ];
    for (const [what, method, path, expected] of others) {
      const r = await send(method, path, withLength);
      assert.equal(r.status, expected, `${what} with a 64 MiB body ${how}: ${r.status} ${r.text.slice(0, 200)}`);
      if (r.status >= 400) assert.ok(Array.isArray((JSON.parse(r.text) as { errors: unknown[] }).errors), `${what}: the error envelope`);
      step(`${method} ${what}, 64 MiB ${how} -> ${r.status}`);
    }
  }
  const after = procUsage(server.pid);
  const summary = `peak RSS ${mib(before.hwm)} -> ${mib(after.hwm)} over ${rows.length} requests of 64 MiB each (largest step +${mib(maxStep)}); RSS now ${mib(after.rss)}`;
  console.log(`limits-request-bodies (node ${process.version}): ${summary}\n  ${rows.join('\n  ')}`);
  t.diagnostic(summary);
  // Twelve bodies of 64 MiB went through; all of them together did not cost one.
  assert.ok(after.hwm - before.hwm < SENT, `the peak RSS grew by ${mib(after.hwm - before.hwm)} in all`);
  // Still serving.
  const v2 = await request(`${server.registry}/v2/`, { dispatcher: agent });
  await v2.body.dump();
  assert.equal(v2.statusCode, 200);
});
