// Basic auth on the running server (a child process, `serve --htpasswd`), over real sockets:
// every route of BOTH ports, as fastify's own route list has them (the route probe's onRoute
// hook, so the cache port's /_regcache/stats and /metrics are in it too), refuses a missing
// credential and five wrong ones with 401, the UNAUTHORIZED envelope and a Basic challenge;
// each request names real content (a pushed blob, a tag, a live upload session), so that only
// authentication stands in the way, and a refused write changes nothing. The right credential
// passes on every route. test/registry/auth.test.ts covers the same with app.inject on an app
// without the cache's statistics routes, and wrong credentials only.
// Then, with auth on and off: an upload session is unknown to every repository but its own.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { Agent, type Dispatcher } from 'undici';
import { freePort, tempDir } from '../helpers/proc.js';
import { type RouteInfo, type ServerChild, startServerChild } from '../helpers/server-child.js';

const USER = 'ci';
const PASSWORD = 'pa:ss word';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const GOOD = basic(USER, PASSWORD);
/** A missing credential, and wrong ones: each must be refused on every route. */
const BAD: ReadonlyArray<[string, string | undefined]> = [
  ['no Authorization', undefined],
  ['wrong password', basic(USER, 'pa:ss wordx')],
  ['unknown user', basic('mallory', PASSWORD)],
  ['user in another case', basic('CI', PASSWORD)],
  ['bearer scheme', `Bearer ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`],
  ['malformed', 'Basic !!!'],
];
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const agent = new Agent({ connections: 8 });

async function send(origin: string, method: string, path: string, opts: { authorization?: string | undefined; body?: Buffer; headers?: Record<string, string> } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.authorization !== undefined) headers.authorization = opts.authorization;
  const res = await agent.request({ origin, path, method: method as Dispatcher.HttpMethod, headers, body: opts.body ?? null });
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
}

async function startWithAuth(dir: string, auth: boolean): Promise<ServerChild> {
  const args: string[] = [];
  if (auth) {
    const file = join(dir, 'htpasswd');
    await writeFile(file, `${USER}:${bcrypt.hashSync(PASSWORD, 4)}\n`);
    args.push('--htpasswd', file);
  }
  // The cache's upstream is the registry port itself (with the credential), so that a pull
  // through the cache reaches a real registry on loopback.
  const registryPort = await freePort();
  args.push('--upstream', `docker.io=http://127.0.0.1:${registryPort}`);
  if (auth) args.push('--upstream-auth', `docker.io=${USER}:${PASSWORD}`);
  return startServerChild(dir, { registryPort, probeRoutes: true, args, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir } });
}

/** Content the requests name: a blob, a tagged manifest, and live upload sessions. */
async function seed(server: ServerChild, authorization?: string) {
  const reg = server.registryUrl;
  const name = 'auth/app';
  const blob = Buffer.from('auth layer');
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  for (const b of [blob, config]) assert.equal((await send(reg, 'POST', `/v2/${name}/blobs/uploads/?digest=${sha256(b)}`, { authorization, body: b })).status, 201);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(blob), size: blob.length }] }));
  assert.equal((await send(reg, 'PUT', `/v2/${name}/manifests/v1`, { authorization, body: manifest, headers: { 'content-type': OCI_MANIFEST } })).status, 201);
  const session = async () => {
    const post = await send(reg, 'POST', `/v2/${name}/blobs/uploads/`, { authorization });
    assert.equal(post.status, 202);
    return post.headers['docker-upload-uuid'] as string;
  };
  return { name, blob, manifest, digest: sha256(blob), session };
}

function concrete(route: RouteInfo, s: { name: string; digest: string }, id: string, newDigest: string): { path: string; body?: Buffer } {
  const path = route.url
    .replace(':name', s.name)
    .replace(':digest', s.digest)
    .replace(':reference', route.method === 'PUT' ? 'intruder-tag' : 'v1')
    .replace(':id', id);
  if (route.method === 'POST') return { path: `${path}?digest=${newDigest}`, body: Buffer.from('pushed without credentials') };
  if (route.method === 'PUT' && route.url.includes('/uploads/')) return { path: `${path}?digest=${newDigest}`, body: Buffer.from('pushed without credentials') };
  if (route.method === 'PUT') return { path, body: Buffer.from('{"schemaVersion":2}') };
  if (route.method === 'PATCH') return { path, body: Buffer.from('appended without credentials') };
  return { path };
}

test('with htpasswd, every route of both ports refuses a missing or wrong credential, and accepts the right one', async (t) => {
  const dir = await tempDir('rc-auth-', t);
  const server = await startWithAuth(dir.path, true);
  t.after(() => server.stop());
  const s = await seed(server, GOOD);
  const id = await s.session();
  const newDigest = sha256('pushed without credentials');
  const ports = [
    { port: 'registry', origin: server.registryUrl, routes: server.routes.registry },
    { port: 'cache', origin: server.cacheUrl, routes: server.routes.cache },
  ];
  const listed = ports.flatMap((p) => p.routes.map((r) => `${p.port} ${r.method} ${r.url}`));
  for (const r of ['registry GET /v2/', 'registry PATCH /v2/:name/blobs/uploads/:id', 'registry PUT /v2/:name/manifests/:reference', 'cache GET /_regcache/stats', 'cache GET /metrics', 'cache GET /v2/:name/manifests/:reference']) {
    assert.ok(listed.includes(r), `${r} not in fastify's route list: ${listed.join(', ')}`);
  }
  let refused = 0;
  for (const { port, origin, routes } of ports) {
    for (const route of routes) {
      const { path, body } = concrete(route, s, id, newDigest);
      for (const [label, authorization] of BAD) {
        const a = await send(origin, route.method, path, { authorization, ...(body ? { body } : {}) });
        const what = `${port} ${route.method} ${route.url} (${label})`;
        assert.equal(a.status, 401, `${what}: ${a.status} ${a.body.toString().slice(0, 200)}`);
        assert.equal(a.headers['www-authenticate'], 'Basic realm="regcache"', what);
        assert.equal(a.headers['docker-distribution-api-version'], 'registry/2.0', what);
        if (route.method !== 'HEAD') assert.deepEqual(JSON.parse(a.body.toString()), { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }, what);
        refused++;
      }
    }
  }
  t.diagnostic(`${refused} requests refused: ${listed.length} routes × ${BAD.length} credentials`);

  // Nothing the refused requests carried was stored.
  const status = await send(server.registryUrl, 'GET', `/v2/${s.name}/blobs/uploads/${id}`, { authorization: GOOD });
  assert.equal(status.status, 204);
  assert.equal(status.headers.range, '0-0', 'the session received no bytes');
  assert.equal((await send(server.registryUrl, 'HEAD', `/v2/${s.name}/blobs/${newDigest}`, { authorization: GOOD })).status, 404, 'no blob was pushed');
  assert.equal((await send(server.registryUrl, 'HEAD', `/v2/${s.name}/manifests/intruder-tag`, { authorization: GOOD })).status, 404, 'no tag was pushed');
  assert.equal((await send(server.registryUrl, 'HEAD', `/v2/${s.name}/manifests/v1`, { authorization: GOOD })).status, 200, 'the tag was not deleted');
  assert.equal((await send(server.registryUrl, 'HEAD', `/v2/${s.name}/blobs/${s.digest}`, { authorization: GOOD })).status, 200, 'the blob was not deleted');

  // The right credential passes everywhere (the reads of real content succeed).
  for (const { port, origin, routes } of ports) {
    for (const route of routes) {
      if (!['GET', 'HEAD'].includes(route.method) || route.url.includes('/uploads/')) continue;
      const path = route.url.replace(':name', s.name).replace(':digest', s.digest).replace(':reference', 'v1');
      const a = await send(origin, route.method, path, { authorization: GOOD });
      assert.ok(a.status >= 200 && a.status < 300, `${port} ${route.method} ${route.url} with the right credential: ${a.status} ${a.body.toString().slice(0, 200)}`);
    }
  }
  // Pulled through the cache (which authenticates to its upstream, the registry port): the same bytes.
  const viaCache = await send(server.cacheUrl, 'GET', `/v2/${s.name}/blobs/${s.digest}`, { authorization: GOOD });
  assert.ok(viaCache.body.equals(s.blob));
  assert.ok(server.alive());
});

for (const auth of [true, false]) {
  test(`an upload session is unknown to every other repository (auth ${auth ? 'on' : 'off'})`, async (t) => {
    const dir = await tempDir('rc-auth-upload-', t);
    const server = await startWithAuth(dir.path, auth);
    t.after(() => server.stop());
    const authorization = auth ? GOOD : undefined;
    const reg = server.registryUrl;
    const s = await seed(server, authorization);
    const id = await s.session();
    const first = Buffer.from('first chunk of the owner');
    assert.equal((await send(reg, 'PATCH', `/v2/${s.name}/blobs/uploads/${id}`, { authorization, body: first })).status, 202);
    const stolen = Buffer.from(' appended by another repository');
    const stolenDigest = sha256(Buffer.concat([first, stolen]));
    // Other repositories: a sibling, the parent, a child, another case (invalid), the name with a
    // dot segment, and the owner's name on the read-only cache port.
    const others = ['auth/other', 'auth', 'auth/app/sub', 'other/app', 'auth/App', 'auth/app/../other'];
    for (const other of others) {
      for (const method of ['GET', 'PATCH', 'PUT', 'DELETE']) {
        const path = `/v2/${other}/blobs/uploads/${id}${method === 'PUT' ? `?digest=${stolenDigest}` : ''}`;
        const a = await send(reg, method, path, { authorization, ...(method === 'PATCH' || method === 'PUT' ? { body: stolen } : {}) });
        const code = (JSON.parse(a.body.toString()) as { errors: Array<{ code: string }> }).errors[0]!.code;
        const expected = /[A-Z]|\.\./.test(other) ? [400, 'NAME_INVALID'] : [404, 'BLOB_UPLOAD_UNKNOWN'];
        assert.deepEqual([a.status, code], expected, `${method} ${path}`);
      }
    }
    for (const method of ['GET', 'PATCH', 'PUT', 'DELETE']) {
      const a = await send(server.cacheUrl, method, `/v2/${s.name}/blobs/uploads/${id}`, { authorization, ...(method === 'PATCH' ? { body: stolen } : {}) });
      assert.equal(a.status, 405, `cache port ${method}`);
    }
    // The session is the owner's, untouched: it completes with the owner's bytes only.
    const status = await send(reg, 'GET', `/v2/${s.name}/blobs/uploads/${id}`, { authorization });
    assert.equal(status.status, 204);
    assert.equal(status.headers.range, `0-${first.length - 1}`);
    for (const other of others.filter((o) => !/[A-Z]|\.\./.test(o))) {
      assert.equal((await send(reg, 'HEAD', `/v2/${other}/blobs/${stolenDigest}`, { authorization })).status, 404);
    }
    const put = await send(reg, 'PUT', `/v2/${s.name}/blobs/uploads/${id}?digest=${sha256(first)}`, { authorization });
    assert.equal(put.status, 201, put.body.toString());
    const back = await send(reg, 'GET', `/v2/${s.name}/blobs/${sha256(first)}`, { authorization });
    assert.ok(back.body.equals(first));
    assert.ok(server.alive());
  });
}

after(() => agent.close());
