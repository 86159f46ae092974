// The one place that turns a thrown error into an HTTP answer: OCI errors keep their code,
// storage's domain errors are mapped to theirs, framework errors keep their 4xx status, and
// anything else is a 500 UNKNOWN without internals. Bodies are the OCI error envelope.
import type { IncomingMessage } from 'node:http';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../oci/index.js';
import {
  BlobNotFoundError,
  DigestMismatchError,
  SizeMismatchError,
  StorageLockedError,
  StorageUnavailableError,
  TooLargeError,
  UploadBusyError,
  UploadNotFoundError,
  UploadRangeError,
} from '../storage/index.js';

/** Errors a client causes by going away; nothing to answer and nothing to report. */
export function isClientAbort(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNABORTED' || (err as Error)?.message === 'aborted';
}

/** Maps any error to the RegistryError that answers it. */
export function toRegistryError(err: unknown): RegistryError {
  if (err instanceof RegistryError) return err;
  if (err instanceof BlobNotFoundError) return new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: err.digest } });
  if (err instanceof DigestMismatchError) return new RegistryError('DIGEST_INVALID', undefined, { detail: { expected: err.expected, actual: err.actual } });
  if (err instanceof SizeMismatchError) return new RegistryError('SIZE_INVALID', undefined, { detail: { expected: err.expected, actual: err.actual } });
  if (err instanceof UploadNotFoundError) return new RegistryError('BLOB_UPLOAD_UNKNOWN');
  if (err instanceof UploadRangeError) return new RegistryError('RANGE_INVALID', 'chunk out of order', { detail: { expectedStart: err.expectedStart, start: err.start } });
  if (err instanceof UploadBusyError) return new RegistryError('RANGE_INVALID', 'upload is busy with another chunk');
  if (err instanceof TooLargeError) return new RegistryError('SIZE_INVALID', err.message, { status: 413, detail: { limit: err.limit } });
  if (err instanceof StorageLockedError) return new RegistryError('UNAVAILABLE', err.message);
  // A shared storage (bucket) that is unreachable, failing, refusing the credentials or missing:
  // the client may retry later; the message names the storage and what failed (no secrets).
  if (err instanceof StorageUnavailableError) return new RegistryError('UNAVAILABLE', err.message, { cause: err });
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  if (errno === 'ENOSPC' || errno === 'EDQUOT') return new RegistryError('UNAVAILABLE', 'storage is full', { status: 507 });
  const fe = err as FastifyError;
  if (typeof fe?.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new RegistryError('UNSUPPORTED', fe.message, { status: fe.statusCode });
  }
  return new RegistryError('UNKNOWN', undefined, { cause: err });
}

/**
 * How long the rest of a request body refused part-way is read (and discarded) after the answer
 * before the connection is dropped. Closing as soon as the answer is out fails the write of a
 * client still sending (it gets a FIN, or a reset), and undici, for one, then reports that error
 * instead of the answer it already received.
 */
const DRAIN_MS = 2000;

/**
 * Writes the envelope for `err` (headers only for HEAD). An error that stopped a request body
 * part-way (a size limit, a full disk) leaves the rest of it on the connection: it is read and
 * discarded, and the connection carries the next request once the body ended, or is dropped if
 * the body goes on past DRAIN_MS. (A body never read at all is drained by node.)
 */
export function sendError(err: RegistryError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  request.failure = err.message;
  reply.code(err.status).headers(err.headers);
  if (!request.raw.complete && request.raw.readableDidRead) drainBriefly(request.raw);
  if (request.method === 'HEAD') return reply.send();
  return reply.type('application/json').send(err.toEnvelope());
}

/** Discards the rest of `request`'s body; drops the connection unless the body ends within DRAIN_MS. */
function drainBriefly(request: IncomingMessage): void {
  // request.destroy() drops the connection of a real request and ends app.inject()'s stand-in,
  // whose socket has no destroy().
  const timer = setTimeout(() => request.destroy(), DRAIN_MS);
  timer.unref();
  request.once('end', () => clearTimeout(timer));
  request.once('close', () => clearTimeout(timer));
  request.resume();
}

/** fastify error handler: maps, logs what is ours to fix, answers with the envelope. */
export function errorHandler(this: unknown, err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply | void {
  if (isClientAbort(err) || reply.raw.destroyed || request.raw.socket?.destroyed) {
    request.log.debug({ err }, 'client went away');
    if (!reply.sent) reply.raw.destroy();
    return;
  }
  const re = toRegistryError(err);
  // A 500 is a bug: its stack is what to fix. Other 5xx (an upstream or the cache service
  // failing, a full disk) are conditions: the request log line carries the message, the
  // upstream's breaker logs the outage once, and the stack is a debug detail.
  if (re.status === 500) request.log.error({ err }, 'request failed');
  else if (re.status === 507) request.log.warn({ url: request.url }, re.message);
  else if (re.status > 500) request.log.debug({ err }, 'request failed');
  if (reply.sent || reply.raw.headersSent) {
    reply.raw.destroy();
    return;
  }
  return sendError(re, request, reply);
}
