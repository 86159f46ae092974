// Hostile input, property-based: regcache runs as a child process under `strace -f -e trace=%file`
// with a route probe preloaded (fastify's own onRoute list of both ports), and fast-check sends
// it seeded random requests over real sockets (undici, and raw bytes for what undici refuses to
// send) built from every route: adversarial paths, names, tags, digests, upload ids, queries,
// headers, bodies and manifests. The cache port's upstream is the registry port itself, so that
// pulls through it reach a real registry without leaving loopback.
// Properties, per case: the server keeps running; no 5xx; every error is the OCI envelope with
// a code of src/oci/errors.ts (and the API version header); an accepted manifest or blob is
// served back under a digest that its bytes hash to (a manifest: the very bytes sent); an upload
// session is unknown to every other repository. Over the run: the server logged no error, and
// every file it touched is under its storage root or on the allowlist below (see fileAllowlist).
// 1,000 cases in `npm test`, 10,000 under REGCACHE_LONG=1 (REGCACHE_FUZZ_RUNS overrides);
// REGCACHE_SEED=<n> replays a run (the seed is printed), REGCACHE_FUZZ_SHRINK=1 shrinks a failure.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { readFile, realpath, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import fc from 'fast-check';
import { Agent, type Dispatcher } from 'undici';
import { ERROR_CODES } from '../../src/oci/index.js';
import { type CrossUploadPlan, type HttpPlan, type Plan, type RawPlan, type UploadFlowPlan, type World, OCI_MANIFEST, describePlan, fuzzCases, renderHttp, renderPiece } from '../helpers/hostile-inputs.js';
import { freePort, tempDir } from '../helpers/proc.js';
import { rawExchange } from '../helpers/raw-http.js';
import { type ServerChild, DIST_CLI, ROUTE_PROBE, startServerChild } from '../helpers/server-child.js';
import { isUnder, parseFileTrace } from '../helpers/strace-files.js';
import { skipUnless } from '../helpers/tools.js';

const LONG = !!process.env.REGCACHE_LONG;
const RUNS = Number(process.env.REGCACHE_FUZZ_RUNS ?? (LONG ? 10_000 : 1_000));
const SEED = process.env.REGCACHE_SEED !== undefined ? Number(process.env.REGCACHE_SEED) : randomBytes(4).readInt32LE();

/** Raw kinds whose request never ends its head: nothing obliges the server to answer them. */
const UNTERMINATED = new Set(['unterminated-head', 'half-request-line', 'empty', 'garbage']);

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

interface Tally {
  cases: number;
  requests: number;
  byStatus: Map<number, number>;
  byCode: Map<string, number>;
  routesHit: Set<string>;
  acceptedManifests: number;
  acceptedBlobs: number;
  raw: number;
  crossUploads: number;
  uploadFlows: number;
  unsendable: number;
  cut: number;
  /** 5xx answers accepted by justified5xx, by reason. */
  justified: Map<string, number>;
}

const sha = (alg: string, data: Buffer) => `${alg}:${createHash(alg).update(data).digest('hex')}`;
const header = (h: Answer['headers'], k: string) => (Array.isArray(h[k]) ? (h[k] as string[])[0] : (h[k] as string | undefined));

class Client {
  private readonly agent = new Agent({ connections: 4, headersTimeout: 20_000, bodyTimeout: 20_000, keepAliveTimeout: 4_000 });
  constructor(readonly tally: Tally) {}

  async send(origin: string, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer | Readable): Promise<Answer> {
    this.tally.requests++;
    const res = await this.agent.request({ origin, path, method: method as Dispatcher.HttpMethod, headers, body: body ?? null });
    const chunks: Buffer[] = [];
    for await (const c of res.body) chunks.push(c as Buffer);
    return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
  }

  private closed?: Promise<void>;
  close(): Promise<void> {
    return (this.closed ??= this.agent.close());
  }
}

/**
 * The 5xx answers the suite accepts, each in exactly one shape, and why (one, now):
 * - 507 UNAVAILABLE "storage is full" to a push that announces (Content-Length) more bytes than
 *   the file system has free: a genuine capacity limit of the server, said before a byte is
 *   stored.
 * Each also logs one error line, matched by `log`.
 */
const JUSTIFIED: ReadonlyArray<{ reason: string; status: number; body: RegExp; log: RegExp; applies(plan: Plan, freeBytes: number): boolean }> = [
  {
    reason: 'announced more bytes than the storage has free',
    status: 507,
    body: /^\{"errors":\[\{"code":"UNAVAILABLE","message":"storage is full[^"]*"(,"detail":[^\]]*)?\}\]\}$/,
    // Not a server fault: logged as a warning with its message (error-handler.ts), not as an error.
    log: /"level":40,.*"msg":"storage is full/,
    applies: (plan, free) => declaredLength(plan) > free,
  },
];

/** The Content-Length a plan announces (0 when none). */
function declaredLength(plan: Plan): number {
  if (plan.transport === 'raw') return Number(/\r\ncontent-length: *(\d+)/i.exec(plan.head)?.[1] ?? 0);
  return 0;
}

let freeBytes = Number.POSITIVE_INFINITY;

function justified5xx(plan: Plan, a: { status: number; body: Buffer }): string | undefined {
  // A HEAD answer has no body: its shape is then checked by its log line at the end.
  const text = a.body.toString();
  return JUSTIFIED.find((j) => j.status === a.status && (text === '' || j.body.test(text)) && j.applies(plan, freeBytes))?.reason;
}

/** Asserts what every answer must be: the version header, no 5xx, errors as the OCI envelope. */
function assertAnswer(a: { status: number; headers: Record<string, unknown>; body: Buffer }, method: string, what: string, tally: Tally, plan?: Plan): void {
  tally.byStatus.set(a.status, (tally.byStatus.get(a.status) ?? 0) + 1);
  const text = a.body.toString('utf8');
  assert.equal(a.headers['docker-distribution-api-version'], 'registry/2.0', `${what}: no API version header on ${a.status} ${text.slice(0, 200)}`);
  const justified = plan && a.status >= 500 ? justified5xx(plan, a) : undefined;
  if (justified) tally.justified.set(justified, (tally.justified.get(justified) ?? 0) + 1);
  assert.ok(a.status < 500 || justified, `${what}: ${a.status} ${text.slice(0, 500)}`);
  if (a.status < 400) return;
  if (method === 'HEAD') {
    assert.equal(a.body.length, 0, `${what}: HEAD with a body`);
    return;
  }
  assert.match(String(a.headers['content-type']), /^application\/json/, `${what}: ${a.status} not JSON: ${text.slice(0, 200)}`);
  let env: { errors?: Array<{ code?: unknown; message?: unknown }> };
  try {
    env = JSON.parse(text);
  } catch {
    assert.fail(`${what}: ${a.status} body is not JSON: ${text.slice(0, 200)}`);
  }
  assert.deepEqual(Object.keys(env), ['errors'], `${what}: ${text.slice(0, 300)}`);
  assert.ok(Array.isArray(env.errors) && env.errors.length === 1, `${what}: ${text.slice(0, 300)}`);
  const e = env.errors[0]!;
  assert.ok(typeof e.code === 'string' && Object.hasOwn(ERROR_CODES, e.code), `${what}: code ${String(e.code)} not in src/oci/errors.ts`);
  assert.equal(typeof e.message, 'string');
  assert.doesNotMatch(text, /\n\s+at |\.ts:\d|\.js:\d|node_modules|\/tmp\/|\/work\//, `${what}: internals in ${text.slice(0, 300)}`);
  tally.byCode.set(e.code as string, (tally.byCode.get(e.code as string) ?? 0) + 1);
}

/** True for errors undici raises before anything is sent (a request it refuses to write). */
function unsendable(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED' || (err instanceof TypeError && /header|method|path|token/i.test((err as Error).message));
}

interface Fixture {
  server: ServerChild;
  world: World;
  client: Client;
  tally: Tally;
}

async function verifyServed(f: Fixture, location: string | undefined, digest: string | undefined, what: string, exact?: Buffer): Promise<void> {
  assert.ok(digest && /^(sha256|sha512):[a-f0-9]+$/.test(digest), `${what}: Docker-Content-Digest ${digest}`);
  assert.ok(location?.startsWith('/v2/'), `${what}: Location ${location}`);
  const back = await f.client.send(f.server.registryUrl, 'GET', location!);
  assert.equal(back.status, 200, `${what}: GET ${location} answered ${back.status} ${back.body.toString().slice(0, 200)}`);
  assert.equal(sha(digest!.split(':')[0]!, back.body), digest, `${what}: the bytes served at ${location} do not hash to ${digest}`);
  if (exact) assert.ok(back.body.equals(exact), `${what}: the bytes served are not the bytes sent`);
}

async function runHttp(f: Fixture, plan: HttpPlan): Promise<void> {
  const r = renderHttp(plan, f.world);
  const what = describePlan(plan, f.world);
  const origin = plan.port === 'registry' ? f.server.registryUrl : f.server.cacheUrl;
  const body = r.body && plan.chunked ? Readable.from([r.body]) : r.body;
  let a: Answer;
  try {
    a = await f.client.send(origin, r.method, r.path, r.headers, body);
  } catch (err) {
    if (unsendable(err)) {
      f.tally.unsendable++;
      return;
    }
    // A request the server answers before reading it all (headers over node's 16 KiB limit, a
    // body over a size limit, or any early error when the client asked for `Connection: close`;
    // node also closes after a HEAD that came with a body) may be cut off with the connection,
    // the answer lost to the reset: that is fine, as long as the server is still there (runCase
    // checks). Other requests must get their answer.
    const headerBytes = r.path.length + Object.entries(r.headers).reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
    const bodyBytes = r.body?.length ?? 0;
    if (headerBytes > 15_000 || bodyBytes > 1024 * 1024 || (bodyBytes > 0 && (r.headers.connection === 'close' || r.method === 'HEAD'))) {
      f.tally.cut++;
      return;
    }
    throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
  }
  // A route counts as reached when its handler answered (not the not-found handler, nor a
  // framework refusal before routing: a bad path, a media type, a limit).
  const framework = a.status === 404 && a.body.includes('no such endpoint');
  if (plan.route && !framework && ![414, 415, 431].includes(a.status)) f.tally.routesHit.add(`${plan.port} ${plan.method} ${plan.route}`);
  if (process.env.REGCACHE_FUZZ_DEBUG) appendFileSync(process.env.REGCACHE_FUZZ_DEBUG, `${a.status} ${a.body.toString().slice(0, 120)} <- ${what.slice(0, 400)}\n`);
  assertAnswer(a, r.method, what, f.tally, plan);
  if (plan.port !== 'registry' || a.status !== 201) return;
  const digest = header(a.headers, 'docker-content-digest');
  const location = header(a.headers, 'location');
  if (r.method === 'PUT' && plan.route.endsWith('/manifests/:reference')) {
    // Accepted: the digest is that of the bytes sent, and those bytes are what is served.
    assert.ok(r.body, `${what}: a manifest accepted without a body`);
    const alg = digest?.split(':')[0] ?? 'sha256';
    assert.equal(digest, sha(alg, r.body!), `${what}: accepted under a digest that is not its bytes'`);
    // The reference the server saw: a client sends nothing from a `#` on, and a `?` starts the query.
    const ref = plan.params.reference!.value.split(/[#?]/)[0]!;
    if (ref.includes(':')) assert.equal(ref, digest, `${what}: accepted by digest ${ref} but stored as ${digest}`);
    await verifyServed(f, location, digest, what, r.body);
    f.tally.acceptedManifests++;
  } else if (plan.route.includes('/blobs/uploads/')) {
    const monolithic = r.method === 'POST' && !plan.query.includes('mount=');
    await verifyServed(f, location, digest, what, monolithic ? (r.body ?? Buffer.alloc(0)) : undefined);
    f.tally.acceptedBlobs++;
  }
}

async function runRaw(f: Fixture, plan: RawPlan): Promise<void> {
  const url = new URL(plan.port === 'registry' ? f.server.registryUrl : f.server.cacheUrl);
  const ex = await rawExchange(url.hostname, Number(url.port), plan.head, plan.body, { unterminated: UNTERMINATED.has(plan.kind), timeoutMs: 15_000 });
  const what = describePlan(plan, f.world);
  f.tally.raw++;
  f.tally.requests++;
  assert.ok(ex.closed, `${what}: the server held the connection 15 s after the client had finished`);
  for (const res of ex.responses) assertAnswer(res, 'GET', what, f.tally, plan);
  if (!plan.incomplete) assert.ok(ex.responses.length > 0, `${what}: no answer (${ex.error ?? 'closed'}; ${ex.trailing.toString('latin1').slice(0, 200)})`);
}

async function runCrossUpload(f: Fixture, plan: CrossUploadPlan): Promise<void> {
  const what = describePlan(plan, f.world);
  const reg = f.server.registryUrl;
  f.tally.crossUploads++;
  const post = await f.client.send(reg, 'POST', `/v2/${plan.owner}/blobs/uploads/`);
  assertAnswer(post, 'POST', what, f.tally);
  assert.equal(post.status, 202, `${what}: POST ${post.status}`);
  const id = header(post.headers, 'docker-upload-uuid')!;
  const chunk = Buffer.from(plan.chunk);
  if (chunk.length > 0) {
    const patch = await f.client.send(reg, 'PATCH', `/v2/${plan.owner}/blobs/uploads/${id}`, { 'content-type': 'application/octet-stream' }, chunk);
    assert.equal(patch.status, 202, `${what}: owner's PATCH ${patch.status}`);
  }
  const extra = Buffer.from(`intruder-${id}`);
  const whole = Buffer.concat([chunk, extra]);
  const digest = sha('sha256', whole);
  const intruderPath = `/v2/${renderPiece(plan.intruderName)}/blobs/uploads/${id}${plan.method === 'PUT' ? `?digest=${digest}` : ''}`;
  const withBody = plan.method === 'PATCH' || plan.method === 'PUT';
  const a = await f.client.send(reg, plan.method, intruderPath, withBody ? { 'content-type': 'application/octet-stream' } : {}, withBody ? extra : undefined);
  assertAnswer(a, plan.method, what, f.tally);
  assert.equal(a.status, 404, `${what}: the intruder got ${a.status} ${a.body.toString().slice(0, 200)}`);
  assert.equal((JSON.parse(a.body.toString()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'BLOB_UPLOAD_UNKNOWN');
  const status = await f.client.send(reg, 'GET', `/v2/${plan.owner}/blobs/uploads/${id}`);
  assert.equal(status.status, 204, `${what}: the owner's session is gone (${status.status})`);
  assert.equal(header(status.headers, 'range'), `0-${Math.max(0, chunk.length - 1)}`, `${what}: the owner's session changed`);
  if (plan.method === 'PUT') {
    const head = await f.client.send(reg, 'HEAD', `/v2/${plan.intruder}/blobs/${digest}`);
    assert.equal(head.status, 404, `${what}: the intruder's PUT made a blob`);
  }
  const del = await f.client.send(reg, 'DELETE', `/v2/${plan.owner}/blobs/uploads/${id}`);
  assert.equal(del.status, 204);
}

async function runUploadFlow(f: Fixture, plan: UploadFlowPlan): Promise<void> {
  const what = describePlan(plan, f.world);
  const reg = f.server.registryUrl;
  f.tally.uploadFlows++;
  const name = renderPiece({ value: plan.name, encoding: 'verbatim' });
  const post = await f.client.send(reg, 'POST', `/v2/${name}/blobs/uploads/`);
  assertAnswer(post, 'POST', what, f.tally);
  // A name the server refuses (or one with `?` or `#` in it, which ends the path) ends the case.
  if (post.status !== 202) return;
  const location = header(post.headers, 'location')!;
  const accepted: Buffer[] = [];
  let offset = 0;
  let allAccepted = true;
  for (const c of plan.chunks) {
    const data = Buffer.from(c.hex, 'hex');
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (c.range === 'correct') headers['content-range'] = `${offset}-${offset + data.length - 1}`;
    if (c.range === 'random') headers['content-range'] = `${c.start}-${c.end}`;
    const a = await f.client.send(reg, 'PATCH', location, headers, c.chunked ? Readable.from([data]) : data);
    assertAnswer(a, 'PATCH', what, f.tally);
    if (a.status === 202) {
      accepted.push(data);
      offset += data.length;
      assert.equal(header(a.headers, 'range'), `0-${Math.max(0, offset - 1)}`, `${what}: Range after a chunk`);
    } else {
      allAccepted = false;
      // A chunk is refused only for its range (a well-formed chunk that continues the upload is never refused).
      assert.ok(c.range === 'random' || data.length === 0, `${what}: a chunk that continues the upload was refused: ${a.status} ${a.body.toString().slice(0, 200)}`);
      assert.equal(a.status, 416, `${what}: ${a.status} ${a.body.toString().slice(0, 200)}`);
    }
  }
  const last = plan.last === null ? undefined : Buffer.from(plan.last, 'hex');
  const whole = Buffer.concat([...accepted, last ?? Buffer.alloc(0)]);
  const digest = {
    sha256: sha('sha256', whole),
    sha512: sha('sha512', whole),
    wrong: sha('sha256', Buffer.concat([whole, Buffer.from('x')])),
    upper: sha('sha256', whole).toUpperCase(),
    missing: undefined,
    garbage: 'sha256:../../x',
  }[plan.digest];
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
  if (plan.finalRange === 'correct' && last?.length) headers['content-range'] = `${offset}-${offset + last.length - 1}`;
  if (plan.finalRange === 'random') headers['content-range'] = `${plan.chunks[0]?.start ?? 0}-${plan.chunks[0]?.end ?? 0}`;
  const wellFormed = digest !== undefined && /^sha(256|512):[a-f0-9]+$/.test(digest);
  const before = wellFormed ? (await f.client.send(reg, 'HEAD', `/v2/${name}/blobs/${digest}`)).status : 0;
  const put = await f.client.send(reg, 'PUT', `${location}${location.includes('?') ? '&' : '?'}${digest === undefined ? '' : `digest=${encodeURIComponent(digest)}`}`, headers, last);
  assertAnswer(put, 'PUT', what, f.tally);
  const valid = plan.digest === 'sha256' || plan.digest === 'sha512';
  if (put.status === 201) {
    assert.ok(valid, `${what}: completed with digest ${digest}`);
    assert.equal(header(put.headers, 'docker-content-digest'), digest);
    await verifyServed(f, header(put.headers, 'location'), digest, what, whole);
    f.tally.acceptedBlobs++;
    return;
  }
  // Refused: only for a reason of the client's, and then no blob appeared under the digest.
  const rangeOk = plan.finalRange !== 'random' || (plan.chunks[0]?.start ?? 0) === offset;
  assert.ok(!valid || !rangeOk, `${what}: a valid upload was refused: ${put.status} ${put.body.toString().slice(0, 300)} (${allAccepted ? 'all' : 'not all'} chunks accepted)`);
  if (wellFormed && before !== 200) {
    const head = await f.client.send(reg, 'HEAD', `/v2/${name}/blobs/${digest}`);
    assert.notEqual(head.status, 200, `${what}: a refused upload made a blob`);
  }
}

async function runCase(f: Fixture, plan: Plan): Promise<void> {
  f.tally.cases++;
  try {
    if (plan.transport === 'raw') await runRaw(f, plan);
    else if (plan.transport === 'cross-upload') await runCrossUpload(f, plan);
    else if (plan.transport === 'upload-flow') await runUploadFlow(f, plan);
    else await runHttp(f, plan);
  } finally {
    assert.ok(f.server.alive(), `the server died: ${describePlan(plan, f.world)}\n${f.server.log().slice(-4000)}`);
  }
  if (f.tally.cases % 25 === 0) {
    for (const origin of [f.server.registryUrl, f.server.cacheUrl]) {
      const ping = await f.client.send(origin, 'GET', '/v2/');
      assert.equal(ping.status, 200, `GET /v2/ on ${origin} after ${describePlan(plan, f.world)}`);
    }
  }
}

/** Pushes the content some fuzz requests refer to (so that some of them can succeed). */
async function seedWorld(client: Client, registry: string, seed: number): Promise<World> {
  const det = (label: string, n: number) => {
    const out: Buffer[] = [];
    for (let i = 0; out.length * 32 < n; i++) out.push(createHash('sha256').update(`${seed}:${label}:${i}`).digest());
    return Buffer.concat(out).subarray(0, n);
  };
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', seed }));
  const contents = [
    { data: config, mediaType: 'application/vnd.oci.image.config.v1+json', alg: 'sha256' },
    { data: det('layer', 1024), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', alg: 'sha256' },
    { data: Buffer.alloc(0), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', alg: 'sha256' },
    { data: det('sha512-layer', 300), mediaType: 'application/vnd.oci.image.layer.v1.tar', alg: 'sha512' },
  ];
  const names = ['fuzz/owner', 'fuzz/base'];
  const blobs: World['blobs'] = [];
  for (const c of contents) {
    const digest = sha(c.alg, c.data);
    for (const name of names) {
      const r = await client.send(registry, 'POST', `/v2/${name}/blobs/uploads/?digest=${digest}`, { 'content-type': 'application/octet-stream' }, c.data);
      assert.equal(r.status, 201, r.body.toString());
    }
    blobs.push({ digest, size: c.data.length, mediaType: c.mediaType });
  }
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: blobs[0]!.mediaType, digest: blobs[0]!.digest, size: blobs[0]!.size }, layers: blobs.slice(1).map((b) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size })) }));
  for (const name of names) {
    const r = await client.send(registry, 'PUT', `/v2/${name}/manifests/v1`, { 'content-type': OCI_MANIFEST }, manifest);
    assert.equal(r.status, 201, r.body.toString());
  }
  const uploads: World['uploads'] = [];
  for (const repository of ['fuzz/owner', 'fuzz/owner', 'fuzz/owner', 'fuzz/other', 'fuzz/other', 'fuzz/base']) {
    const r = await client.send(registry, 'POST', `/v2/${repository}/blobs/uploads/`);
    assert.equal(r.status, 202);
    const id = header(r.headers, 'docker-upload-uuid')!;
    if (uploads.length % 2 === 0) await client.send(registry, 'PATCH', `/v2/${repository}/blobs/uploads/${id}`, {}, det(id, 100));
    uploads.push({ id, repository });
  }
  return { blobs, manifest: { digest: sha('sha256', manifest), size: manifest.length, tag: 'v1' }, names, uploads };
}

/**
 * Files of the runtime itself, which Node, V8, libuv and glibc may read at any moment (not only
 * at start), whatever the requests: each is a fixed path no request can influence.
 * - /etc/localtime and the zone file it links to under /usr/share/zoneinfo (and readlink() of
 *   each component on the way: ICU resolves the link): V8 loads the time zone the first time a
 *   date is formatted in local time;
 * - /sys/devices/system/cpu/{online,possible}: glibc's CPU count (libuv's thread pool, os.cpus);
 * - /proc/sys/vm/overcommit_memory: glibc's malloc reads it when it creates an arena for a thread;
 * - /proc/version_signature: libuv (Node 24) reads the kernel's version before it uses io_uring;
 * - /sys/devices/system/cpu/cpu0/tsc_freq_khz: V8 (Node 24) reads the TSC frequency for its clock;
 * - /proc/self, /proc/thread-self and /proc/<pid> (cgroup, maps, status, stat ...), /proc/meminfo
 *   and /sys/fs/cgroup: V8 and libuv size the heap from the memory and cgroup limits;
 * - /proc/sys/kernel/random/boot_id, /proc/self/ns/pid and /proc/self (a readlink): the storage
 *   lock's owner record (boot, PID namespace, PID), read at start and at each lease renewal.
 */
function runtimeFile(p: string): boolean {
  return (
    p === '/etc/localtime' ||
    p === '/etc' ||
    p === '/usr' ||
    p === '/usr/share' ||
    isUnder(p, '/usr/share/zoneinfo') ||
    p === '/sys/devices/system/cpu/online' ||
    p === '/sys/devices/system/cpu/possible' ||
    p === '/proc/sys/vm/overcommit_memory' ||
    p === '/proc/version_signature' ||
    p === '/sys/devices/system/cpu/cpu0/tsc_freq_khz' ||
    p === '/proc/meminfo' ||
    p === '/proc/sys/kernel/random/boot_id' ||
    p === '/proc/self/ns/pid' ||
    p === '/proc/self' ||
    /^\/proc\/(self|thread-self|\d+)(\/task\/\d+)?\/(cgroup|maps|exe|status|stat|statm|fd|mountinfo|limits|smaps_rollup)$/.test(p) ||
    isUnder(p, '/sys/fs/cgroup')
  );
}

/**
 * Files the server process may touch once, while it starts, besides its storage root and the
 * runtime's files above, each for a reason:
 * - its own program: the node binary (exec, /proc/self/exe), the bundle dist/cli.js, the route
 *   probe this test preloads, the package.json files Node's ESM loader reads to learn the module
 *   type (dist/package.json, package.json), and the directories above them (Node's realpath
 *   lstat()s each ancestor of a module it loads);
 * - the dynamic loader: /etc/ld.so.preload, /etc/ld.so.cache and shared libraries (*.so*) under
 *   /lib, /lib64, /usr/lib, /usr/lib64 (libc, libstdc++ ... that node links);
 * - OpenSSL, which Node initialises at start: its config (openssl.cnf under /etc/ssl,
 *   /usr/lib/ssl or /usr/local/ssl) and the system CA bundle (/etc/ssl/certs/...);
 * - the resolver configuration c-ares reads when Node starts (/etc/resolv.conf, /etc/nsswitch.conf,
 *   /etc/hosts, /etc/host.conf, /etc/netsvc.conf, /etc/svc.conf, /etc/gai.conf);
 * - /dev/null (Node opens it for stdin when spawned with stdin ignored);
 * - from the test's directory only what the command line names: the ready file (and its temp
 *   file, renamed into place) and $HOME/.docker/config.json (the cache's documented source of
 *   upstream credentials; HOME is the test dir);
 * - the ancestors of the storage root (mkdir -p of the root).
 */
function startupFiles(opts: { storage: string; testDir: string; nodeBinary: string[]; project: string }): (path: string) => boolean {
  const exact = new Set<string>([
    ...opts.nodeBinary,
    DIST_CLI,
    ROUTE_PROBE,
    join(opts.project, 'dist', 'package.json'),
    join(opts.project, 'package.json'),
    join(opts.testDir, 'ready.json'),
    join(opts.testDir, 'ready.json.tmp'),
    join(opts.testDir, '.docker', 'config.json'),
    '/etc/ld.so.preload',
    '/etc/ld.so.cache',
    '/etc/resolv.conf',
    '/etc/nsswitch.conf',
    '/etc/hosts',
    '/etc/host.conf',
    '/etc/netsvc.conf',
    '/etc/svc.conf',
    '/etc/gai.conf',
    '/dev/null',
  ]);
  for (const file of [DIST_CLI, ROUTE_PROBE, ...opts.nodeBinary, opts.storage]) {
    for (let d = file; d !== '/'; d = d.slice(0, d.lastIndexOf('/')) || '/') exact.add(d);
  }
  return (p: string) =>
    exact.has(p) ||
    /^\/(usr\/)?lib(64)?\/.+\.so(\.[0-9.]+)?$/.test(p) ||
    /^\/(etc\/ssl|usr\/lib\/ssl|usr\/local\/ssl)\/(openssl\.cnf|certs\/[^/]+)$/.test(p);
}

test('fuzz: hostile requests to every route of both ports', { skip: skipUnless(['strace']), timeout: LONG ? 3_600_000 : 300_000 }, async (t) => {
  const dir = await tempDir('rc-fuzz-', t);
  const project = await realpath(join(DIST_CLI, '..', '..'));
  const straceFile = join(dir.path, 'strace.txt');
  const registryPort = await freePort();
  const server = await startServerChild(dir.path, {
    registryPort,
    straceFile,
    probeRoutes: true,
    args: ['--upstream', `docker.io=http://127.0.0.1:${registryPort}`],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir.path },
  });
  t.after(() => server.stop());
  const tally: Tally = { cases: 0, requests: 0, byStatus: new Map(), byCode: new Map(), routesHit: new Set(), acceptedManifests: 0, acceptedBlobs: 0, raw: 0, crossUploads: 0, uploadFlows: 0, unsendable: 0, cut: 0, justified: new Map() };
  const client = new Client(tally);
  t.after(() => client.close());

  // fastify's route list: the whole API on both ports (and the cache port's statistics).
  const list = (rs: Array<{ method: string; url: string }>) => new Set(rs.map((r) => `${r.method} ${r.url}`));
  const reg = list(server.routes.registry);
  const cache = list(server.routes.cache);
  for (const r of ['GET /v2/', 'PUT /v2/:name/manifests/:reference', 'PATCH /v2/:name/blobs/uploads/:id', 'GET /v2/:name/referrers/:digest']) assert.ok(reg.has(r) && cache.has(r), r);
  assert.ok(cache.has('GET /_regcache/stats') && cache.has('GET /metrics'));
  t.diagnostic(`routes: ${reg.size} on the registry port, ${cache.size} on the cache port`);

  const fsInfo = await statfs(server.storage);
  freeBytes = fsInfo.bavail * fsInfo.bsize;
  const world = await seedWorld(client, server.registryUrl, SEED);
  const f: Fixture = { server, world, client, tally };
  // Markers: requests whose only file access names a unique repository, so that the trace shows
  // where the fuzz run begins and ends.
  const begin = `fuzz-begin-${randomBytes(6).toString('hex')}`;
  const end = `fuzz-end-${randomBytes(6).toString('hex')}`;
  assert.equal((await client.send(server.registryUrl, 'GET', `/v2/${begin}/tags/list`)).status, 404);

  console.log(`fuzz seed ${SEED}: ${RUNS} cases (replay: REGCACHE_SEED=${SEED})`);
  t.diagnostic(`seed ${SEED} (replay with REGCACHE_SEED=${SEED}), ${RUNS} cases`);
  const started = Date.now();
  const outcome = await fc.check(fc.asyncProperty(fuzzCases(world, server.routes), (plan) => runCase(f, plan)), {
    numRuns: RUNS,
    seed: SEED,
    endOnFailure: !process.env.REGCACHE_FUZZ_SHRINK,
    ...(process.env.REGCACHE_FUZZ_PATH ? { path: process.env.REGCACHE_FUZZ_PATH } : {}),
  });
  if (outcome.failed) {
    // fast-check's own report prints the plan whole (megabytes of padding): describe it instead.
    const plan = outcome.counterexample?.[0];
    const cause = outcome.errorInstance as Error | undefined;
    const logged = server.log().split('\n').filter((l) => /"level":(50|60)/.test(l)).slice(-3).join('\n').slice(-6000);
    assert.fail(
      `case ${outcome.numRuns} of seed ${SEED} failed (replay: REGCACHE_SEED=${SEED} REGCACHE_FUZZ_PATH=${outcome.counterexamplePath}): ${plan ? describePlan(plan, world) : '?'}\n${cause?.stack ?? String(cause)}\nserver errors:\n${logged}`,
    );
  }
  const elapsed = Date.now() - started;
  assert.equal((await client.send(server.registryUrl, 'GET', `/v2/${end}/tags/list`)).status, 404);
  await client.close();

  const exit = await server.stop();
  assert.equal(exit.code, 0, `the server did not exit cleanly: ${JSON.stringify(exit)}\n${server.log().slice(-4000)}`);

  // The log: no request failed on the server's side (a 500 is logged at error level); each
  // justified 5xx (a full disk's 507) is one warning.
  const lines = server.log().split('\n');
  const errors = lines.filter((l) => /"level":(50|60)/.test(l));
  assert.deepEqual(errors, [], 'errors in the server log');
  const justifiedCount = [...tally.justified.values()].reduce((a, b) => a + b, 0);
  const justifiedLogged = lines.filter((l) => JUSTIFIED.some((j) => j.log.test(l))).length;
  assert.equal(justifiedLogged, justifiedCount, 'every justified 5xx answer is logged once, as a warning');

  // Every route of both ports was reached by requests its handler answered.
  const all = [...server.routes.registry.map((r) => `registry ${r.method} ${r.url}`), ...server.routes.cache.map((r) => `cache ${r.method} ${r.url}`)];
  const missed = all.filter((r) => !tally.routesHit.has(r));
  if (RUNS >= 1000) assert.deepEqual(missed, [], 'routes whose handler no case reached');

  // Files: the whole run against the allowlist, and the fuzz window against the storage root alone.
  const calls = parseFileTrace(await readFile(straceFile, 'utf8'), dir.path);
  const storage = await realpath(server.storage);
  const nodeBinary = [...new Set([process.execPath, await realpath(process.execPath)])];
  const startup = startupFiles({ storage, testDir: dir.path, nodeBinary, project });
  const offending = calls.filter((c) => c.paths.some((p) => !isUnder(p, storage) && !runtimeFile(p) && !startup(p))).map((c) => c.line.slice(0, 300));
  assert.deepEqual(offending, [], 'files touched outside the storage root and the allowlist');
  const from = calls.findIndex((c) => c.raw.some((p) => p.includes(begin)));
  const to = calls.findIndex((c) => c.raw.some((p) => p.includes(end)));
  assert.ok(from >= 0 && to > from, 'the markers are in the trace');
  const window = calls.slice(from, to + 1);
  const escaped = window.filter((c) => c.paths.some((p) => !isUnder(p, storage) && !runtimeFile(p))).map((c) => c.line.slice(0, 300));
  assert.deepEqual(escaped, [], 'files touched outside the storage root (and the runtime files) while fuzzed');
  const runtimeInWindow = new Set(window.flatMap((c) => c.paths.filter((p) => !isUnder(p, storage))));
  // No path was ever spelled with dot segments (the layout builds every path normalized).
  const dotted = window.filter((c) => c.raw.some((p) => /(^|\/)\.\.?(\/|$)/.test(p))).map((c) => c.line.slice(0, 300));
  assert.deepEqual(dotted, [], 'paths with dot segments');

  const statuses = [...tally.byStatus].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}:${n}`).join(' ');
  const codes = [...tally.byCode].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c}:${n}`).join(' ');
  const summary = `fuzz seed ${SEED}: ${tally.cases} cases, ${tally.requests} requests in ${(elapsed / 1000).toFixed(1)} s; ${tally.raw} raw, ${tally.crossUploads} cross-repository uploads, ${tally.uploadFlows} chunked uploads, ${tally.unsendable} refused by undici, ${tally.cut} cut off by the server (over a limit); accepted ${tally.acceptedManifests} manifests and ${tally.acceptedBlobs} blobs (all verified); routes hit ${all.length - missed.length}/${all.length}; statuses ${statuses}; codes ${codes}; justified 5xx: ${[...tally.justified].map(([r, n]) => `${n}× ${r}`).join(', ') || 'none'}; file syscalls traced ${calls.length} (${window.length} while fuzzed), all under the storage root or allowed (while fuzzed, outside the storage root only: ${[...runtimeInWindow].join(', ') || 'nothing'})`;
  console.log(summary);
  t.diagnostic(summary);
  assert.ok(tally.unsendable < tally.cases * 0.1, `too many cases undici refused to send: ${tally.unsendable}`);
});


