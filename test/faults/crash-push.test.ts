// Crash safety of pushes: the real server (dist/cli.js) is SIGKILLed at random points while
// clients push blobs (monolithic POST ?digest=, POST then PUT, chunked PATCH...PUT), manifests
// and tags, and moves a tag back and forth; then it is restarted on the same storage and every
// invariant is checked: blobs hash to their names, records are whole, tags lead to complete
// manifests, every push that got its 201 is all there, incomplete uploads are gone or resumable
// (status answers 204 with the bytes on disk, and completing with the rest gives the digest),
// and tmp/ is empty after the startup scan.
//
// Kill points are chosen by a seeded PRNG (the seed is printed; REGCACHE_SEED=<n> replays), by
// time and by byte counts: after N bytes of all blob bodies, after N bytes of a given chunk, or
// just after a manifest PUT went out, so they land inside blob writes and metadata writes.
// 16 kill points in `npm test`, 160 under REGCACHE_LONG=1.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { CLI, KillSwitch, LONG, Rng, type ServeHandle, type StorageReport, type VerifiedCache, checkStorage, kill9, seedFromEnv, sha256, slicedBody, startServe, stopServe } from '../helpers/crash.js';
import { tempDir } from '../helpers/proc.js';

const KILLS = Number(process.env.REGCACHE_CRASH_KILLS ?? (LONG ? 160 : 16));
const SEED = seedFromEnv();
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const MOVING = { repo: 'crash/moving', tag: 'latest' };

interface Blob {
  digest: string;
  data: Buffer;
}

interface Image {
  repo: string;
  tag: string;
  manifest: Buffer;
  digest: string;
  blobs: Blob[];
}

/** A chunked upload the client knows the whole content of, with the bytes it saw acknowledged. */
interface ClientSession {
  repo: string;
  blob: Blob;
  acked: number;
}

/** What the clients know across restarts. */
class Knowledge {
  /** Blobs whose push got a 201: `repo\0digest`. */
  readonly blobs = new Map<string, Blob & { repo: string }>();
  readonly images: Image[] = [];
  readonly sessions = new Map<string, ClientSession>();
  /** The moving tag: its last acknowledged value and values sent since without an answer. */
  movingAcked: string | undefined;
  readonly movingPending = new Set<string>();
  completedResumes = 0;
  goneSessions = 0;
}

/** Counters of one cycle's kill, for the summary. */
const killKinds = new Map<string, number>();

/** How a blob is pushed, decided before the cycle runs. */
interface BlobPush {
  blob: Blob;
  method: 'mono' | 'post-put' | 'chunked';
  /** chunked: the [start, end) of each PATCH, then what the closing PUT carries. */
  patches: Array<readonly [number, number]>;
}

interface ImagePlan {
  repo: string;
  tag: string;
  pushes: BlobPush[];
}

/** A cycle's whole workload, drawn before it runs so that kill points can be drawn inside it. */
interface CyclePlan {
  images: ImagePlan[];
  moves: number;
  unfinished?: { blob: Blob; end: number };
}

type KillPlan =
  | { kind: 'time'; ms: number }
  | { kind: 'bytes'; n: number }
  | { kind: 'chunk'; patch: number; offset: number }
  | { kind: 'manifest'; index: number; delayMs: number };

function planBlobPush(rng: Rng, blob: Blob): BlobPush {
  const method = rng.pick(['mono', 'post-put', 'chunked'] as const);
  if (method !== 'chunked') return { blob, method, patches: [] };
  const size = blob.data.byteLength;
  const cuts = [...new Set(Array.from({ length: rng.int(1, 3) }, () => rng.int(1, size)))].filter((x) => x < size).sort((a, b) => a - b);
  const bounds = [0, ...cuts, size];
  const chunks = bounds.slice(1).map((end, i) => [bounds[i]!, end] as const);
  // Half the time the last chunk travels in the closing PUT.
  return { blob, method, patches: rng.chance(0.5) && chunks.length > 1 ? chunks.slice(0, -1) : chunks };
}

function planCycle(rng: Rng, know: Knowledge): CyclePlan {
  const known = [...know.blobs.values()];
  const images = Array.from({ length: rng.int(1, 2) }, (): ImagePlan => ({
    repo: `crash/r${rng.int(0, 3)}`,
    tag: `t${rng.int(0, 1e9).toString(36)}`,
    pushes: Array.from({ length: rng.int(1, 3) }, () => planBlobPush(rng, known.length > 0 && rng.chance(0.15) ? rng.pick(known) : newBlob(rng))),
  }));
  const moves = rng.int(1, 3);
  if (!rng.chance(0.6)) return { images, moves };
  const blob = newBlob(rng);
  return { images, moves, unfinished: { blob, end: rng.int(1, blob.data.byteLength) } };
}

/** Draws a kill point inside the planned workload: by time, by blob bytes, inside a PATCH, or just after a manifest PUT. */
function planKill(rng: Rng, plan: CyclePlan, typicalMs: number): KillPlan {
  const pushes = plan.images.flatMap((i) => i.pushes);
  const blobBytes = pushes.reduce((n, p) => n + p.blob.data.byteLength, 0) + (plan.unfinished?.end ?? 0);
  const patches = pushes.flatMap((p) => p.patches);
  if (plan.unfinished) patches.push([0, plan.unfinished.end]);
  const manifests = plan.images.length + plan.moves;
  const r = rng.next();
  if (r < 0.25) return { kind: 'time', ms: rng.int(0, Math.ceil(typicalMs)) };
  if (r < 0.6 || (r < 0.8 && patches.length === 0)) return { kind: 'bytes', n: rng.int(0, Math.max(0, blobBytes - 1)) };
  if (r < 0.8) {
    const patch = rng.int(0, patches.length - 1);
    const [start, end] = patches[patch]!;
    return { kind: 'chunk', patch, offset: rng.int(0, end - start - 1) };
  }
  return { kind: 'manifest', index: rng.int(0, manifests - 1), delayMs: rng.int(0, 3) };
}

class Cycle {
  readonly problems: string[] = [];
  blobBytesSent = 0;
  patchIndex = 0;
  manifestIndex = 0;

  constructor(
    readonly rng: Rng,
    readonly server: ServeHandle,
    readonly kill: KillSwitch,
    readonly agent: Agent,
    readonly know: Knowledge,
    readonly plan: KillPlan,
  ) {
    if (plan.kind === 'time') kill.after(plan.ms, `${plan.ms} ms into the cycle`);
  }

  /** A client saw something wrong: always a failure if the server answered, else only before the kill. */
  fail(what: string, answered: boolean): void {
    if (answered || !this.kill.fired) this.problems.push(what);
  }

  blobProgress(sent: number, delta: { last: number }): void {
    this.blobBytesSent += sent - delta.last;
    delta.last = sent;
    if (this.plan.kind === 'bytes' && this.blobBytesSent >= this.plan.n) this.kill.fire(`after ${this.blobBytesSent} blob bytes sent`);
  }

  body(data: Buffer, patch?: number): AsyncGenerator<Buffer> {
    const delta = { last: 0 };
    return slicedBody(data, (sent) => {
      this.blobProgress(sent, delta);
      if (patch !== undefined && this.plan.kind === 'chunk' && this.plan.patch === patch && sent >= Math.min(this.plan.offset, data.length)) {
        this.kill.fire(`PATCH #${patch} after ${sent} of its ${data.length} bytes`);
      }
    });
  }

  async call(method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, opts: { body?: Buffer | AsyncGenerator<Buffer>; headers?: Record<string, string> } = {}) {
    const body = opts.body === undefined || Buffer.isBuffer(opts.body) ? opts.body : Readable.from(opts.body, { highWaterMark: 1 });
    const res = await request(url.startsWith('http') ? url : `${this.server.registry}${url}`, { method, dispatcher: this.agent, body, headers: opts.headers });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, text };
  }
}

function newBlob(rng: Rng): Blob {
  const size = rng.chance(0.5) ? rng.int(1, 64 * 1024) : rng.int(64 * 1024, 768 * 1024);
  const data = rng.bytes(size);
  return { digest: sha256(data), data };
}

function manifestOf(blobs: Blob[], rng: Rng): Buffer {
  const d = (b: Blob, mediaType: string) => ({ mediaType, digest: b.digest, size: b.data.byteLength });
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: d(blobs[0]!, 'application/vnd.oci.image.config.v1+json'),
    layers: blobs.slice(1).map((b) => d(b, 'application/vnd.oci.image.layer.v1.tar')),
    annotations: { nonce: String(rng.int(0, 1e9)) },
  }));
}

/** Pushes one blob as planned; true on its 201. */
async function pushBlob(c: Cycle, repo: string, p: BlobPush): Promise<boolean> {
  const { blob, method } = p;
  const len = { 'content-length': String(blob.data.byteLength), 'content-type': 'application/octet-stream' };
  if (method === 'mono') {
    const r = await c.call('POST', `/v2/${repo}/blobs/uploads/?digest=${blob.digest}`, { body: c.body(blob.data), headers: len });
    if (r.status !== 201) return (c.fail(`mono POST ${blob.digest}: ${r.status} ${r.text}`, true), false);
    return true;
  }
  const post = await c.call('POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'content-length': '0' } });
  if (post.status !== 202) return (c.fail(`POST upload: ${post.status} ${post.text}`, true), false);
  const location = String(post.headers.location);
  const id = location.split('/').pop()!;
  if (method === 'post-put') {
    const put = await c.call('PUT', `${location}?digest=${blob.digest}`, { body: c.body(blob.data), headers: len });
    if (put.status !== 201) return (c.fail(`PUT upload ${blob.digest}: ${put.status} ${put.text}`, true), false);
    return true;
  }
  const session: ClientSession = { repo, blob, acked: 0 };
  c.know.sessions.set(id, session);
  for (const [start, end] of p.patches) {
    const part = blob.data.subarray(start, end);
    const r = await c.call('PATCH', location, {
      body: c.body(part, c.patchIndex++),
      headers: { 'content-range': `${start}-${end - 1}`, 'content-length': String(part.byteLength), 'content-type': 'application/octet-stream' },
    });
    if (r.status !== 202) return (c.fail(`PATCH ${start}-${end - 1}: ${r.status} ${r.text}`, true), false);
    if (r.headers.range !== `0-${end - 1}`) c.fail(`PATCH ${start}-${end - 1}: Range ${String(r.headers.range)}`, true);
    session.acked = end;
  }
  const rest = blob.data.subarray(session.acked);
  const put = await c.call('PUT', `${location}?digest=${blob.digest}`, rest.byteLength > 0
    ? { body: c.body(rest), headers: { 'content-length': String(rest.byteLength), 'content-type': 'application/octet-stream' } }
    : { headers: { 'content-length': '0' } });
  if (put.status !== 201) return (c.fail(`PUT chunked ${blob.digest}: ${put.status} ${put.text}`, true), false);
  c.know.sessions.delete(id);
  return true;
}

async function putManifest(c: Cycle, repo: string, reference: string, body: Buffer): Promise<number> {
  const index = c.manifestIndex++;
  const plan = c.plan;
  if (plan.kind === 'manifest' && plan.index === index) setTimeout(() => c.kill.fire(`${plan.delayMs} ms after manifest PUT #${index} went out`), plan.delayMs);
  const r = await c.call('PUT', `/v2/${repo}/manifests/${reference}`, { body, headers: { 'content-type': OCI_MANIFEST } });
  if (r.status !== 201) c.fail(`PUT manifest ${repo}:${reference}: ${r.status} ${r.text}`, true);
  return r.status;
}

/** Lane 1: images of fresh and reused blobs, each blob by its method, then the manifest by tag. */
async function imagesLane(c: Cycle, images: ImagePlan[]): Promise<void> {
  for (const img of images) {
    for (const p of img.pushes) {
      if (!(await pushBlob(c, img.repo, p))) return;
      c.know.blobs.set(`${img.repo}\0${p.blob.digest}`, { ...p.blob, repo: img.repo });
    }
    const blobs = img.pushes.map((p) => p.blob);
    const manifest = manifestOf(blobs, c.rng);
    if ((await putManifest(c, img.repo, img.tag, manifest)) !== 201) return;
    c.know.images.push({ repo: img.repo, tag: img.tag, manifest, digest: sha256(manifest), blobs });
  }
}

/** Lane 2: moves one tag between acknowledged images (the manifest PUT mounts their blobs). */
async function movingLane(c: Cycle, moves: number): Promise<void> {
  for (let i = 0; i < moves && c.know.images.length > 0; i++) {
    const img = c.rng.pick(c.know.images);
    c.know.movingPending.add(img.digest);
    if ((await putManifest(c, MOVING.repo, MOVING.tag, img.manifest)) !== 201) return;
    c.know.movingAcked = img.digest;
    c.know.movingPending.clear();
    await sleep(c.rng.int(0, 20));
  }
}

/** Lane 3: a chunked upload left unfinished, to be resumed after the restart. */
async function unfinishedLane(c: Cycle, u: { blob: Blob; end: number }): Promise<void> {
  const repo = 'crash/resume';
  const post = await c.call('POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'content-length': '0' } });
  if (post.status !== 202) return c.fail(`POST upload: ${post.status} ${post.text}`, true);
  const location = String(post.headers.location);
  const session: ClientSession = { repo, blob: u.blob, acked: 0 };
  c.know.sessions.set(location.split('/').pop()!, session);
  const part = u.blob.data.subarray(0, u.end);
  const r = await c.call('PATCH', location, { body: c.body(part, c.patchIndex++), headers: { 'content-range': `0-${u.end - 1}`, 'content-length': String(u.end) } });
  if (r.status !== 202) return c.fail(`PATCH 0-${u.end - 1}: ${r.status} ${r.text}`, true);
  session.acked = u.end;
}

/** Runs a lane; a transport error is expected once the server was killed, a problem before. */
async function lane(c: Cycle, name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    c.fail(`${name}: ${(err as Error).message} (${(err as NodeJS.ErrnoException).code ?? ''})`, false);
  }
}

/** After a restart: every invariant on disk and over HTTP; resumes or removes the sessions left. */
async function verifyAfterRestart(server: ServeHandle, know: Knowledge, verified: VerifiedCache): Promise<{ report: StorageReport; problems: string[] }> {
  const report = await checkStorage(server.storage, verified, { expectEmptyTmp: true });
  const problems = [...report.problems];
  const lock = await readlink(join(server.storage, 'lock'));
  if (lock.split(' ')[0] !== String(server.pid)) problems.push(`lock holds ${lock}, server is ${server.pid}`);
  const agent = new Agent({ connections: 4 });
  const get = async (method: 'GET' | 'HEAD' | 'PUT' | 'DELETE', path: string, o: { body?: Buffer; headers?: Record<string, string> } = {}) => {
    const res = await request(`${server.registry}${path}`, { method, dispatcher: agent, ...o });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body };
  };
  try {
    for (const img of know.images) {
      const m = await get('GET', `/v2/${img.repo}/manifests/${img.tag}`, { headers: { accept: OCI_MANIFEST } });
      if (m.status !== 200 || !m.body.equals(img.manifest)) problems.push(`acknowledged image ${img.repo}:${img.tag}: GET manifest ${m.status}${m.status === 200 ? ', other bytes' : ''}`);
      if (!report.blobs.has(img.digest)) problems.push(`acknowledged image ${img.repo}:${img.tag}: manifest blob ${img.digest} missing`);
    }
    for (const b of know.blobs.values()) {
      if (report.blobs.get(b.digest) !== b.data.byteLength) problems.push(`acknowledged blob ${b.digest}: not on disk whole`);
      const h = await get('HEAD', `/v2/${b.repo}/blobs/${b.digest}`);
      if (h.status !== 200 || h.headers['content-length'] !== String(b.data.byteLength)) problems.push(`acknowledged blob ${b.repo}@${b.digest}: HEAD ${h.status}`);
    }
    const moving = await get('HEAD', `/v2/${MOVING.repo}/manifests/${MOVING.tag}`, { headers: { accept: OCI_MANIFEST } });
    const now = moving.status === 200 ? String(moving.headers['docker-content-digest']) : undefined;
    const allowed = new Set([know.movingAcked, ...know.movingPending]);
    if (!allowed.has(now)) problems.push(`${MOVING.repo}:${MOVING.tag} is ${now}, expected one of ${[...allowed].join(', ')}`);
    know.movingAcked = now;
    know.movingPending.clear();

    // Upload sessions on disk: their status says what is on disk; the ones the client knows are completed.
    const onDisk = new Map(report.uploads.map((u) => [u.id, u]));
    for (const u of report.uploads) {
      if (!u.repository || u.size === undefined) continue;
      const s = await get('GET', `/v2/${u.repository}/blobs/uploads/${u.id}`);
      const range = `0-${Math.max(0, u.size - 1)}`;
      if (s.status !== 204 || s.headers.range !== range) problems.push(`upload ${u.id}: status ${s.status} Range ${String(s.headers.range)}, ${u.size} bytes on disk`);
      const mine = know.sessions.get(u.id);
      if (!mine) {
        const d = await get('DELETE', `/v2/${u.repository}/blobs/uploads/${u.id}`);
        if (d.status !== 204) problems.push(`DELETE upload ${u.id}: ${d.status}`);
        continue;
      }
      if (u.size < mine.acked) problems.push(`upload ${u.id}: ${u.size} bytes on disk, ${mine.acked} were acknowledged`);
      if (!mine.blob.data.subarray(0, u.size).equals(await readFile(join(server.storage, 'uploads', u.id, 'data')))) {
        problems.push(`upload ${u.id}: the bytes on disk are not a prefix of what was sent`);
      }
      const rest = mine.blob.data.subarray(u.size);
      const put = await get('PUT', `/v2/${u.repository}/blobs/uploads/${u.id}?digest=${mine.blob.digest}`, { body: rest, headers: { 'content-length': String(rest.byteLength) } });
      if (put.status !== 201) problems.push(`completing upload ${u.id} with its last ${rest.byteLength} bytes: ${put.status} ${put.body.toString().slice(0, 200)}`);
      else {
        know.blobs.set(`${u.repository}\0${mine.blob.digest}`, { ...mine.blob, repo: u.repository });
        know.completedResumes++;
      }
      know.sessions.delete(u.id);
    }
    for (const [id, mine] of know.sessions) {
      if (onDisk.has(id)) continue;
      const s = await get('GET', `/v2/${mine.repo}/blobs/uploads/${id}`);
      if (s.status !== 404 || !s.body.toString().includes('BLOB_UPLOAD_UNKNOWN')) problems.push(`upload ${id}, gone from disk, answers ${s.status}`);
      know.goneSessions++;
      know.sessions.delete(id);
    }
  } finally {
    await agent.close();
  }
  return { report, problems };
}

test(`kill -9 during pushes, chunked uploads and tag updates: ${KILLS} kill points, then everything acknowledged is there`, { timeout: LONG ? 1_800_000 : 120_000 }, async (t) => {
  assert.ok(existsSync(CLI), 'dist/cli.js is built');
  console.log(`crash-push seed ${SEED}: ${KILLS} kill points (replay: REGCACHE_SEED=${SEED})`);
  t.diagnostic(`seed ${SEED} (replay with REGCACHE_SEED=${SEED})`);
  const rng = new Rng(SEED);
  const dir = await tempDir('rc-crash-push-', t);
  const storage = join(dir.path, 'storage');
  const know = new Knowledge();
  const verified: VerifiedCache = new Map();
  let server = await startServe({ storage, dir: dir.path });
  t.after(() => stopServe(server).catch(() => {}));
  let blobsSeen = 0;
  // How long a cycle's workload takes when nothing interrupts it (a running estimate), for timed kills.
  let typicalMs = 60;
  for (let k = 0; k < KILLS; k++) {
    const cycleRng = rng.fork();
    const plan = planCycle(cycleRng, know);
    const killPlan = planKill(cycleRng, plan, typicalMs);
    const kill = new KillSwitch(server.pid);
    const agent = new Agent({ connections: 8 });
    const c = new Cycle(cycleRng, server, kill, agent, know, killPlan);
    const started = Date.now();
    const lanes = [lane(c, 'images', () => imagesLane(c, plan.images)), lane(c, 'moving tag', () => movingLane(c, plan.moves))];
    if (plan.unfinished) lanes.push(lane(c, 'unfinished upload', () => unfinishedLane(c, plan.unfinished!)));
    await Promise.all(lanes);
    if (!kill.fired) typicalMs = 0.7 * typicalMs + 0.3 * (Date.now() - started);
    kill.fire('after the cycle finished');
    await kill9(server);
    await agent.destroy();
    const kind = kill.where === 'after the cycle finished' ? 'idle' : killPlan.kind;
    killKinds.set(kind, (killKinds.get(kind) ?? 0) + 1);
    const where = `kill point ${k + 1}/${KILLS} (${killPlan.kind}: ${kill.where}; seed ${SEED})`;
    assert.deepEqual(c.problems, [], `before ${where}`);

    server = await startServe({ storage, dir: dir.path });
    const { report, problems } = await verifyAfterRestart(server, know, verified);
    assert.deepEqual(problems, [], `after ${where}`);
    blobsSeen = report.blobs.size;
  }
  await stopServe(server);
  // A clean stop leaves a clean store too.
  const final = await checkStorage(storage, verified);
  assert.deepEqual(final.problems, []);
  assert.deepEqual(final.tmpEntries, []);
  const summary = `crash-push seed ${SEED}: survived ${KILLS} kill points (${[...killKinds].map(([k, n]) => `${k} ${n}`).join(', ')}); ` +
    `${know.images.length} images and ${know.blobs.size} blobs acknowledged and intact, ${know.completedResumes} interrupted uploads resumed, ` +
    `${know.goneSessions} gone, ${blobsSeen} blob files verified`;
  console.log(summary);
  t.diagnostic(summary);
});
