// Many upload sessions at once against the real server process, three rounds of: 500 concurrent
// POSTs, then 500 PATCHes held open at the same time (each has sent part of its chunk and waits
// for the others), then 500 completions. Every answer is right; while all 500 bodies are open the
// server still answers other requests; file descriptors come back to where they were (no leak: the
// data file of a session is open only while a request writes to it) and the peak RSS levels off
// after the first rounds (the bytes are on disk, nothing is kept per session).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { Rng, type ServeHandle, mib, procUsage, seedFromEnv, sha256, startServe, stopServe } from '../helpers/crash.js';
import { tempDir, waitFor } from '../helpers/proc.js';

const SESSIONS = 500;
const CHUNK = 64 * 1024;

test(`${SESSIONS} concurrent upload sessions: all answered, other requests served meanwhile, descriptors come back, the peak memory levels off from round to round`, { timeout: 180_000 }, async (t) => {
  const seed = seedFromEnv();
  console.log(`limits-upload-sessions seed ${seed} (replay: REGCACHE_SEED=${seed})`);
  const rng = new Rng(seed);
  const dir = await tempDir('rc-limits-sessions-', t);
  let server: ServeHandle | undefined;
  t.after(async () => {
    if (server) await stopServe(server).catch(() => {});
  });
  server = await startServe({ storage: join(dir.path, 'storage'), dir: dir.path, logLevel: 'fatal' });
  const base = server.registry;
  const pid = server.pid;
  const agent = new Agent({ connections: SESSIONS + 10, pipelining: 1 });
  const warm = await request(`${base}/v2/`, { dispatcher: agent });
  await warm.body.dump();
  const before = procUsage(pid);

  /** One round: 500 sessions opened at once, 500 PATCHes held open together, 500 completions. */
  const round = async (agent: Agent) => {
    const posts = await Promise.all(Array.from({ length: SESSIONS }, () =>
      request(`${base}/v2/limits/many/blobs/uploads/`, { method: 'POST', dispatcher: agent, headers: { 'content-length': '0' } }).then(async (r) => {
        await r.body.dump();
        return { status: r.statusCode, location: String(r.headers.location) };
      })));
    assert.deepEqual([...new Set(posts.map((p) => p.status))], [202]);
    assert.equal(new Set(posts.map((p) => p.location)).size, SESSIONS, 'every session has its own id');
    const opened = procUsage(pid);

    // 500 PATCHes whose bodies stay open until all of them have started.
    const blobs = posts.map(() => rng.bytes(CHUNK));
    let started = 0;
    let release!: () => void;
    const allStarted = new Promise<void>((resolve) => (release = resolve));
    async function* held(data: Buffer): AsyncGenerator<Buffer> {
      yield data.subarray(0, 1024);
      if (++started === SESSIONS) release();
      await allStarted;
      yield data.subarray(1024);
    }
    const patches = posts.map((p, i) =>
      request(`${base}${p.location}`, { method: 'PATCH', dispatcher: agent, body: Readable.from(held(blobs[i]!)), headers: { 'content-range': `0-${CHUNK - 1}`, 'content-length': String(CHUNK) } }).then(async (r) => {
        await r.body.dump();
        return { status: r.statusCode, range: r.headers.range };
      }));
    await allStarted;
    await waitFor(() => procUsage(pid).fds >= before.fds + SESSIONS, { what: `${SESSIONS} connections open at the server`, timeoutMs: 20_000 });
    const busy = procUsage(pid);
    const side = await request(`${base}/v2/`, { dispatcher: new Agent() });
    await side.body.dump();
    assert.equal(side.statusCode, 200, 'the server answers others with 500 upload bodies open');
    const done = await Promise.all(patches);
    assert.deepEqual([...new Set(done.map((d) => d.status))], [202]);
    assert.deepEqual([...new Set(done.map((d) => d.range))], [`0-${CHUNK - 1}`]);

    const puts = await Promise.all(posts.map((p, i) =>
      request(`${base}${p.location}?digest=${sha256(blobs[i]!)}`, { method: 'PUT', dispatcher: agent, headers: { 'content-length': '0' } }).then(async (r) => {
        await r.body.dump();
        return r.statusCode;
      })));
    assert.deepEqual([...new Set(puts)], [201]);
    return { opened, busy, end: procUsage(pid) };
  };

  const first = await round(agent);
  const second = await round(agent);
  const third = await round(agent);
  await agent.close();
  const after = await waitFor(() => {
    const u = procUsage(pid);
    return u.fds <= before.fds + 5 ? u : undefined;
  }, { what: 'file descriptors to come back once the clients are gone', timeoutMs: 20_000 });
  const summary = `${SESSIONS} sessions, three rounds: fds ${before.fds} -> ${first.busy.fds} with ${SESSIONS} bodies open -> ${after.fds} (limit ${before.fdLimit}); ` +
    `peak RSS ${mib(before.hwm)} -> ${mib(first.opened.hwm)} after ${SESSIONS} POSTs -> ${mib(first.busy.hwm)} with the bodies open -> ${mib(first.end.hwm)} after the first round -> ${mib(second.end.hwm)} after the second -> ${mib(third.end.hwm)} after the third; RSS now ${mib(after.rss)}`;
  console.log(`limits-upload-sessions (node ${process.version}): ${summary}`);
  t.diagnostic(summary);
  // The first rounds size the heap; then the peak levels off (nothing is kept per session).
  // With V8's young generation capped at 8 MB, the heap sometimes finishes sizing only in the
  // third round: its growth was 0-32.3 MiB in seven full runs on Node 20 and 24 (once over 24).
  // 48 MiB still fails a leak of about 100 KiB per session.
  assert.ok(third.end.hwm - second.end.hwm < 48 * 1024 * 1024, `the third round of ${SESSIONS} sessions grew the peak RSS by ${mib(third.end.hwm - second.end.hwm)}`);
  assert.ok(after.hwm < 320 * 1024 * 1024, `peak RSS ${mib(after.hwm)}`);
});
