// Tests of the distribution test helper itself: each option produces the registry behaviour it
// promises (basic auth, bearer challenge, pull-through proxy, delete switch), the access log
// records what reached the registry, and stop() leaves no process and no temp dir behind.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { parseAccessLog, startDistribution, type Distribution } from './distribution.js';

async function status(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown> }> {
  const res = await request(url, { headers });
  await res.body.dump();
  return { status: res.statusCode, headers: res.headers };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function withRegistry(opts: Parameters<typeof startDistribution>[0], fn: (d: Distribution) => Promise<void>): Promise<void> {
  const d = await startDistribution(opts);
  try {
    await fn(d);
  } finally {
    await d.stop();
  }
}

test('starts on 127.0.0.1, answers /v2/, and stop() removes the process and the temp dir', async () => {
  const d = await startDistribution();
  assert.match(d.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(d.url, `http://127.0.0.1:${d.port}`);
  const res = await status(`${d.url}/v2/`);
  assert.equal(res.status, 200);
  assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
  assert.ok(existsSync(d.storageDir));
  assert.ok(isAlive(d.pid));
  await d.stop();
  assert.equal(isAlive(d.pid), false, 'process gone after stop()');
  assert.equal(existsSync(d.storageDir), false, 'temp dir removed after stop()');
  await d.stop(); // idempotent
});

test('accessLog() lists every answered request, including the last one, without its own marker requests', async () => {
  await withRegistry({}, async (d) => {
    const before = await d.accessLog();
    await status(`${d.url}/v2/some/repo/manifests/latest`);
    await status(`${d.url}/v2/some/repo/tags/list?n=3`);
    const entries = (await d.accessLog()).slice(before.length);
    assert.deepEqual(entries, [
      { method: 'GET', path: '/v2/some/repo/manifests/latest', query: '', status: 404 },
      { method: 'GET', path: '/v2/some/repo/tags/list', query: 'n=3', status: 404 },
    ]);
  });
});

test('parseAccessLog() keeps only combined-log-format lines', () => {
  const text = [
    'time="2026-11-27T21:00:46Z" level=info msg="response completed" http.request.method=GET',
    '127.0.0.1 - - [27/Nov/2026:21:00:46 +0000] "HEAD /v2/a/blobs/sha256:00 HTTP/1.1" 200 0 "" "undici"',
    '127.0.0.1 - - [27/Nov/2026:21:00:46 +0000] "GET /v2/?regcache-accesslog-sync=ab HTTP/1.1" 200 2 "" "undici"',
  ].join('\n');
  assert.deepEqual(parseAccessLog(text), [{ method: 'HEAD', path: '/v2/a/blobs/sha256:00', query: '', status: 200 }]);
});

test('htpasswd: 401 without or with wrong credentials, 200 with the right ones', async () => {
  await withRegistry({ htpasswd: { user: 'ci', password: 's3cret' } }, async (d) => {
    const basic = (u: string, p: string) => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
    const anonymous = await status(`${d.url}/v2/`);
    assert.equal(anonymous.status, 401);
    assert.match(String(anonymous.headers['www-authenticate']), /^Basic realm=/);
    assert.equal((await status(`${d.url}/v2/`, basic('ci', 'wrong'))).status, 401);
    assert.equal((await status(`${d.url}/v2/`, basic('ci', 's3cret'))).status, 200);
  });
});

test('token: clients are challenged with the configured realm and service', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'regcache-token-test-'));
  try {
    const cert = join(dir, 'cert.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', cert, '-subj', '/CN=regcache-test-issuer', '-days', '1',
    ], { stdio: 'ignore' });
    const token = { realm: 'http://127.0.0.1:1/token', service: 'registry.test', issuer: 'regcache-test-issuer', rootCertBundle: cert };
    await withRegistry({ token }, async (d) => {
      const res = await status(`${d.url}/v2/`);
      assert.equal(res.status, 401);
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="http://127.0.0.1:1/token",service="registry.test"');
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('proxy: pulls through from remoteurl, and the upstream access log proves it', async () => {
  await withRegistry({}, async (upstream) => {
    const blob = Buffer.from('pulled through');
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    const post = await request(`${upstream.url}/v2/lib/thing/blobs/uploads/`, { method: 'POST', body: '' });
    await post.body.dump();
    const location = new URL(String(post.headers.location), upstream.url);
    location.searchParams.set('digest', digest);
    const put = await request(location, { method: 'PUT', body: blob, headers: { 'content-type': 'application/octet-stream' } });
    await put.body.dump();
    assert.equal(put.statusCode, 201);

    await withRegistry({ proxy: { remoteurl: upstream.url } }, async (cache) => {
      const before = (await upstream.accessLog()).length;
      const res = await request(`${cache.url}/v2/lib/thing/blobs/${digest}`);
      assert.equal(res.statusCode, 200);
      assert.deepEqual(Buffer.from(await res.body.arrayBuffer()), blob);
      const reached = (await upstream.accessLog()).slice(before).filter((e) => e.path === `/v2/lib/thing/blobs/${digest}`);
      assert.ok(reached.length >= 1, 'the blob request reached the upstream');
      assert.ok(reached.every((e) => e.status === 200 && (e.method === 'GET' || e.method === 'HEAD')));
    });
  });
});

test('deleteEnabled: false refuses DELETE with 405', async () => {
  await withRegistry({ deleteEnabled: false }, async (d) => {
    const res = await request(`${d.url}/v2/a/b/blobs/sha256:${'0'.repeat(64)}`, { method: 'DELETE' });
    const body = await res.body.text();
    assert.equal(res.statusCode, 405);
    assert.match(body, /UNSUPPORTED/);
  });
});
