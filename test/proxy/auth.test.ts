// The cache against authenticating upstreams (real distribution 2.8): the bearer flow of
// Docker Hub (token issuer fixture), anonymous and with credentials (the `credentials` option
// and `upstreamAuth`), and htpasswd basic auth, with and without credentials. The upstream's
// access log and the token issuer's request log are what the assertions read.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startDistribution } from '../helpers/distribution.js';
import { startTokenIssuer } from '../helpers/token-issuer.js';
import { pullImage, seedImage, type TestImage } from '../helpers/upstream-images.js';
import { skipUnless } from '../helpers/tools.js';
import { cleanup, expectError, logWindow, matching, show, startCache, startCdn, startGate } from './support.js';

const skip = skipUnless(['docker-registry']);

function assertPulled(pulled: Awaited<ReturnType<typeof pullImage>>, image: TestImage): void {
  assert.equal(pulled.digest, image.digest);
  for (const b of image.blobs) assert.deepEqual(pulled.blobs.get(b.digest), b.data, `blob ${b.digest}`);
}

test('anonymous bearer flow: one token per repository scope, reused for later requests', { skip }, async (t) => {
  const issuer = cleanup(t, await startTokenIssuer());
  const upstream = cleanup(t, await startDistribution({ token: issuer.distribution }));
  const images = {
    'library/alpine': await seedImage(upstream.url, 'library/alpine', '3', { authorization: issuer.pushAuthorization('library/alpine') }),
    'team/app': await seedImage(upstream.url, 'team/app', 'v1', { authorization: issuer.pushAuthorization('team/app') }),
  };
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], tagTtlMs: 0 });
  const window = await logWindow(upstream);

  for (let round = 0; round < 2; round++) {
    assertPulled(await pullImage({ base: cache.cacheUrl, name: 'alpine' }, '3'), images['library/alpine']);
    assertPulled(await pullImage({ base: cache.cacheUrl, name: 'team/app' }, 'v1'), images['team/app']);
  }

  const tokenRequests = issuer.requests();
  assert.deepEqual(
    tokenRequests.map((r) => ({ method: r.method, scopes: r.scopes, service: r.service, credentials: r.sentCredentials, status: r.status })),
    [
      { method: 'GET', scopes: ['repository:library/alpine:pull'], service: issuer.service, credentials: false, status: 200 },
      { method: 'GET', scopes: ['repository:team/app:pull'], service: issuer.service, credentials: false, status: 200 },
    ],
    'exactly one anonymous token request per repository scope',
  );
  const entries = await window.entries();
  // The very first request is challenged; after that the realm is known and tokens are fetched up front.
  assert.deepEqual(entries.filter((e) => e.status === 401).map((e) => e.path), ['/v2/library/alpine/manifests/3'], show(entries));
  assert.ok(entries.every((e) => e.status === 200 || e.status === 401), show(entries));
  // Second round: HEAD revalidation only, with the cached token.
  assert.equal(matching(entries, 'HEAD', '/manifests/3').length, 1, show(entries));
  assert.equal(matching(entries, 'HEAD', '/manifests/v1').length, 1, show(entries));
  assert.equal(entries.filter((e) => e.method === 'GET' && e.path.includes('/manifests/') && e.status === 200).length, 2, show(entries));
});

test('bearer with credentials from the credentials option: the token is fetched as that user', { skip }, async (t) => {
  const issuer = cleanup(t, await startTokenIssuer({ users: { robot: 'hub-token-1' } }));
  const upstream = cleanup(t, await startDistribution({ token: issuer.distribution }));
  const image = await seedImage(upstream.url, 'acme/private', 'v1', { authorization: issuer.pushAuthorization('acme/private') });
  const cache = await startCache(t, {
    upstreams: [`docker.io=${upstream.url}`],
    credentials: new Map([['docker.io', { username: 'robot', password: 'hub-token-1' }]]),
  });
  assertPulled(await pullImage({ base: cache.cacheUrl, name: 'acme/private' }, 'v1'), image);
  const requests = issuer.requests();
  assert.equal(requests.length, 1);
  assert.equal(requests[0]!.account, 'robot');
  assert.deepEqual(requests[0]!.scopes, ['repository:acme/private:pull']);
});

test('bearer with credentials from upstreamAuth (NS=USER:TOKEN)', { skip }, async (t) => {
  const issuer = cleanup(t, await startTokenIssuer({ users: { robot: 'tok:with:colons' } }));
  const upstream = cleanup(t, await startDistribution({ token: issuer.distribution }));
  const image = await seedImage(upstream.url, 'acme/private', 'v1', { authorization: issuer.pushAuthorization('acme/private') });
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], upstreamAuth: ['docker.io=robot:tok:with:colons'] });
  assertPulled(await pullImage({ base: cache.cacheUrl, name: 'acme/private' }, 'v1'), image);
  assert.deepEqual(issuer.requests().map((r) => [r.account, r.status]), [['robot', 200]]);
});

test('bearer upstream that requires credentials, none configured: a clean DENIED, no retry storm', { skip }, async (t) => {
  const issuer = cleanup(t, await startTokenIssuer({ users: { robot: 'secret' } }));
  const upstream = cleanup(t, await startDistribution({ token: issuer.distribution }));
  await seedImage(upstream.url, 'acme/private', 'v1', { authorization: issuer.pushAuthorization('acme/private') });
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });
  const window = await logWindow(upstream);
  const e = await expectError('GET', `${cache.cacheUrl}/v2/acme/private/manifests/v1`);
  assert.equal(e.status, 403);
  assert.equal(e.code, 'DENIED');
  assert.deepEqual(issuer.requests().map((r) => [r.status, r.sentCredentials]), [[401, false]]);
  const entries = await window.entries();
  assert.deepEqual(entries.map((x) => [x.method, x.status]), [['GET', 401]], show(entries));
});

test('basic-auth upstream (htpasswd) with credentials: challenged once, then basic auth up front', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution({ htpasswd: { user: 'ci', password: 'basic-pw' } }));
  const authorization = `Basic ${Buffer.from('ci:basic-pw').toString('base64')}`;
  const image = await seedImage(upstream.url, 'acme/app', 'v1', { authorization, layers: 3 });
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], upstreamAuth: ['docker.io=ci:basic-pw'] });
  const window = await logWindow(upstream);
  assertPulled(await pullImage({ base: cache.cacheUrl, name: 'acme/app' }, 'v1'), image);
  const entries = await window.entries();
  assert.deepEqual(entries.filter((e) => e.status === 401).map((e) => e.path), ['/v2/acme/app/manifests/v1'], show(entries));
  assert.equal(entries.filter((e) => e.status === 200).length, 1 + image.blobs.length, show(entries));
});

test('basic-auth upstream without credentials, or with wrong ones: a clean DENIED', { skip }, async (t) => {
  const upstream = cleanup(t, await startDistribution({ htpasswd: { user: 'ci', password: 'basic-pw' } }));
  const authorization = `Basic ${Buffer.from('ci:basic-pw').toString('base64')}`;
  const image = await seedImage(upstream.url, 'acme/app', 'v1', { authorization });

  const anonymous = await startCache(t, { upstreams: [`docker.io=${upstream.url}`] });
  const none = await expectError('GET', `${anonymous.cacheUrl}/v2/acme/app/manifests/v1`);
  assert.deepEqual([none.status, none.code], [403, 'DENIED']);
  const blob = await expectError('GET', `${anonymous.cacheUrl}/v2/acme/app/blobs/${image.layers[0]!.digest}`);
  assert.deepEqual([blob.status, blob.code], [403, 'DENIED']);

  const wrong = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], upstreamAuth: ['docker.io=ci:not-the-password'] });
  const window = await logWindow(upstream);
  const bad = await expectError('GET', `${wrong.cacheUrl}/v2/acme/app/manifests/v1`);
  assert.deepEqual([bad.status, bad.code], [403, 'DENIED']);
  assert.doesNotMatch(bad.text, /not-the-password/);
  const entries = await window.entries();
  assert.deepEqual(entries.map((e) => [e.method, e.status]), [['GET', 401], ['GET', 401]], `challenge, one try with the credentials, no more:\n${show(entries)}`);
});

test('blob redirects to another origin (a CDN, as Docker Hub and ghcr.io do) are followed without the Authorization header', { skip }, async (t) => {
  const issuer = cleanup(t, await startTokenIssuer({ users: { robot: 'cdn-test' } }));
  const upstream = cleanup(t, await startDistribution({ token: issuer.distribution }));
  const image = await seedImage(upstream.url, 'acme/app', 'v1', { authorization: issuer.pushAuthorization('acme/app') });
  const cdn = cleanup(t, await startCdn(new Map(image.blobs.map((b) => [b.digest, b.data]))));
  const gate = cleanup(t, await startGate(upstream.url));
  gate.redirectBlobsTo = cdn.url;
  const cache = await startCache(t, { upstreams: [`docker.io=${gate.url}`], upstreamAuth: ['docker.io=robot:cdn-test'] });

  assertPulled(await pullImage({ base: cache.cacheUrl, name: 'acme/app' }, 'v1'), image);
  const redirected = gate.log.filter((e) => e.status === 307);
  assert.equal(redirected.length, image.blobs.length);
  assert.ok(gate.log.filter((e) => e.path.includes('/manifests/')).length >= 1);
  assert.deepEqual(cdn.log.map((e) => [e.path, e.status]).sort(), image.blobs.map((b) => [`/${b.digest}`, 200]).sort());
  assert.deepEqual(cdn.log.filter((e) => e.authorization !== undefined), [], 'no credentials or token sent to the other origin');
});

test('a password with a comma works, from upstreamAuth and from REGCACHE_UPSTREAM_AUTH (one credential per line)', { skip }, async (t) => {
  const password = 'p,w=x:y,z';
  const upstream = cleanup(t, await startDistribution({ htpasswd: { user: 'ci', password } }));
  const ghcr = cleanup(t, await startDistribution({ htpasswd: { user: 'bot', password: 'other,one' } }));
  const image = await seedImage(upstream.url, 'acme/app', 'v1', { authorization: `Basic ${Buffer.from(`ci:${password}`).toString('base64')}` });
  const ghcrImage = await seedImage(ghcr.url, 'acme/app', 'v1', { authorization: `Basic ${Buffer.from('bot:other,one').toString('base64')}` });

  const viaFlag = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], upstreamAuth: [`docker.io=ci:${password}`] });
  assertPulled(await pullImage({ base: viaFlag.cacheUrl, name: 'acme/app' }, 'v1'), image);

  process.env.REGCACHE_UPSTREAM_AUTH = `docker.io=ci:${password}\nghcr.io=bot:other,one\n`;
  try {
    const viaEnv = await startCache(t, { upstreams: [`docker.io=${upstream.url}`, `ghcr.io=${ghcr.url}`] });
    assertPulled(await pullImage({ base: viaEnv.cacheUrl, name: 'acme/app' }, 'v1'), image);
    assertPulled(await pullImage({ base: viaEnv.cacheUrl, name: 'ghcr.io/acme/app' }, 'v1'), ghcrImage);
  } finally {
    delete process.env.REGCACHE_UPSTREAM_AUTH;
  }
});
