// The request log: one line per answered request at `info` (method, path, status, bytes, ms,
// and on the cache port where the answer came from), in place of fastify's two lines per
// request. It is fastify's own log controller with only its "request completed" call changed:
// no extra hook runs per request, and below `info` (e.g. --log-level warn) nothing is built.
// The route sets `request.servedFrom` from what the cache answered (disk, actions-cache,
// upstream, joined, stale); the error handler sets `request.failure` to the error's message.
import { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { ServedFrom } from '../storage/index.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Where the pull-through cache got this request's answer (the request log's `source`). */
    servedFrom: ServedFrom | undefined;
    /** The message of the error this request was answered with (the request log's `error`). */
    failure: string | undefined;
  }
}

const INFO_AND_BELOW = new Set(['info', 'debug', 'trace']);

/** fastify's log controller with its per-request lines replaced by {@link logRequest}'s one line. */
export class RequestLogController extends LogController {
  /** `enabled`: the logger writes `info` (see {@link enabledAt}); else the log stays quiet. */
  constructor(private readonly enabled: boolean) {
    super({ disableRequestLogging: true });
  }

  /** True when a logger at `level` writes the request log. */
  static enabledAt(level: string | undefined): boolean {
    return INFO_AND_BELOW.has(level ?? 'info');
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.enabled) logRequest(request, reply, error);
  }
}

/** Declares the fields the request log reads (undefined unless set: same shape for every request). */
export function decorateRequestLog(app: FastifyInstance): void {
  app.decorateRequest('servedFrom', undefined);
  app.decorateRequest('failure', undefined);
}

/** The body bytes of the answer, as its Content-Length says (HEAD: 0; unknown: undefined). */
function bodyBytes(request: FastifyRequest, reply: FastifyReply): number | undefined {
  if (request.method === 'HEAD' || reply.statusCode === 204 || reply.statusCode === 304) return 0;
  // fastify hands its headers to writeHead (the raw response does not keep them): ask the reply.
  const length = reply.getHeader('content-length') ?? reply.raw.getHeader('content-length');
  const n = typeof length === 'string' ? Number(length) : typeof length === 'number' ? length : NaN;
  return Number.isFinite(n) ? n : undefined;
}

/** Writes the request's line. */
export function logRequest(request: FastifyRequest, reply: FastifyReply, error?: Error | null): void {
  const line: Record<string, unknown> = {
    method: request.method,
    url: request.url,
    status: reply.statusCode,
    bytes: bodyBytes(request, reply),
    ms: Math.round(reply.elapsedTime * 10) / 10,
  };
  if (request.servedFrom !== undefined) line.source = request.servedFrom;
  const failure = request.failure ?? error?.message;
  if (failure !== undefined) line.error = failure;
  request.log.info(line, 'request');
}
