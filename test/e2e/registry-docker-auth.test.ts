// Scenario: regcache's registry port with basic auth (an htpasswd file with a bcrypt entry)
// in front of Docker: an anonymous push is refused with an auth error, `docker login` fails
// with a wrong password and succeeds with the right one, and push/pull work once logged in.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { startDockerd } from '../helpers/dockerd.js';
import { tempDir } from '../helpers/proc.js';
import { httpRequest, startRegcache } from '../helpers/regcache.js';
import { importBusyboxImage } from '../helpers/rootfs.js';
import { skipUnless } from '../helpers/tools.js';

const USER = 'ci-user';
const PASSWORD = 'correct horse battery staple';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('docker login/push/pull against the registry port with basic auth', { skip: skipUnless(['docker', 'dockerd', 'containerd', 'runc', 'busybox'], { root: true }) }, () => {
  test('anonymous push fails, wrong password fails, login then push and pull work', async (t) => {
    const work = await tempDir('rc-e2e-auth-', t);
    const htpasswd = join(work.path, 'htpasswd');
    // Cost 5 keeps the test fast; regcache takes any bcrypt cost.
    await writeFile(htpasswd, `# e2e\n${USER}:${bcrypt.hashSync(PASSWORD, 5)}\n`, { mode: 0o600 });
    const rc = await startRegcache({ htpasswd }, t);
    const dockerd = await startDockerd();
    t.after(() => dockerd.stop());
    const ref = `${rc.host}/e2e/private:1`;
    await importBusyboxImage(dockerd, ref);

    await t.test('the API answers 401 with a Basic challenge without credentials, 200 with them', async () => {
      const anon = await httpRequest('GET', `${rc.url}/v2/`);
      assert.equal(anon.status, 401);
      assert.match(String(anon.headers['www-authenticate']), /^Basic realm="[^"]+"$/);
      assert.equal(JSON.parse(anon.text).errors[0].code, 'UNAUTHORIZED');
      const wrong = await httpRequest('GET', `${rc.url}/v2/`, { headers: { authorization: basic(USER, 'nope') } });
      assert.equal(wrong.status, 401);
      const good = await httpRequest('GET', `${rc.url}/v2/`, { headers: { authorization: basic(USER, PASSWORD) } });
      assert.equal(good.status, 200);
    });

    await t.test('an anonymous docker push fails with an auth error and stores nothing', async () => {
      const push = await dockerd.docker(['push', ref], { allowFail: true });
      assert.notEqual(push.code, 0);
      assert.match(push.stderr, /no basic auth credentials/);
      const tags = await httpRequest('GET', `${rc.url}/v2/e2e/private/tags/list`, { headers: { authorization: basic(USER, PASSWORD) } });
      assert.equal(tags.status, 404, 'the repository was not created');
    });

    await t.test('docker login with a wrong password fails', async () => {
      const r = await dockerd.docker(['login', rc.host, '-u', USER, '--password-stdin'], { input: 'wrong-password\n', allowFail: true });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /401 Unauthorized/);
    });

    await t.test('docker login with the right password succeeds; push works', async () => {
      const r = await dockerd.docker(['login', rc.host, '-u', USER, '--password-stdin'], { input: `${PASSWORD}\n` });
      assert.match(r.stdout, /Login Succeeded/);
      const push = await dockerd.docker(['push', ref]);
      assert.match(push.stdout, /1: digest: sha256:[0-9a-f]{64}/);
    });

    await t.test('after rmi + prune, the logged-in pull works and runs; after logout it is refused', async () => {
      await dockerd.docker(['rmi', ref]);
      await dockerd.docker(['image', 'prune', '--all', '--force']);
      const pull = await dockerd.docker(['pull', ref]);
      assert.match(pull.stdout, /Pull complete/);
      const out = await dockerd.docker(['run', '--rm', '--network', 'none', ref, 'echo', 'authenticated']);
      assert.equal(out.stdout, 'authenticated\n');
      await dockerd.docker(['logout', rc.host]);
      await dockerd.docker(['rmi', ref]);
      const anon = await dockerd.docker(['pull', ref], { allowFail: true });
      assert.notEqual(anon.code, 0);
      assert.match(anon.stderr, /no basic auth credentials|unauthorized|authentication required/i);
    });
  });
});
