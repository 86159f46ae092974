// The same config.yml and REGISTRY_* variables given to Debian's distribution (docker-registry
// 2.8) and to `regcache serve --config`, and the answers compared where the behaviour is
// comparable: 401s with htpasswd and the realm of the challenge (a quoted realm too), 405
// UNSUPPORTED for deletes when storage.delete is not enabled, deletes when it is,
// `REGISTRY_AUTH: htpasswd` beside `REGISTRY_AUTH_HTPASSWD_PATH`, and proxying: with
// proxy.remoteurl, http.addr is a cache of that upstream (with its credentials: regcache only).
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import bcrypt from 'bcryptjs';
import { request } from 'undici';
import { startDistribution, type Distribution } from '../helpers/distribution.js';
import { skipUnless } from '../helpers/tools.js';
import { pullImage, pushBlob, randomImage, seedImage } from '../helpers/upstream-images.js';
import { tempDir } from '../storage/fixtures.js';
import { runCliToEnd, serve } from '../server/cli-process.js';

const skip = skipUnless(['docker-registry']);
const USER = 'alice';
const PASSWORD = 'correct horse';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const ZERO_DIGEST = `sha256:${'0'.repeat(64)}`;

interface Answer {
  status: number;
  challenge: string | undefined;
  code: string | undefined;
}

async function ask(url: string, method: string, authorization?: string): Promise<Answer> {
  const res = await request(url, { method: method as 'GET', headers: authorization ? { authorization } : {} });
  const text = await res.body.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { errors?: Array<{ code: string }> }).errors?.[0]?.code;
  } catch {
    code = undefined;
  }
  return { status: res.statusCode, challenge: res.headers['www-authenticate'] as string | undefined, code };
}

/** A temp dir with an htpasswd file (bcrypt, cost 4) and a config.yml of `lines`. */
async function setup(t: TestContext, lines: (dir: string) => string[]): Promise<{ dir: string; config: string; htpasswd: string }> {
  const dir = await tempDir(t);
  const htpasswd = join(dir, 'htpasswd');
  await writeFile(htpasswd, `${USER}:${bcrypt.hashSync(PASSWORD, 4)}\n`);
  const config = join(dir, 'config.yml');
  await writeFile(config, ['version: 0.1', ...lines(dir), ''].join('\n'));
  return { dir, config, htpasswd };
}

async function distribution(t: TestContext, configFile: string, env: Record<string, string> = {}): Promise<Distribution> {
  const d = await startDistribution({ configFile, env });
  t.after(() => d.stop());
  return d;
}

/** regcache with the file and variables; the registry port on a free loopback port. */
async function regcache(t: TestContext, dir: string, configFile: string, env: Record<string, string> = {}): Promise<{ registry: string; cache: string }> {
  const s = await serve(t, {
    storage: join(dir, 'regcache'),
    readyFile: join(dir, `ready-${Math.random().toString(36).slice(2)}.json`),
    bare: true,
    extra: ['--config', configFile, '--storage', join(dir, 'regcache'), '--log-level', 'silent'],
    env: { REGISTRY_HTTP_ADDR: '127.0.0.1:0', REGISTRY_HTTP_DEBUG_ADDR: '127.0.0.1:0', ...env },
  });
  t.after(() => void s.child.kill('SIGTERM'));
  return s.ready;
}

describe('distribution config.yml: regcache answers as distribution does', { skip, concurrency: false }, () => {
  test('htpasswd with a quoted realm: 401 with the same challenge without or with wrong credentials, 200 with good ones; deletes 405 UNSUPPORTED while storage.delete is off', async (t) => {
    const { dir, config } = await setup(t, (d) => ['auth:', '  htpasswd:', '    realm: "Registry Realm"', `    path: ${join(d, 'htpasswd')}`]);
    const d = await distribution(t, config);
    const r = await regcache(t, dir, config);
    const good = basic(USER, PASSWORD);
    for (const [what, method, path, auth] of [
      ['no credentials', 'GET', '/v2/', undefined],
      ['a wrong password', 'GET', '/v2/', basic(USER, 'wrong')],
      ['an unknown user', 'GET', '/v2/', basic('mallory', PASSWORD)],
      ['good credentials', 'GET', '/v2/', good],
      ['a manifest delete', 'DELETE', `/v2/app/manifests/${ZERO_DIGEST}`, good],
      ['a tag delete', 'DELETE', '/v2/app/manifests/latest', good],
      ['a blob delete', 'DELETE', `/v2/app/blobs/${ZERO_DIGEST}`, good],
    ] as const) {
      const theirs = await ask(`${d.url}${path}`, method, auth);
      const ours = await ask(`${r.registry}${path}`, method, auth);
      assert.deepEqual(ours, theirs, `${what}: distribution answered ${JSON.stringify(theirs)}`);
    }
    assert.equal((await ask(`${d.url}/v2/`, 'GET')).challenge, 'Basic realm="Registry Realm"');
    assert.equal((await ask(`${r.registry}/v2/app/manifests/latest`, 'DELETE', good)).status, 405);
  });

  test('REGISTRY_AUTH=htpasswd beside REGISTRY_AUTH_HTPASSWD_PATH and a quoted REGISTRY_AUTH_HTPASSWD_REALM; REGISTRY_STORAGE_DELETE_ENABLED=true deletes a pushed blob', async (t) => {
    const { dir, config, htpasswd } = await setup(t, () => []);
    const env = { REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_PATH: htpasswd, REGISTRY_AUTH_HTPASSWD_REALM: '"Quoted Realm"', REGISTRY_STORAGE_DELETE_ENABLED: 'true' };
    const d = await distribution(t, config, env);
    const r = await regcache(t, dir, config, env);
    const good = basic(USER, PASSWORD);
    const blob = randomImage({ layers: 1, layerSize: 1024 }).layers[0]!;
    for (const base of [d.url, r.registry]) {
      const challenge = await ask(`${base}/v2/`, 'GET');
      assert.deepEqual([challenge.status, challenge.challenge], [401, 'Basic realm="Quoted Realm"'], base);
      await pushBlob(base, 'app', blob, { authorization: good });
    }
    const theirs = await ask(`${d.url}/v2/app/blobs/${blob.digest}`, 'DELETE', good);
    const ours = await ask(`${r.registry}/v2/app/blobs/${blob.digest}`, 'DELETE', good);
    assert.deepEqual(ours, theirs);
    assert.equal(ours.status, 202);
    assert.deepEqual(await ask(`${r.registry}/v2/app/blobs/${blob.digest}`, 'GET', good), await ask(`${d.url}/v2/app/blobs/${blob.digest}`, 'GET', good));
  });

  test('REGISTRY_AUTH=htpasswd replaces the file\'s auth section: without a realm, both refuse to start, naming it', async (t) => {
    const { dir, config, htpasswd } = await setup(t, (d) => ['auth:', '  htpasswd:', '    realm: from-the-file', `    path: ${join(d, 'htpasswd')}`]);
    const env = { REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_PATH: htpasswd };
    await assert.rejects(startDistribution({ configFile: config, env }), /"realm" must be set/);
    const ours = await runCliToEnd(t, ['serve', '--config', config, '--storage', join(dir, 's')], { ...env, REGISTRY_HTTP_ADDR: '127.0.0.1:0' });
    assert.equal(ours.code, 1);
    assert.match(ours.stderr, /auth\.htpasswd\.realm \(auth set by REGISTRY_AUTH\): must be set/);
  });

  test('proxy.remoteurl: http.addr is a pull-through cache of that upstream, pushes answer 405 UNSUPPORTED', async (t) => {
    const upstream = await startDistribution();
    t.after(() => upstream.stop());
    const image = await seedImage(upstream.url, 'team/app', 'v1', { layers: 2, layerSize: 4096 });
    const { dir, config } = await setup(t, () => ['proxy:', `  remoteurl: ${upstream.url}`]);
    const d = await distribution(t, config);
    const r = await regcache(t, dir, config);
    for (const base of [d.url, r.cache]) {
      const pulled = await pullImage({ base, name: 'team/app' }, 'v1');
      assert.equal(pulled.digest, image.digest, base);
      assert.equal(pulled.blobs.size, 3);
    }
    const theirs = await ask(`${d.url}/v2/team/app/blobs/uploads/`, 'POST');
    const ours = await ask(`${r.cache}/v2/team/app/blobs/uploads/`, 'POST');
    assert.deepEqual([ours.status, ours.code], [theirs.status, theirs.code]);
    assert.match(r.registry, /^http:\/\/127\.0\.0\.1:\d+$/, 'the registry port stays on loopback');
  });

  // Not compared: distribution 2.8's proxy sends no basic credentials to an upstream whose
  // challenge is Basic (it answers 404 MANIFEST_UNKNOWN there); regcache's cache does.
  test('REGISTRY_PROXY_USERNAME and REGISTRY_PROXY_PASSWORD are the credentials of the upstream', async (t) => {
    const upstream = await startDistribution({ htpasswd: { user: 'bot', password: 'upstream: secret' } });
    t.after(() => upstream.stop());
    const image = await seedImage(upstream.url, 'team/app', 'v1', { authorization: basic('bot', 'upstream: secret'), layers: 1, layerSize: 4096 });
    const { dir, config } = await setup(t, () => []);
    const r = await regcache(t, dir, config, { REGISTRY_PROXY_REMOTEURL: upstream.url, REGISTRY_PROXY_USERNAME: 'bot', REGISTRY_PROXY_PASSWORD: '"upstream: secret"' });
    const pulled = await pullImage({ base: r.cache, name: 'team/app' }, 'v1');
    assert.equal(pulled.digest, image.digest);
  });
});
