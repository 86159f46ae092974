// Blob reads and deletes: GET and HEAD (with single byte ranges) and DELETE. A blob the store
// holds as a file is sent from reused buffers (send-file.ts); one still being fetched from an
// upstream, as the stream its fill gives.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RouteContext, WriteContext } from '../route-context.js';
import { RegistryError } from '../../oci/index.js';
import { digestParam, parseRange } from '../http-util.js';
import { sendFileSpan } from '../send-file.js';

/** Registers blob GET and HEAD. */
export function blobReadRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const unknown = (digest: string) => new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
  app.head('/v2/:name/blobs/:digest', async (request: FastifyRequest, reply: FastifyReply) => {
    const digest = digestParam((request.params as { digest: string }).digest);
    const size = await ctx.backend.statBlob(ctx.name(request), digest);
    if (size === undefined) throw unknown(digest.value);
    return reply.header('docker-content-digest', digest.value).header('accept-ranges', 'bytes').type('application/octet-stream').header('content-length', size).send();
  });
  app.get('/v2/:name/blobs/:digest', async (request: FastifyRequest, reply: FastifyReply) => {
    const digest = digestParam((request.params as { digest: string }).digest);
    const blob = await ctx.backend.openBlob(ctx.name(request), digest);
    if (!blob) throw unknown(digest.value);
    request.servedFrom = blob.servedFrom;
    // The bucket serves the bytes itself (distribution's storage redirect): 307, as distribution answers.
    if (blob.redirect && request.method === 'GET') return reply.code(307).header('location', await blob.redirect()).send();
    reply.header('docker-content-digest', digest.value).type('application/octet-stream');
    if (blob.size === undefined) return reply.send(blob.read());
    reply.header('accept-ranges', 'bytes');
    const range = parseRange(request.headers.range, blob.size);
    if (range) {
      reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${blob.size}`);
      reply.header('content-length', range.end - range.start + 1);
    } else {
      reply.header('content-length', blob.size);
    }
    if (blob.size === 0) return reply.send('');
    if (!blob.openFile) return reply.send(blob.read(range));
    const file = await blob.openFile(range);
    if (!file) throw unknown(digest.value);
    let served = false;
    try {
      const start = range?.start ?? 0;
      served = await sendFileSpan(reply, { handle: file.handle, start, length: (range?.end ?? blob.size - 1) - start + 1 }, ctx.closing?.());
    } finally {
      await file.close(served).catch((err: unknown) => request.log.warn({ err }, 'closing a served blob failed'));
    }
    return reply;
  });
}

/** Registers blob DELETE. */
export function blobDeleteRoutes(app: FastifyInstance, ctx: WriteContext): void {
  app.delete('/v2/:name/blobs/:digest', async (request, reply) => {
    const digest = digestParam((request.params as { digest: string }).digest);
    if (!(await ctx.backend.deleteBlob(ctx.name(request), digest))) throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } });
    return reply.code(202).header('content-length', 0).send();
  });
}
