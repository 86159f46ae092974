// Basic authentication against an htpasswd file (bcrypt entries only): parsing, 401 answers
// with a challenge on every registered route of both ports, and the memory of verified
// credentials.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import bcrypt from 'bcryptjs';
import type { RouteOptions } from 'fastify';
import { BasicAuth, parseHtpasswd } from '../../src/registry/index.js';
import { tempDir } from '../storage/fixtures.js';
import { assertError, sha256, testApp } from './fixtures.js';

// Cost 4 keeps the tests fast; the server accepts any cost.
const ALICE_HASH = bcrypt.hashSync('s3cret:with:colons', 4);
const BOB_HASH = bcrypt.hashSync('hunter2', 4).replace(/^\$2b\$/, '$2y$');

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

function users(): Map<string, string> {
  return new Map([
    ['alice', ALICE_HASH],
    ['bob', BOB_HASH],
  ]);
}

function assertChallenge(res: { statusCode: number; headers: Record<string, unknown>; body: string }, method = 'GET'): void {
  assertError(res as never, 401, 'UNAUTHORIZED', method);
  assert.equal(res.headers['www-authenticate'], 'Basic realm="regcache"');
}

test('parseHtpasswd keeps bcrypt entries ($2a$, $2b$, $2y$) and names every other entry', () => {
  const text = [
    '# a comment',
    '',
    `alice:${ALICE_HASH}`,
    `bob:${BOB_HASH}`,
    `  carol:${ALICE_HASH.replace('$2b$', '$2a$')}  `,
    'dave:$apr1$abcdefgh$0123456789abcdefghijkl',
    'erin:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=',
    'frank:plaintext',
    'grace:$2x$04$invalidprefixinvalidprefixinvalidprefixinvalidpre',
    ':$2b$04$nouser',
    `heidi:${ALICE_HASH.slice(0, -5)}`,
    'no-colon-line',
  ].join('\r\n');
  const parsed = parseHtpasswd(text);
  assert.deepEqual([...parsed.users.keys()], ['alice', 'bob', 'carol']);
  assert.equal(parsed.users.get('bob'), BOB_HASH);
  const refused = parsed.refused.join('\n');
  for (const [user, kind] of [
    ['dave', /MD5/],
    ['erin', /SHA-1/],
    ['frank', /plain text/],
    ['grace', /malformed or truncated bcrypt/],
    ['heidi', /malformed or truncated bcrypt/],
  ] as const) {
    const line = parsed.refused.find((r) => r.includes(`"${user}"`));
    assert.ok(line, `${user} is named in:\n${refused}`);
    assert.match(line, kind);
    assert.match(line, new RegExp(`htpasswd -B FILE ${user}`));
  }
  assert.equal(parsed.refused.length, 7, refused);
});

test('fromFile loads an htpasswd file, and refuses one without bcrypt entries', async (t) => {
  const dir = await tempDir(t);
  const good = join(dir, 'htpasswd');
  await writeFile(good, `alice:${ALICE_HASH}\n`);
  assert.equal(await BasicAuth.fromFile(good).verify(basic('alice', 's3cret:with:colons')), true);
  const bad = join(dir, 'md5-only');
  await writeFile(bad, 'dave:$apr1$abcdefgh$0123456789abcdefghijkl\n');
  assert.throws(() => BasicAuth.fromFile(bad), (err: Error) => err.message.includes(bad) && /bcrypt/.test(err.message));
});

test('a request without credentials is 401 with a Basic challenge and the UNAUTHORIZED envelope', async (t) => {
  const { app } = await testApp(t, { auth: new BasicAuth(users()) });
  assertChallenge(await app.inject({ method: 'GET', url: '/v2/' }));
  assertChallenge(await app.inject({ method: 'HEAD', url: '/v2/' }), 'HEAD');
});

test('a wrong password, an unknown user, another scheme or garbage is 401', async (t) => {
  const { app } = await testApp(t, { auth: new BasicAuth(users()) });
  for (const authorization of [
    basic('alice', 'wrong'),
    basic('alice', ''),
    basic('mallory', 's3cret:with:colons'),
    basic('Alice', 's3cret:with:colons'),
    `Bearer ${Buffer.from('alice:s3cret:with:colons').toString('base64')}`,
    'Basic',
    'Basic !!!not-base64!!!',
    `Basic ${Buffer.from('alice').toString('base64')}`,
  ]) {
    assertChallenge(await app.inject({ method: 'GET', url: '/v2/', headers: { authorization } }));
  }
});

test('the right credentials pass, for each user, with any case of the scheme', async (t) => {
  const { app } = await testApp(t, { auth: new BasicAuth(users()) });
  for (const authorization of [basic('alice', 's3cret:with:colons'), basic('bob', 'hunter2'), basic('bob', 'hunter2').replace('Basic', 'basic')]) {
    const res = await app.inject({ method: 'GET', url: '/v2/', headers: { authorization } });
    assert.equal(res.statusCode, 200, authorization);
    assert.equal(res.body, '{}');
    assert.equal(res.headers['www-authenticate'], undefined);
  }
});

for (const writable of [true, false]) {
  test(`every registered route of the ${writable ? 'registry' : 'cache'} port answers 401 without credentials`, async (t) => {
    const routes: Array<{ method: string; url: string }> = [];
    const { app } = await testApp(t, {
      writable,
      auth: new BasicAuth(users()),
      extraRoutes: (a) => {
        a.addHook('onRoute', (r: RouteOptions) => {
          for (const method of [r.method].flat()) routes.push({ method, url: r.url });
        });
      },
    });
    // The hook saw the whole API, not just a few routes.
    const seen = new Set(routes.map((r) => `${r.method} ${r.url}`));
    for (const expected of ['GET /v2/', 'HEAD /v2/', 'GET /v2/_catalog', 'GET /v2/:name/manifests/:reference', 'GET /v2/:name/blobs/:digest', 'POST /v2/:name/blobs/uploads/', 'PATCH /v2/:name/blobs/uploads/:id', 'PUT /v2/:name/manifests/:reference', 'GET /v2/:name/referrers/:digest']) {
      assert.ok(seen.has(expected), `${expected} not among ${[...seen].join(', ')}`);
    }
    assert.ok(routes.length >= 15, String(routes.length));
    for (const { method, url } of routes) {
      const concrete = url
        .replace(':name', 'a/b')
        .replace(':digest', sha256('x'))
        .replace(':reference', 'latest')
        .replace(':id', '00000000-0000-4000-8000-000000000000');
      const payload = ['PUT', 'PATCH', 'POST'].includes(method) ? 'x' : undefined;
      const res = await app.inject({ method: method as 'GET', url: concrete, payload, headers: { authorization: basic('alice', 'nope') } });
      assertChallenge(res, method);
    }
    // Unknown routes are challenged too: nothing answers before authentication.
    assertChallenge(await app.inject({ method: 'GET', url: '/v2/no/such/endpoint/here' }));
  });
}

test('an authenticated push and pull work end to end', async (t) => {
  const { app } = await testApp(t, { auth: new BasicAuth(users()) });
  const headers = { authorization: basic('bob', 'hunter2') };
  const put = await app.inject({ method: 'POST', url: `/v2/a/blobs/uploads/?digest=${sha256('data')}`, payload: 'data', headers });
  assert.equal(put.statusCode, 201);
  assert.equal((await app.inject({ method: 'GET', url: `/v2/a/blobs/${sha256('data')}`, headers })).body, 'data');
  assertChallenge(await app.inject({ method: 'GET', url: `/v2/a/blobs/${sha256('data')}` }));
});

test('a verified credential is remembered: it is not checked against the hash again', async () => {
  const table = users();
  const auth = new BasicAuth(table);
  const header = basic('alice', 's3cret:with:colons');
  assert.equal(await auth.verify(header), true);
  // Were the hash consulted again, this credential would now fail.
  table.set('alice', bcrypt.hashSync('changed', 4));
  assert.equal(await auth.verify(header), true);
  // A credential never verified is checked, and fails against the changed hash.
  assert.equal(await auth.verify(basic('alice', 's3cret:with:colons').replace('Basic ', 'basic ')), false);
});

test('a failed credential is not remembered', async () => {
  const table = users();
  const auth = new BasicAuth(table);
  const header = basic('alice', 'later-valid');
  assert.equal(await auth.verify(header), false);
  table.set('alice', bcrypt.hashSync('later-valid', 4));
  assert.equal(await auth.verify(header), true);
});

test('concurrent checks of one credential agree', async () => {
  const auth = new BasicAuth(users());
  const results = await Promise.all(Array.from({ length: 5 }, () => auth.verify(basic('bob', 'hunter2'))));
  assert.deepEqual(results, [true, true, true, true, true]);
  const bad = await Promise.all(Array.from({ length: 5 }, () => auth.verify(basic('bob', 'nope'))));
  assert.deepEqual(bad, [false, false, false, false, false]);
});
