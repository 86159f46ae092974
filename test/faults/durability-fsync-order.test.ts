// Durability order, read from the system calls the server makes: a kill -9 cannot test it (the
// page cache survives a killed process), so the server runs under
// `strace -f -e trace=fsync,fdatasync,rename,renameat,renameat2,openat,mkdir,mkdirat` (-f follows
// libuv's threadpool threads, which do the file work) while a client pushes blobs three ways
// (monolithic POST ?digest=, POST then PUT, chunked PATCHes then PUT), a manifest under a tag, and
// then moves the tag to a second manifest. From the trace (fds mapped to paths by the openat that
// returned them): for every file published under blobs/, repositories/ and cache/ (blobs, layer
// links, manifest revisions, tags) an fsync of the file's own fd completes before the rename that
// publishes it, and an fsync of the target directory follows the rename; every directory created
// on the way has its parent fsynced before anything is published into it.
//
// libuv may submit file operations through io_uring, which strace cannot see: UV_USE_IO_URING=0
// keeps them on the threadpool as plain syscalls (the order the program asks for is the same).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { Rng, seedFromEnv, sha256, startServe, stopServe } from '../helpers/crash.js';
import { tempDir } from '../helpers/proc.js';
import { skipUnless, toolPath } from '../helpers/tools.js';

const SYSCALLS = 'fsync,fdatasync,rename,renameat,renameat2,openat,mkdir,mkdirat';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** One completed system call from the trace. */
interface Call {
  pid: number;
  name: string;
  args: string;
  ret: string;
  /** Line index where it started and where it returned (equal unless strace split it). */
  start: number;
  end: number;
}

/** Parses `strace -f` output, joining `<unfinished ...>` / `<... resumed>` halves per thread. */
function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  const pending = new Map<number, { name: string; head: string; start: number }>();
  text.split('\n').forEach((line, i) => {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m) return;
    const pid = Number(m[1]);
    const rest = m[2]!;
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(rest);
    if (resumed) {
      const p = pending.get(pid);
      pending.delete(pid);
      if (!p) return;
      const full = `${p.head}${resumed[2]}`;
      const r = /^(.*)\)\s+=\s+(.*)$/.exec(full);
      if (r) calls.push({ pid, name: p.name, args: r[1]!, ret: r[2]!, start: p.start, end: i });
      return;
    }
    const unfinished = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest);
    if (unfinished) {
      pending.set(pid, { name: unfinished[1]!, head: unfinished[2]!, start: i });
      return;
    }
    const done = /^(\w+)\((.*)\)\s+=\s+(.*)$/.exec(rest);
    if (done) calls.push({ pid, name: done[1]!, args: done[2]!, ret: done[3]!, start: i, end: i });
  });
  return calls.sort((a, b) => a.end - b.end);
}

/** The quoted strings among a call's arguments (paths), unescaped enough for plain paths. */
function paths(args: string): string[] {
  return [...args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1'));
}

const ok = (c: Call) => /^\d+/.test(c.ret) && !c.ret.startsWith('-');

/** Every fsync with the path its fd was opened with (the latest openat returning that fd before it). */
function fsyncsWithPaths(calls: Call[]): Array<{ path: string | undefined; call: Call }> {
  const opens = calls.filter((c) => c.name === 'openat' && ok(c)).map((c) => ({ fd: Number.parseInt(c.ret, 10), path: paths(c.args)[0]!, end: c.end }));
  return calls
    .filter((c) => (c.name === 'fsync' || c.name === 'fdatasync') && c.ret.startsWith('0'))
    .map((call) => {
      const fd = Number.parseInt(call.args, 10);
      let path: string | undefined;
      for (const o of opens) {
        if (o.end >= call.start) break;
        if (o.fd === fd) path = o.path;
      }
      return { path, call };
    });
}

interface Published {
  from: string;
  to: string;
  rename: Call;
  syncedBefore?: Call;
  dirSyncedAfter?: Call;
}

test('durability order under strace: data fsynced before the rename that publishes it, the directory fsynced after, new directories synced into their parents', { skip: skipUnless(['strace']), timeout: 120_000 }, async (t) => {
  const seed = seedFromEnv();
  console.log(`durability seed ${seed} (replay: REGCACHE_SEED=${seed})`);
  const rng = new Rng(seed);
  const dir = await tempDir('rc-durability-', t);
  const storage = join(dir.path, 'storage');
  const traceFile = join(dir.path, 'trace');
  const server = await startServe({
    storage,
    dir: dir.path,
    wrapper: [toolPath('strace'), '-f', '-qq', '-s', '4096', '-e', `trace=${SYSCALLS}`, '-o', traceFile],
    env: { UV_USE_IO_URING: '0' },
  });
  t.after(() => stopServe(server).catch(() => {}));

  // The push: three blobs, three ways; a manifest by tag; the tag moved to a second manifest.
  const repo = `durable/r${rng.int(0, 1e6)}`;
  const blobs = [rng.bytes(200), rng.bytes(300 * 1024), rng.bytes(700 * 1024)].map((data) => ({ data, digest: sha256(data) }));
  const call = async (method: 'POST' | 'PUT' | 'PATCH', path: string, body?: Buffer, headers: Record<string, string> = {}) => {
    const url = path.startsWith('http') ? path : `${server.registry}${path}`;
    const res = await request(url, { method, body, headers: { 'content-length': String(body?.byteLength ?? 0), ...headers } });
    await res.body.dump();
    return res;
  };
  const [config, layer1, layer2] = blobs as [(typeof blobs)[0], (typeof blobs)[0], (typeof blobs)[0]];
  assert.equal((await call('POST', `/v2/${repo}/blobs/uploads/?digest=${config.digest}`, config.data)).statusCode, 201);
  const post = await call('POST', `/v2/${repo}/blobs/uploads/`);
  assert.equal((await call('PUT', `${server.registry}${post.headers.location}?digest=${layer1.digest}`, layer1.data)).statusCode, 201);
  const chunked = await call('POST', `/v2/${repo}/blobs/uploads/`);
  const loc = `${server.registry}${chunked.headers.location}`;
  const half = Math.floor(layer2.data.byteLength / 2);
  assert.equal((await call('PATCH', loc, layer2.data.subarray(0, half), { 'content-range': `0-${half - 1}` })).statusCode, 202);
  assert.equal((await call('PATCH', loc, layer2.data.subarray(half), { 'content-range': `${half}-${layer2.data.byteLength - 1}` })).statusCode, 202);
  assert.equal((await call('PUT', `${loc}?digest=${layer2.digest}`)).statusCode, 201);
  const manifests = [0, 1].map((n) => Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.data.byteLength },
    layers: (n === 0 ? [layer1] : [layer1, layer2]).map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l.digest, size: l.data.byteLength })),
  })));
  for (const m of manifests) assert.equal((await call('PUT', `/v2/${repo}/manifests/v1`, m, { 'content-type': OCI_MANIFEST })).statusCode, 201);
  await stopServe(server);

  const calls = parseTrace(await readFile(traceFile, 'utf8'));
  const fsyncs = fsyncsWithPaths(calls);
  const published: Published[] = calls
    .filter((c) => c.name.startsWith('rename') && ok(c))
    .map((rename) => {
      const p = paths(rename.args);
      return { from: p[0]!, to: p[p.length - 1]!, rename };
    })
    .filter((p) => ['blobs', 'repositories', 'cache'].some((top) => p.to.startsWith(`${storage}/${top}/`)));
  for (const p of published) {
    p.syncedBefore = fsyncs.filter((f) => f.path === p.from && f.call.end < p.rename.start).pop()?.call;
    p.dirSyncedAfter = fsyncs.find((f) => f.path === dirname(p.to) && f.call.start > p.rename.end)?.call;
  }

  // What the push must have published, each checked by name.
  const r = join(storage, 'repositories', repo);
  const blobFile = (d: string) => join(storage, 'blobs', 'sha256', d.slice(7, 9), d.slice(7));
  const expected = [
    ...blobs.map((b) => ({ what: `blob ${b.digest} (${b.data.byteLength} bytes)`, to: blobFile(b.digest) })),
    ...manifests.map((m) => ({ what: `manifest blob ${sha256(m)}`, to: blobFile(sha256(m)) })),
    ...blobs.map((b) => ({ what: `layer link ${b.digest}`, to: join(r, '_layers', 'sha256', b.digest.slice(7)) })),
    ...manifests.map((m) => ({ what: `manifest revision ${sha256(m)}`, to: join(r, '_manifests', 'sha256', sha256(m).slice(7)) })),
    { what: 'tag v1 (written twice)', to: join(r, '_tags', 'v1') },
  ];
  const lines: string[] = [];
  for (const e of expected) {
    const ps = published.filter((p) => p.to === e.to);
    assert.ok(ps.length > 0, `no rename published the ${e.what} at ${e.to}`);
    for (const p of ps) {
      assert.ok(p.syncedBefore, `${e.what}: no fsync of ${p.from} before its rename (line ${p.rename.start + 1})`);
      assert.ok(p.dirSyncedAfter, `${e.what}: no fsync of ${dirname(p.to)} after its rename (line ${p.rename.end + 1})`);
      lines.push(`${e.what}: fsync(${p.from.slice(storage.length + 1)}) line ${p.syncedBefore.end + 1} < rename line ${p.rename.start + 1} < fsync(dir) line ${p.dirSyncedAfter.start + 1}`);
    }
  }
  // The monolithic blob went through tmp/, the others were completed from their upload session's data file.
  assert.match(published.find((p) => p.to === blobFile(config.digest))!.from, /\/tmp\//);
  for (const b of [layer1, layer2]) assert.match(published.find((p) => p.to === blobFile(b.digest))!.from, /\/uploads\/[0-9a-f-]+\/data$/);

  // And every other publication the server made (the startup's probe image included).
  for (const p of published) {
    assert.ok(p.syncedBefore, `${p.to}: no fsync of ${p.from} before its rename`);
    assert.ok(p.dirSyncedAfter, `${p.to}: no fsync of its directory after its rename`);
  }
  // Directories created under the published trees: their parent is fsynced after the mkdir and
  // before anything is renamed into them (upload session directories are not a durability promise).
  const mkdirs = calls.filter((c) => c.name.startsWith('mkdir') && ok(c)).map((c) => ({ path: paths(c.args)[0]!, call: c }))
    .filter((m) => ['blobs', 'repositories', 'cache'].some((top) => m.path.startsWith(`${storage}/${top}/`)));
  for (const m of mkdirs) {
    const firstUse = published.find((p) => p.to.startsWith(`${m.path}/`) && p.rename.end > m.call.end);
    const parentSync = fsyncs.find((f) => f.path === dirname(m.path) && f.call.start > m.call.end);
    assert.ok(parentSync, `directory ${m.path}: its parent is never fsynced after the mkdir`);
    if (firstUse) assert.ok(parentSync.call.end < firstUse.rename.start, `directory ${m.path}: parent fsynced (line ${parentSync.call.end + 1}) only after ${firstUse.to} was renamed into it (line ${firstUse.rename.start + 1})`);
  }
  const summary = `durability: ${published.length} renames into blobs/, repositories/ and cache/, each after an fsync of its file and followed by an fsync of its directory; ${mkdirs.length} new directories synced into their parents`;
  console.log([summary, ...lines].join('\n  '));
  t.diagnostic(summary);
});
