// Answers to requests that never reach a route because Node's HTTP server refuses them first:
// malformed HTTP (a NUL in the path, an impossible Content-Length, broken chunking), headers over
// the size limit, an Expect other than 100-continue, CONNECT, and an HTTP/1.1 request without a
// Host header. Node would answer these itself with bare statuses (or drop the connection); here
// they get the OCI error envelope and the API version header like every other answer, and the
// connection is closed (the request's framing cannot be trusted).
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../oci/index.js';

/** The API version header every answer carries. */
export const API_VERSION = 'registry/2.0';

/** The whole HTTP/1.1 response for `err`, written straight to a socket. */
export function rawErrorResponse(err: RegistryError): string {
  const body = JSON.stringify(err.toEnvelope());
  const headers: Record<string, string | number> = {
    ...err.headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'docker-distribution-api-version': API_VERSION,
    connection: 'close',
  };
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  return `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? ''}\r\n${lines.join('\r\n')}\r\n\r\n${body}`;
}

/** The error a request Node's parser refused is answered with. */
export function clientErrorFor(code: string | undefined): RegistryError {
  if (code === 'HPE_HEADER_OVERFLOW') return new RegistryError('SIZE_INVALID', 'request headers exceed the size limit', { status: 431 });
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return new RegistryError('UNSUPPORTED', 'request timed out', { status: 408 });
  return new RegistryError('UNSUPPORTED', 'malformed HTTP request', { status: 400 });
}

/** fastify's clientErrorHandler: the envelope instead of fastify's own JSON, then close. */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  // As Node's default: write only when no response on this connection has started.
  const pending = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
  if (socket.writable && !pending?.headersSent) socket.write(rawErrorResponse(clientErrorFor(err.code)));
  socket.destroy(err);
}

/** Listeners for what Node's server answers without emitting a request. */
export function answerUnroutable(server: { on(event: string, listener: (...args: never[]) => void): unknown }): void {
  // An Expect other than 100-continue: Node would answer a bare 417.
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
    const err = new RegistryError('UNSUPPORTED', 'unsupported Expect header', { status: 417 });
    res.writeHead(err.status, { 'content-type': 'application/json', 'docker-distribution-api-version': API_VERSION, connection: 'close' });
    res.end(JSON.stringify(err.toEnvelope()));
  });
  // CONNECT: this is no proxy. Node would drop the connection without a word.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => {});
    socket.end(rawErrorResponse(new RegistryError('UNSUPPORTED', 'CONNECT is not supported', { status: 405 })));
  });
}

/** onRequest hook: an HTTP/1.1 request without a Host header is a 400 (RFC 9112, section 3.2). */
export async function requireHost(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
  if (request.raw.httpVersion === '1.1' && request.headers.host === undefined) {
    throw new RegistryError('UNSUPPORTED', 'Host header missing', { status: 400 });
  }
}
