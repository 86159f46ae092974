// Tests of the token-issuer fixture against the real distribution 2.8: tokens that name their
// key by x5c chain or only by libtrust key ID, ES256 and RS256, are accepted; anonymous callers
// get pull but not push; credentials are checked; a token signed by a key outside the root
// bundle is refused. If these fail, the bearer-flow tests of the cache prove nothing.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { request } from 'undici';
import { startDistribution } from '../helpers/distribution.js';
import { libtrustKeyId, parseScope, startTokenIssuer, type TokenIssuerOptions } from '../helpers/token-issuer.js';
import { fetchBytes, randomImage, seedImage, pushBlob } from '../helpers/upstream-images.js';
import { skipUnless } from '../helpers/tools.js';
import { cleanup } from './support.js';

const skip = skipUnless(['docker-registry']);

async function tokenFor(realm: string, query: string, authorization?: string): Promise<{ status: number; token?: string }> {
  const res = await request(`${realm}?${query}`, { headers: authorization ? { authorization } : {} });
  const doc = (await res.body.json()) as { token?: string };
  return { status: res.statusCode, ...(doc.token ? { token: doc.token } : {}) };
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

async function acceptedBy(opts: TokenIssuerOptions, t: Parameters<typeof cleanup>[0]): Promise<void> {
  const issuer = cleanup(t, await startTokenIssuer(opts));
  const d = cleanup(t, await startDistribution({ token: issuer.distribution }));
  const image = await seedImage(d.url, 'team/app', 'v1', { authorization: issuer.pushAuthorization('team/app') });
  const { status, token } = await tokenFor(issuer.realm, `service=${issuer.service}&scope=repository:team/app:pull`);
  assert.equal(status, 200);
  const [header] = token!.split('.');
  const h = JSON.parse(Buffer.from(header!, 'base64url').toString('utf8')) as { alg: string; kid?: string; x5c?: string[] };
  assert.equal(h.alg, opts.alg ?? 'ES256');
  assert.equal(h.kid !== undefined, opts.keyRef !== 'x5c');
  assert.equal(h.x5c !== undefined, opts.keyRef !== 'kid');
  const res = await fetchBytes(`${d.url}/v2/team/app/manifests/v1`, { headers: { authorization: `Bearer ${token}`, accept: image.mediaType } });
  assert.equal(res.status, 200, res.body.toString('utf8'));
  assert.deepEqual(res.body, image.manifest);
}

test('libtrust key IDs: 12 groups of 4 base32 characters; scopes parse', () => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  assert.match(libtrustKeyId(publicKey), /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/);
  assert.deepEqual(parseScope('repository:library/alpine:pull,push'), { type: 'repository', name: 'library/alpine', actions: ['pull', 'push'] });
  assert.deepEqual(parseScope('repository(plugin):a/b:pull'), { type: 'repository', name: 'a/b', actions: ['pull'] });
  assert.equal(parseScope('nonsense'), undefined);
});

test('ES256 tokens naming their key by x5c only are accepted by distribution', { skip }, async (t) => {
  await acceptedBy({ alg: 'ES256', keyRef: 'x5c' }, t);
});

test('ES256 tokens naming their key by libtrust kid only are accepted by distribution', { skip }, async (t) => {
  await acceptedBy({ alg: 'ES256', keyRef: 'kid' }, t);
});

test('RS256 tokens (kid only, and kid + x5c) are accepted by distribution', { skip }, async (t) => {
  await acceptedBy({ alg: 'RS256', keyRef: 'kid' }, t);
  await acceptedBy({ alg: 'RS256' }, t);
});

test('anonymous tokens grant pull but not push; a foreign key is refused', { skip }, async (t) => {
  const issuer = cleanup(t, await startTokenIssuer());
  const stranger = cleanup(t, await startTokenIssuer({ issuer: issuer.issuer, service: issuer.service }));
  const d = cleanup(t, await startDistribution({ token: issuer.distribution }));
  const { token } = await tokenFor(issuer.realm, `service=${issuer.service}&scope=repository:team/app:pull,push`);
  const claims = JSON.parse(Buffer.from(token!.split('.')[1]!, 'base64url').toString('utf8')) as { access: unknown; aud: unknown; iss: unknown };
  assert.deepEqual(claims.access, [{ type: 'repository', name: 'team/app', actions: ['pull'] }]);
  assert.equal(claims.aud, issuer.service);
  assert.equal(claims.iss, issuer.issuer);
  await assert.rejects(pushBlob(d.url, 'team/app', randomImage().config, { authorization: `Bearer ${token}` }), /401/);
  const forged = stranger.mint([{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }]);
  await assert.rejects(pushBlob(d.url, 'team/app', randomImage().config, { authorization: `Bearer ${forged}` }), /401/);
  await pushBlob(d.url, 'team/app', randomImage().config, { authorization: issuer.pushAuthorization('team/app') });
  assert.deepEqual(issuer.requests().map((r) => [r.method, r.status, r.account]), [['GET', 200, undefined]]);
});

test('with users: wrong or missing credentials get 401, right ones (GET basic or POST password grant) get pull and push', { skip }, async (t) => {
  const issuer = cleanup(t, await startTokenIssuer({ users: { ci: 'pa55' } }));
  const q = `service=${issuer.service}&scope=repository:team/app:pull,push`;
  assert.equal((await tokenFor(issuer.realm, q)).status, 401);
  assert.equal((await tokenFor(issuer.realm, q, basic('ci', 'nope'))).status, 401);
  const ok = await tokenFor(issuer.realm, q, basic('ci', 'pa55'));
  assert.equal(ok.status, 200);
  const post = await request(issuer.realm, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', username: 'ci', password: 'pa55', service: issuer.service, scope: 'repository:team/app:pull', client_id: 'test' }).toString(),
  });
  const doc = (await post.body.json()) as { access_token?: string };
  assert.equal(post.statusCode, 200);
  assert.ok(doc.access_token);
  assert.deepEqual(
    issuer.requests().map((r) => [r.method, r.status, r.account ?? null, r.sentCredentials, r.granted.flatMap((g) => g.actions).join(',')]),
    [
      ['GET', 401, null, false, ''],
      ['GET', 401, null, true, ''],
      ['GET', 200, 'ci', true, 'pull,push'],
      ['POST', 200, 'ci', true, 'pull'],
    ],
  );
  assert.equal(issuer.issued().length, 2);
});
