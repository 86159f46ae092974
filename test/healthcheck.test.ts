// The container image's health check (dist/healthcheck.js) run as the image runs it, against a
// `regcache serve` process: healthy over http; healthy with TLS (a certificate it does not
// verify) and htpasswd (401 counts as up); not healthy before the ready file exists or once the
// server is gone, with the reason on stderr.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import bcrypt from 'bcryptjs';
import { makeTestCertificates } from './helpers/certs.js';
import { tempDir } from './helpers/proc.js';
import { skipUnless } from './helpers/tools.js';
import { serve } from './server/cli-process.js';

const HEALTHCHECK = fileURLToPath(new URL('../dist/healthcheck.js', import.meta.url));

/** Runs the health check with REGCACHE_READY_FILE, as the image's HEALTHCHECK does. */
function healthcheck(readyFile: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [HEALTHCHECK], { env: { ...process.env, REGCACHE_READY_FILE: readyFile }, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('healthy over http; not before the ready file exists; not once the server is gone', async (t) => {
  const dir = await tempDir('rc-health-', t);
  const readyFile = join(dir.path, 'ready.json');
  const early = healthcheck(readyFile);
  assert.equal(early.code, 1);
  assert.match(early.stderr, /not written yet/);

  const s = await serve(t, { storage: join(dir.path, 'storage'), readyFile });
  const ok = healthcheck(readyFile);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, 'healthy\n');

  s.child.kill('SIGTERM');
  await s.exited;
  const gone = healthcheck(readyFile);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, new RegExp(`${s.ready.registry}/v2/: .*ECONNREFUSED`));
});

test('healthy with TLS and htpasswd on (401 is up, the certificate is not verified)', { skip: skipUnless(['openssl']) }, async (t) => {
  const dir = await tempDir('rc-health-tls-', t);
  const certs = await makeTestCertificates(dir.path, { dns: ['registry.example'] });
  const htpasswd = join(dir.path, 'htpasswd');
  await writeFile(htpasswd, `ci:${bcrypt.hashSync('secret', 4)}\n`);
  const readyFile = join(dir.path, 'ready.json');
  const s = await serve(t, { storage: join(dir.path, 'storage'), readyFile, extra: ['--tls-cert', certs.cert, '--tls-key', certs.key, '--htpasswd', htpasswd] });
  assert.match(s.ready.registry, /^https:/);
  const r = healthcheck(readyFile);
  assert.equal(r.code, 0, r.stderr);
});
