// Sends bytes of an open file as the body of an answer whose headers the route has set, without
// a file stream: the answer is taken over from fastify (reply.hijack), the head written with the
// reply's headers, and the file read into two reused buffers (buffer-pool.ts) in turn, each
// written to the socket and read into again only once that write has gone out. At most two
// buffers per answer, no garbage per read. A client that goes away stops the reads; a read error
// destroys the answer (its Content-Length then tells the client it was cut short).
import type { FastifyReply } from 'fastify';
import type { FileHandle } from 'node:fs/promises';
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { BufferLease } from './buffer-pool.js';

/** Bytes of a file to send: `length` bytes from `start`. */
export interface FileSpan {
  handle: FileHandle;
  start: number;
  length: number;
}

/** A write of one buffer: `done` settles when it called back, `ok` when the socket took it. */
interface Write {
  buf: Buffer;
  done: Promise<void>;
  ok: boolean;
}

/**
 * Writes the reply's status and headers, then the span's bytes, and ends the answer. Resolves
 * true when every byte was written, false when the client went away or reading failed (the
 * answer is then destroyed); never rejects. `closing()` adds `Connection: close` as the app's
 * onSend hook would (hijacked answers skip onSend; onResponse hooks still run on finish).
 */
export async function sendFileSpan(reply: FastifyReply, span: FileSpan, closing = false): Promise<boolean> {
  const res = reply.raw;
  reply.hijack();
  const headers = reply.getHeaders() as OutgoingHttpHeaders;
  if (closing) headers.connection = 'close';
  res.writeHead(reply.statusCode, headers);
  const lease = BufferLease.start(span.length);
  const gone = new Promise<void>((resolve) => res.once('close', resolve));
  const writes: Write[] = [];
  let failed = false;
  try {
    let pos = span.start;
    let left = span.length;
    while (left > 0) {
      // Reuse the buffer of the write before last once it went out; take a new one before that.
      let buf: Buffer;
      if (writes.length < 2) {
        buf = lease.take();
      } else {
        const oldest = writes.shift()!;
        await Promise.race([oldest.done, gone]);
        if (!oldest.ok || res.destroyed) {
          writes.unshift(oldest);
          failed = true;
          break;
        }
        buf = oldest.buf;
      }
      if (res.destroyed) {
        lease.release(buf);
        failed = true;
        break;
      }
      const { bytesRead } = await span.handle.read(buf, 0, Math.min(buf.length, left), pos);
      if (bytesRead === 0) throw new Error(`file ended ${left} bytes early`);
      writes.push(write(res, buf, bytesRead));
      pos += bytesRead;
      left -= bytesRead;
    }
    if (!failed) {
      await Promise.race([Promise.all(writes.map((w) => w.done)), gone]);
      failed = res.destroyed || writes.some((w) => !w.ok);
    }
    if (!failed) res.end();
  } catch (err) {
    failed = true;
    reply.log.warn({ err }, 'blob read failed with headers already sent: answer cut short');
  } finally {
    if (failed && !res.destroyed) res.destroy();
    // A buffer whose write has not called back (or failed) may still be queued: let it go.
    for (const w of writes) if (w.ok) lease.release(w.buf);
    lease.end();
  }
  return !failed;
}

function write(res: ServerResponse, buf: Buffer, length: number): Write {
  const w: Write = { buf, done: Promise.resolve(), ok: false };
  w.done = new Promise<void>((resolve) => {
    res.write(buf.subarray(0, length), (err) => {
      w.ok = !err;
      resolve();
    });
  });
  return w;
}
