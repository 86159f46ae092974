// A request whose body is refused part-way (a chunked manifest past 4 MiB) is answered while
// the client is still sending (a client reading as it writes has the 413 before its body is
// done), and the rest of the body is read and discarded: a client that finishes writing before
// it reads gets the 413 envelope, not a failed write or a reset that threw the answer away, and
// in both cases the connection then carries its next request.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { startRegcache } from '../helpers/regcache.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** Writes `data`, resolving once the kernel took it (rejecting on a closed connection). */
function write(socket: Socket, data: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => socket.write(data, (err) => (err ? reject(err) : resolve())));
}

/** Resolves with the next whole answer (headers and a Content-Length body) read from `socket`. */
function nextAnswer(socket: Socket): Promise<{ status: number; head: string; body: string }> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const onData = (c: Buffer) => {
      got = Buffer.concat([got, c]);
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = got.subarray(0, end).toString('latin1');
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (got.byteLength < end + 4 + length) return;
      socket.off('data', onData);
      resolve({ status: Number(head.split(' ')[1]), head, body: got.subarray(end + 4, end + 4 + length).toString('utf8') });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`connection closed; read so far: ${got.toString('latin1').slice(0, 300)}`)));
  });
}

/** The request line and headers of a chunked manifest PUT. */
function chunkedPut(host: string): string {
  return `PUT /v2/drain/app/manifests/big HTTP/1.1\r\nHost: ${host}\r\nContent-Type: ${OCI_MANIFEST}\r\nTransfer-Encoding: chunked\r\n\r\n`;
}

/** One 1 MiB chunk of a chunked body. */
const MIB_CHUNK = Buffer.concat([Buffer.from(`${(1024 * 1024).toString(16)}\r\n`), Buffer.alloc(1024 * 1024, 0x7b), Buffer.from('\r\n')]);

test('a chunked manifest refused past 4 MiB is answered while the client is still sending: a client reading as it writes has the 413 before its body is done', async (t) => {
  const rc = await startRegcache({ logLevel: 'fatal' }, t);
  const url = new URL(rc.url);
  const socket = connect(Number(url.port), url.hostname);
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  let answeredAfter: number | undefined;
  let sent = 0;
  const answer = nextAnswer(socket).then((a) => {
    answeredAfter = sent;
    return a;
  });
  await write(socket, chunkedPut(url.host));
  // Up to 64 MiB, one MiB at a time, stopping once the answer is in: each write waits until the
  // kernel took the chunk, which needs the server to go on reading, so it stops at the answer
  // unless the server answers only after the whole body.
  const TOTAL = 64;
  while (sent < TOTAL && answeredAfter === undefined) {
    await write(socket, MIB_CHUNK);
    sent++;
  }
  const refused = await answer;
  assert.equal(refused.status, 413, refused.head);
  assert.equal((JSON.parse(refused.body) as { errors: Array<{ code: string }> }).errors[0]?.code, 'SIZE_INVALID');
  assert.ok(answeredAfter !== undefined && answeredAfter < TOTAL, `the 413 arrived after ${answeredAfter ?? TOTAL} of ${TOTAL} MiB were sent: not while the client was still sending`);
  assert.ok(answeredAfter >= 4, `answered after ${answeredAfter} MiB: before the body passed the limit`);
  // The client finishes its body; the rest is read and discarded, and the connection goes on.
  await write(socket, '0\r\n\r\n');
  const next = nextAnswer(socket);
  await write(socket, `GET /v2/ HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
  assert.equal((await next).status, 200);
});

test('a chunked manifest refused past 4 MiB: a client that goes on sending, then reads, gets the 413 and keeps the connection', async (t) => {
  const rc = await startRegcache({ logLevel: 'fatal' }, t);
  const url = new URL(rc.url);
  const socket = connect(Number(url.port), url.hostname);
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  socket.pause();
  // Chunked: the server learns the body is too large only by reading it (with a Content-Length
  // it answers before reading anything, and node drains the body).
  await write(socket, `PUT /v2/drain/app/manifests/big HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: ${OCI_MANIFEST}\r\nTransfer-Encoding: chunked\r\n\r\n`);
  const chunk = Buffer.concat([Buffer.from(`${(1024 * 1024).toString(16)}\r\n`), Buffer.alloc(1024 * 1024, 0x7b), Buffer.from('\r\n')]);
  // 8 MiB, past the limit: the server answers meanwhile (unread here yet).
  for (let i = 0; i < 8; i++) await write(socket, chunk);
  await sleep(300);
  // The client goes on sending the body, as Go's and undici's clients do, and reads only then.
  for (let i = 8; i < 24; i++) await write(socket, chunk);
  await write(socket, '0\r\n\r\n');
  const answer = nextAnswer(socket);
  socket.resume();
  const refused = await answer;
  assert.equal(refused.status, 413, refused.head);
  assert.equal((JSON.parse(refused.body) as { errors: Array<{ code: string }> }).errors[0]?.code, 'SIZE_INVALID');
  // The rest of the body was read and discarded: the connection carries the next request.
  const next = nextAnswer(socket);
  await write(socket, `GET /v2/ HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
  assert.equal((await next).status, 200);
});
