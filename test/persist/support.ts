// Shared pieces of the persistence scenarios (test/persist/*.test.ts): a job of the real bundled
// Action (dist/main.js, then pulls through the cache port, then dist/post.js) on a fresh
// simulated runner (its own dir: RUNNER_TEMP, so the storage dir, and GITHUB_WORKSPACE), with
// the environment a runner gives a job that has an Actions cache service: the local stand-in
// of test/helpers/actions-cache-service.ts (bytes in azurite). A job reports what the
// scenarios assert on: its steps, what the upstream's access log and the stand-in's records
// gained meanwhile, and the summary's "GitHub Actions cache" section.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ActionsJob, type StepResult, sandboxInputs } from '../helpers/actions-runner.js';
import type {
  ActionsCacheService,
  BlobRequestRecord,
  CacheEntryRecord,
  RequestRecord,
  RunnerEnvOptions,
  TwirpRequestRecord,
} from '../helpers/actions-cache-service.js';
import { TWIRP_PREFIX, type ActionsCacheServiceOptions, startActionsCacheService } from '../helpers/actions-cache-service.js';
import { type AccessLogEntry, type Distribution, startDistribution } from '../helpers/distribution.js';
import { type TempDir, tempDir } from '../helpers/proc.js';
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, type Blob, type TestImage, fetchBytes, sha256 } from '../helpers/upstream-images.js';
import { busyboxRootfsTar } from '../helpers/rootfs.js';
import { parseSummary } from '../helpers/summary-markdown.js';

// ---------------------------------------------------------------------------------------------
// Records

/** Twirp calls of `method`. */
export function twirpCalls(requests: readonly RequestRecord[], method: string): TwirpRequestRecord[] {
  return requests.filter((r): r is TwirpRequestRecord => r.kind === 'twirp' && r.method === method);
}

/** The `key` of a Twirp call's request. */
export function keyOf(r: TwirpRequestRecord): string {
  return (r.request as { key: string }).key;
}

export const isPackKey = (key: string) => /-pack-[0-9a-f]{40}$/.test(key);
export const isIndexKey = (key: string) => key.includes('-index-');

/** Lookups (GetCacheEntryDownloadURL) of `key`, and whether each found it. */
export function lookupsOf(requests: readonly RequestRecord[], key: string): Array<{ hit: boolean }> {
  return twirpCalls(requests, 'GetCacheEntryDownloadURL')
    .filter((r) => keyOf(r) === key)
    .map((r) => ({ hit: (r.response as { ok?: boolean } | undefined)?.ok === true }));
}

/** Entry downloads (GetBlob of an entry's blob), by entry. */
export function downloadsOf(requests: readonly RequestRecord[], entries: readonly CacheEntryRecord[]): CacheEntryRecord[] {
  const byBlob = new Map(entries.map((e) => [`actions-cache/${e.blobName}`, e]));
  const out: CacheEntryRecord[] = [];
  for (const r of requests) {
    if (r.kind !== 'blob' || (r as BlobRequestRecord).op !== 'GetBlob') continue;
    const e = byBlob.get((r as BlobRequestRecord).blob);
    if (e) out.push(e);
  }
  return out;
}

/** Upstream blob GETs (digests) in an access log slice. */
export function blobGets(log: readonly AccessLogEntry[]): string[] {
  return log.filter((e) => e.method === 'GET' && /\/blobs\/sha256:[0-9a-f]{64}$/.test(e.path)).map((e) => e.path.slice(e.path.lastIndexOf('/') + 1));
}

/** The items of the summary's "GitHub Actions cache" section, label -> value (markdown as written). */
export function persistenceRows(summary: string): Record<string, string> {
  return parseSummary(summary).items;
}

/**
 * The job summary's row for an image pulled through the cache (`library/x` or `x` for Docker
 * Hub's, as docker names them), as the reader sees its cells: image, tags, digest, bytes from,
 * size, from upstream.
 */
export function imageRow(summary: string, repository: string): string[] {
  const name = repository.replace(/^library\//, '');
  const row = parseSummary(summary).tables[0]?.rows.find((r) => r[0] === name);
  assert.ok(row, `summary has a row for ${name}:\n${summary}`);
  return row;
}

/** Asserts a step exited 0 without ::error:: lines. */
export function assertStepOk(step: StepResult, what: string): void {
  const detail = `\nstdout:\n${step.stdout}\nstderr:\n${step.stderr}`;
  assert.equal(step.code, 0, `${what} exits 0${detail}`);
  assert.deepEqual(step.errors, [], `${what}: no ::error::${detail}`);
}

// ---------------------------------------------------------------------------------------------
// Images

/** Pulls images over HTTP through the cache port; every manifest and blob is checked against its digest. */
export async function pullThroughCache(cacheUrl: string, images: Array<{ name: string; reference: string; image: TestImage }>): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const { name, reference, image } of images) {
    const m = await fetchBytes(`${cacheUrl}/v2/${name}/manifests/${reference}`, { headers: { accept: image.mediaType } });
    assert.equal(m.status, 200, `manifest ${name}:${reference}: ${m.status} ${m.body.toString('utf8').slice(0, 300)}`);
    assert.equal(sha256(m.body), image.digest, `manifest ${name}:${reference} is the upstream's`);
    for (const b of image.blobs) {
      const r = await fetchBytes(`${cacheUrl}/v2/${name}/blobs/${b.digest}`);
      assert.equal(r.status, 200, `blob ${b.digest} of ${name}: ${r.status} ${r.body.toString('utf8').slice(0, 300)}`);
      assert.equal(sha256(r.body), b.digest, `blob ${b.digest} of ${name}: the bytes the client got hash to their digest`);
      out.set(b.digest, r.body);
    }
  }
  return out;
}

/** A one-file ustar archive (what a layer that adds one file is). */
function oneFileTar(name: string, data: Buffer): Buffer {
  const h = Buffer.alloc(512);
  const octal = (value: number, offset: number, width: number) => h.write(value.toString(8).padStart(width - 1, '0') + '\0', offset, width, 'ascii');
  h.write(name, 0, 100, 'utf8');
  octal(0o644, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(data.length, 124, 12);
  octal(0, 136, 12);
  h.write(' '.repeat(8), 148, 8, 'ascii');
  h.write('0', 156, 1, 'ascii');
  h.write('ustar\0' + '00', 257, 8, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return Buffer.concat([h, data, Buffer.alloc((512 - (data.length % 512)) % 512), Buffer.alloc(1024)]);
}

function blobOf(data: Buffer, mediaType: string): Blob {
  return { digest: sha256(data), size: data.byteLength, data, mediaType };
}

/**
 * An image docker can pull and run: the busybox rootfs plus `extra` layers each adding one
 * file of random bytes (so every call gives new digests but the busybox layer).
 */
export async function dockerImage(extra = 3, fileSize = 16 * 1024): Promise<TestImage> {
  const tars = [await busyboxRootfsTar(), ...Array.from({ length: extra }, (_, i) => oneFileTar(`data-${i}-${randomBytes(4).toString('hex')}.bin`, randomBytes(fileSize)))];
  const layers = tars.map((t) => blobOf(gzipSync(t), OCI_LAYER));
  const diffIds = tars.map((t) => `sha256:${createHash('sha256').update(t).digest('hex')}`);
  const config = blobOf(
    Buffer.from(JSON.stringify({
      architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      os: 'linux',
      config: { Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
    })),
    OCI_CONFIG,
  );
  const d = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: d(config), layers: layers.map(d) }));
  return { manifest, digest: sha256(manifest), mediaType: OCI_MANIFEST, config, layers, blobs: [config, ...layers] };
}

/** Total bytes of blobs. */
export const bytesOf = (blobs: readonly Blob[]) => blobs.reduce((a, b) => a + b.size, 0);

// ---------------------------------------------------------------------------------------------
// Jobs

/** What a scenario starts from: a temp dir, the Actions cache stand-in and an upstream distribution, all gone after the test. */
export async function persistWorld(t: TestContext, service: ActionsCacheServiceOptions = {}): Promise<{ dir: TempDir; svc: ActionsCacheService; upstream: Distribution }> {
  const dir = await tempDir('rc-persist-', t);
  const svc = await startActionsCacheService(service);
  t.after(() => svc.stop());
  const upstream = await startDistribution();
  t.after(() => upstream.stop());
  return { dir, svc, upstream };
}

/** How a job is set up. */
export interface JobOptions {
  svc: ActionsCacheService;
  upstream: Distribution;
  /** Scratch dir of this job: its workspace, RUNNER_TEMP (storage, server files) and home. */
  dir: string;
  /** The job's identity for the cache service (ref, run id, attempt, job). */
  runner?: Omit<RunnerEnvOptions, 'workspace' | 'runnerTemp'>;
  /** Inputs on top of the sandbox's (save, ...). */
  inputs?: Record<string, string>;
  /** The matrix context (the `matrix` input's default is `${{ toJSON(matrix) }}`). */
  matrix?: Record<string, unknown>;
  /** Extra step environment. */
  env?: Record<string, string | undefined>;
  /** Written to GITHUB_EVENT_PATH (save: auto reads the repository's default branch from it). */
  event?: unknown;
  /** Node binary of the steps (default: this process's). */
  node?: string;
}

/** What a finished job did. */
export interface JobRun {
  job: ActionsJob;
  main: StepResult;
  post: StepResult;
  /** Requests the upstream answered from main to the end of post. */
  upstream: AccessLogEntry[];
  /** Requests the cache service answered meanwhile (other jobs' too, when jobs overlap). */
  requests: RequestRecord[];
  /** Requests the cache service answered during post (this job's alone, unless posts overlap). */
  postRequests: RequestRecord[];
  /** Entries created during post (accepted CreateCacheEntry), as they are after it. */
  created: CacheEntryRecord[];
  /** The summary's "GitHub Actions cache" rows. */
  persistence: Record<string, string>;
  mainMs: number;
  postMs: number;
}

/** A job between main and post. */
export interface StartedJob {
  job: ActionsJob;
  main: StepResult;
  cacheUrl: string;
  mainMs: number;
  /** Runs post and collects what the job did. */
  finish(): Promise<JobRun>;
}

/** Runs main of a job on a fresh runner; post runs on `finish()`. */
export async function startJob(t: TestContext, o: JobOptions): Promise<StartedJob> {
  const job = new ActionsJob(o.dir, { ...(o.node ? { node: o.node } : {}), ...(o.matrix ? { matrix: o.matrix } : {}) });
  t.after(() => job.stopLeftoverServer());
  await mkdir(o.dir, { recursive: true });
  const env: Record<string, string | undefined> = { ...o.svc.env({ ...o.runner, workspace: job.workspace, runnerTemp: job.runnerTemp }) };
  if (o.event !== undefined) {
    const path = join(o.dir, 'event.json');
    await writeFile(path, JSON.stringify(o.event));
    env.GITHUB_EVENT_PATH = path;
  }
  Object.assign(env, o.env);
  const inputs = {
    ...sandboxInputs(o.dir),
    upstreams: `docker.io=${o.upstream.url}`,
    'configure-docker': 'false',
    'configure-containerd': 'false',
    // The scenarios pin down restores on demand (what a client asks for, when it asks);
    // the background prefetch, the Action's default, has its own test (prefetch.test.ts).
    prefetch: 'false',
    ...o.inputs,
  };
  const upstreamBefore = (await o.upstream.accessLog()).length;
  const before = o.svc.records();
  const t0 = Date.now();
  const main = await job.main({ inputs, env });
  const mainMs = Date.now() - t0;
  assertStepOk(main, 'main');
  const cacheUrl = main.outputs['cache-url'];
  assert.ok(cacheUrl, `main set cache-url\n${main.stdout}`);
  return {
    job,
    main,
    cacheUrl,
    mainMs,
    async finish() {
      const beforePost = o.svc.records();
      const t1 = Date.now();
      const post = await job.post({ inputs, env });
      const postMs = Date.now() - t1;
      assertStepOk(post, 'post');
      const after = o.svc.records();
      const known = new Set(beforePost.entries.map((e) => e.id));
      return {
        job,
        main,
        post,
        upstream: (await o.upstream.accessLog()).slice(upstreamBefore),
        requests: after.requests.slice(before.requests.length),
        postRequests: after.requests.slice(beforePost.requests.length),
        created: after.entries.filter((e) => !known.has(e.id)),
        persistence: persistenceRows(post.summary),
        mainMs,
        postMs,
      };
    },
  };
}

/** main, `work(cacheUrl)`, post. */
export async function runJob(t: TestContext, o: JobOptions, work: (cacheUrl: string) => Promise<unknown> = async () => {}): Promise<JobRun> {
  const started = await startJob(t, o);
  await work(started.cacheUrl);
  return started.finish();
}

/** The server's statistics (written when post stopped it). */
export async function serverStats(run: { job: ActionsJob }): Promise<{ extras: { persist?: Record<string, unknown> } }> {
  return JSON.parse(await readFile(join(run.job.runnerTemp, 'regcache', 'stats.json'), 'utf8'));
}

/** The index main restored and the server imported. */
export async function restoredIndex(run: { job: ActionsJob }): Promise<{ packs: Record<string, { digests: string[]; size: number }> }> {
  return JSON.parse(await readFile(join(run.job.runnerTemp, 'regcache', 'persist-index.json'), 'utf8'));
}

/** Finalized entries created by a job whose key is a pack's / an index's. */
export function createdPacks(run: JobRun): CacheEntryRecord[] {
  return run.created.filter((e) => isPackKey(e.key) && e.state === 'finalized');
}
export function createdIndexes(run: JobRun): CacheEntryRecord[] {
  return run.created.filter((e) => isIndexKey(e.key) && e.state === 'finalized');
}

/**
 * Checks the summary's persistence numbers against the stand-in's records: packs saved and the
 * index entry against the entries the job created, packs restored against the pack entries it
 * downloaded.
 */
export function assertSummaryMatchesRecords(run: JobRun, svc: ActionsCacheService): void {
  const rows = run.persistence;
  const packs = createdPacks(run);
  const indexes = createdIndexes(run);
  const saved = rows.Saved;
  if (saved !== undefined && !saved.startsWith('nothing')) {
    assert.match(saved, new RegExp(`^${packs.length} new packs? `), `"Saved" counts the pack entries created (${packs.map((e) => e.key).join(', ')}): ${saved}`);
    if (indexes.length === 1) assert.equal(rows['Index entry'], `\`${indexes[0]!.key}\``, 'the index entry named is the one created');
    else assert.equal(indexes.length, 0, 'at most one index entry per job');
    if (indexes.length === 0) assert.ok(!rows['Index entry']?.startsWith('`'), `no index entry created, none named: ${rows['Index entry']}`);
  } else {
    assert.equal(packs.length + indexes.length, 0, 'a job that saves nothing creates no entry');
  }
  const restoredRow = rows['Packs restored'];
  if (restoredRow !== undefined) {
    const packEntries = svc.records().entries.filter((e) => isPackKey(e.key));
    const downloaded = new Set(downloadsOf(run.requests, packEntries).map((e) => e.key));
    const m = /^(\d+) packs? \((\d+) blobs?/.exec(restoredRow);
    assert.ok(m, restoredRow);
    const broken = Number(/(\d+) broken/.exec(restoredRow)?.[1] ?? 0);
    assert.equal(Number(m[1]) + broken, downloaded.size, `packs restored (+ broken) = pack entries downloaded: ${restoredRow}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Writing entries behind the client's back

/**
 * Creates entry `key` with `version` holding `archive` through the service's protocol (as a
 * job on the default branch would), e.g. a crafted pack. The key must be free (evict it first).
 */
export async function putEntry(svc: ActionsCacheService, key: string, version: string, archive: Buffer): Promise<void> {
  const twirp = async (method: string, body: unknown) => {
    const res = await fetch(new URL(`${TWIRP_PREFIX}${method}`, svc.url), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${svc.token}` },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as Record<string, unknown>;
    assert.equal(res.status, 200, `${method}: ${JSON.stringify(json)}`);
    assert.equal(json.ok, true, `${method}: ${JSON.stringify(json)}`);
    return json;
  };
  const created = await twirp('CreateCacheEntry', { key, version });
  const put = await fetch(String(created.signed_upload_url), {
    method: 'PUT',
    headers: { 'x-ms-blob-type': 'BlockBlob', 'Content-Type': 'application/octet-stream' },
    body: new Uint8Array(archive),
  });
  assert.equal(put.status, 201, `PUT entry: ${await put.text()}`);
  await twirp('FinalizeCacheEntryUpload', { key, version, size_bytes: String(archive.length) });
}
