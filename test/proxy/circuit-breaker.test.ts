// The upstream client's circuit breaker against a real bearer-token upstream (distribution 2.8
// behind the token-issuer fixture, with small HTTP gates to take either down): refusals of
// credentials are answers, not outages, so they never open the breaker; and a half-open trial
// that ends inside the token flow must settle the breaker, or it would stay open for good.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDistribution } from '../helpers/distribution.js';
import { startTokenIssuer } from '../helpers/token-issuer.js';
import { seedImage } from '../helpers/upstream-images.js';
import { skipUnless } from '../helpers/tools.js';
import { UpstreamClient, UpstreamError } from '../../src/proxy/index.js';
import { CircuitBreaker } from '../../src/shared/index.js';
import { cleanup, expectError, startCache, startGate } from './support.js';

const skip = skipUnless(['docker-registry']);

test('wrong credentials answer DENIED every time and never open the breaker', { skip }, async (t) => {
  const issuer = cleanup(t, await startTokenIssuer({ users: { robot: 'right' } }));
  const upstream = cleanup(t, await startDistribution({ token: issuer.distribution }));
  await seedImage(upstream.url, 'acme/private', 'v1', { authorization: issuer.pushAuthorization('acme/private') });
  const cache = await startCache(t, { upstreams: [`docker.io=${upstream.url}`], upstreamAuth: ['docker.io=robot:wrong'] });
  for (let i = 0; i < 8; i++) {
    const e = await expectError('GET', `${cache.cacheUrl}/v2/acme/private/manifests/v1`);
    assert.deepEqual([e.status, e.code], [403, 'DENIED'], `request ${i + 1}: ${e.text}`);
  }
  assert.equal(issuer.requests().length, 8, 'each request asked the token service (refusals are not cached)');
});

test('a half-open trial that fails in the token flow does not leave the breaker stuck open', { skip }, async (t) => {
  const issuer = cleanup(t, await startTokenIssuer());
  const tokenGate = cleanup(t, await startGate(issuer.url));
  const upstream = cleanup(t, await startDistribution({ token: { ...issuer.distribution, realm: `${tokenGate.url}/token` } }));
  await seedImage(upstream.url, 'library/app', 'v1', { authorization: issuer.pushAuthorization('library/app') });
  const registryGate = cleanup(t, await startGate(upstream.url));
  const coolDownMs = 150;
  const client = new UpstreamClient({ ns: 'docker.io', url: registryGate.url }, { retries: 0, backoffMs: 1, breaker: new CircuitBreaker(1, coolDownMs) });
  t.after(() => client.close());
  const head = async () => {
    const res = await client.request('HEAD', 'library/app', 'manifests/v1', { accept: 'application/vnd.oci.image.manifest.v1+json' });
    res.body.resume();
    return res.status;
  };

  // The registry fails: the breaker opens.
  registryGate.mode = 'down';
  await assert.rejects(head(), (err: unknown) => err instanceof UpstreamError && err.kind === 'unavailable');
  assert.equal(client.breaker.state, 'open');
  // The registry is back but its token service is down when the trial goes out.
  registryGate.mode = 'pass';
  tokenGate.mode = 'down';
  await sleep(coolDownMs + 20);
  await assert.rejects(head(), (err: unknown) => err instanceof UpstreamError && err.kind === 'unavailable' && /token/.test(err.message));
  // Everything is back: after one more cool-down the next trial must go out and succeed.
  tokenGate.mode = 'pass';
  await sleep(coolDownMs + 20);
  assert.equal(await head(), 200);
  assert.equal(client.breaker.state, 'closed');
});
