// HTTP/1.1 written byte for byte on a TCP socket, for requests no HTTP client library would
// send (NUL in the path, contradictory lengths, broken chunking), and a tolerant reader of
// whatever comes back: every response on the connection until the server closes it.
import { connect } from 'node:net';

/** One response read off the wire. */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** What a raw exchange produced. */
export interface RawExchange {
  responses: RawResponse[];
  /** Bytes after the last complete response (a cut or malformed answer). */
  trailing: Buffer;
  /** True when the server closed the connection within the timeout. */
  closed: boolean;
  /** A socket error (ECONNRESET...) if one ended the exchange. */
  error?: string;
}

/**
 * Sends `head` + CRLF CRLF (unless `unterminated`) + `body` to host:port, half-closes the
 * connection, and reads until the server closes it or `timeoutMs` passes.
 */
export function rawExchange(host: string, port: number, head: string, body: string, opts: { unterminated?: boolean; timeoutMs?: number } = {}): Promise<RawExchange> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let settled = false;
    const socket = connect({ host, port });
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const { responses, trailing } = parseResponses(Buffer.concat(chunks));
      resolve({ responses, trailing, closed, ...(error ? { error } : {}) });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 10_000);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
    });
    socket.on('close', () => finish(true));
    socket.on('connect', () => {
      const text = head === '' ? '' : opts.unterminated ? head : `${head}\r\n\r\n`;
      socket.write(Buffer.concat([Buffer.from(text, 'utf8'), Buffer.from(body, 'utf8')]));
      socket.end();
    });
  });
}

/** Splits a byte stream into HTTP/1.x responses (Content-Length, chunked, or to the end). */
export function parseResponses(data: Buffer): { responses: RawResponse[]; trailing: Buffer } {
  const responses: RawResponse[] = [];
  let rest = data;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const lines = rest.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!);
    if (!m) break;
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    let bodyStart = end + 4;
    let body: Buffer;
    const status = Number(m[1]);
    if (status === 100) {
      rest = rest.subarray(bodyStart);
      continue;
    }
    if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
      const parts: Buffer[] = [];
      let ok = false;
      for (;;) {
        const le = rest.indexOf('\r\n', bodyStart);
        if (le < 0) break;
        const size = Number.parseInt(rest.subarray(bodyStart, le).toString('latin1'), 16);
        if (!Number.isInteger(size)) break;
        if (size === 0) {
          bodyStart = le + 4;
          ok = true;
          break;
        }
        parts.push(rest.subarray(le + 2, le + 2 + size));
        bodyStart = le + 2 + size + 2;
      }
      if (!ok) break;
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const len = Number(headers['content-length']);
      if (rest.length < bodyStart + len) break;
      body = rest.subarray(bodyStart, bodyStart + len);
      bodyStart += len;
    } else {
      body = rest.subarray(bodyStart);
      bodyStart = rest.length;
    }
    responses.push({ status, headers, body: Buffer.from(body) });
    rest = rest.subarray(bodyStart);
  }
  return { responses, trailing: Buffer.from(rest) };
}
