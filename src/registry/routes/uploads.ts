// Blob uploads: monolithic (POST ?digest=), POST then PUT, chunked PATCH with
// Content-Range, upload status, cancel, and cross-repository mount.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { UploadSession } from '../../storage/index.js';
import type { WriteContext } from '../route-context.js';
import { UploadRangeError } from '../../storage/index.js';
import { RegistryError, assertName, isValidName } from '../../oci/index.js';
import { bodyStream, contentLength, digestParam, hasNoBody, parseContentRange, query } from '../http-util.js';

function uploadLocation(name: string, id: string): string {
  return `/v2/${name}/blobs/uploads/${id}`;
}

/** Headers describing where an upload stands. */
function statusHeaders(reply: FastifyReply, name: string, session: UploadSession): FastifyReply {
  return reply
    .header('location', uploadLocation(name, session.id))
    .header('range', `0-${Math.max(0, session.size - 1)}`)
    .header('docker-upload-uuid', session.id)
    .header('content-length', 0);
}

function created(reply: FastifyReply, name: string, digest: string): FastifyReply {
  return reply.code(201).header('location', `/v2/${name}/blobs/${digest}`).header('docker-content-digest', digest).header('content-length', 0).send();
}

/** The 416 for a chunk that does not continue the upload, saying where it stands so the client can resume. */
function outOfOrder(name: string, id: string, err: UploadRangeError): RegistryError {
  return new RegistryError('RANGE_INVALID', 'chunk out of order', {
    detail: { expectedStart: err.expectedStart, start: err.start },
    headers: { location: uploadLocation(name, id), range: `0-${Math.max(0, err.expectedStart - 1)}`, 'docker-upload-uuid': id },
  });
}

/** Registers the upload routes. */
export function uploadRoutes(app: FastifyInstance, ctx: WriteContext): void {
  const { backend } = ctx;
  const uploads = backend.uploads;

  const sessionOf = async (request: FastifyRequest): Promise<{ name: string; session: UploadSession }> => {
    const name = ctx.name(request);
    const session = await uploads.get(name, (request.params as { id: string }).id);
    return { name, session };
  };

  app.post('/v2/:name/blobs/uploads/', async (request, reply) => {
    const name = ctx.name(request);
    const q = query(request);
    if (q.mount !== undefined) {
      const digest = digestParam(q.mount);
      const from = q.from !== undefined && isValidName(q.from) ? q.from : undefined;
      if (q.from !== undefined && from === undefined) assertName(q.from);
      // A failed mount falls back to a new upload session, as the spec asks.
      if (await backend.mountBlob(name, digest, from)) return created(reply, name, digest.value);
    } else if (q.digest !== undefined) {
      const digest = digestParam(q.digest);
      await backend.putBlob(name, digest, bodyStream(request), contentLength(request));
      return created(reply, name, digest.value);
    }
    const session = await uploads.create(name);
    return statusHeaders(reply.code(202), name, session).send();
  });

  app.patch('/v2/:name/blobs/uploads/:id', async (request, reply) => {
    const { name, session } = await sessionOf(request);
    const range = parseContentRange(request.headers['content-range'] as string | undefined);
    const length = contentLength(request);
    if (range && length !== undefined && range.end - range.start + 1 !== length) {
      throw new RegistryError('RANGE_INVALID', 'Content-Range does not match Content-Length');
    }
    try {
      session.size = await uploads.append(session, bodyStream(request), range?.start);
    } catch (err) {
      if (err instanceof UploadRangeError) throw outOfOrder(name, session.id, err);
      throw err;
    }
    return statusHeaders(reply.code(202), name, session).send();
  });

  app.put('/v2/:name/blobs/uploads/:id', async (request, reply) => {
    const { name, session } = await sessionOf(request);
    const digest = digestParam(query(request).digest);
    const range = parseContentRange(request.headers['content-range'] as string | undefined);
    if (range && range.start !== session.size) throw outOfOrder(name, session.id, new UploadRangeError(session.size, range.start));
    await backend.completeUpload(name, session, digest, hasNoBody(request) ? undefined : bodyStream(request));
    return created(reply, name, digest.value);
  });

  app.get('/v2/:name/blobs/uploads/:id', async (request, reply) => {
    const { name, session } = await sessionOf(request);
    return statusHeaders(reply.code(204), name, session).send();
  });

  app.delete('/v2/:name/blobs/uploads/:id', async (request, reply) => {
    const { session } = await sessionOf(request);
    await uploads.cancel(session);
    return reply.code(204).send();
  });
}
