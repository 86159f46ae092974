// `regcache serve --tls-cert --tls-key`: both ports speak HTTPS with a certificate made by
// openssl for 127.0.0.1, trusted by the client through its CA and refused without it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import https from 'node:https';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../storage/fixtures.js';
import { runCliToEnd, serve, withTimeout } from './cli-process.js';

/** A self-signed certificate for 127.0.0.1 (it is its own CA). */
async function selfSigned(dir: string): Promise<{ cert: string; key: string; ca: Buffer }> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  return { cert, key, ca: await readFile(cert) };
}

function httpsGet(url: string, ca?: Buffer): Promise<{ status: number; body: string; version: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ...(ca ? { ca } : {}), agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, version: res.headers['docker-distribution-api-version'] as string | undefined }));
    });
    req.on('error', reject);
  });
}

test('with --tls-cert and --tls-key both ports serve HTTPS that verifies against the CA', async (t) => {
  const dir = await tempDir(t);
  const { cert, key, ca } = await selfSigned(dir);
  const s = await serve(t, { storage: join(dir, 'storage'), readyFile: join(dir, 'ready.json'), extra: ['--tls-cert', cert, '--tls-key', key] });
  assert.match(s.ready.registry, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.match(s.ready.cache, /^https:\/\/127\.0\.0\.1:\d+$/);
  for (const base of [s.ready.registry, s.ready.cache]) {
    const res = await httpsGet(`${base}/v2/`, ca);
    assert.deepEqual(res, { status: 200, body: '{}', version: 'registry/2.0' });
  }
  // Without the CA the certificate is not trusted: this really is TLS with that certificate.
  await assert.rejects(httpsGet(`${s.ready.registry}/v2/`), (err: NodeJS.ErrnoException) => /SELF_SIGNED|self.signed/i.test(`${err.code} ${err.message}`));
  s.child.kill('SIGTERM');
  assert.equal((await withTimeout(s.exited, 10_000, 'exit')).code, 0);
});

test('--tls-cert without --tls-key is a one-line error', async (t) => {
  const dir = await tempDir(t);
  const r = await runCliToEnd(t, ['serve', '--tls-cert', join(dir, 'cert.pem'), '--storage', join(dir, 's'), '--registry-addr', '127.0.0.1:0', '--cache-addr', '127.0.0.1:0']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /--tls-cert and --tls-key go together/);
});
