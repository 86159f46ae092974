// Blob reads and deletes: GET and HEAD (with single byte ranges) and DELETE.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RegistryBackend } from '../../storage/index.js';
import { RegistryError } from '../../oci/index.js';
import { digestParam, nameParam, parseRange } from '../http-util.js';

/** Registers blob GET and HEAD. */
export function blobReadRoutes(app: FastifyInstance, backend: RegistryBackend): void {
  const serve = async (request: FastifyRequest, reply: FastifyReply) => {
    const name = nameParam(request);
    const digest = digestParam((request.params as { digest: string }).digest);
    const size = await backend.statBlob(name, digest);
    if (size === undefined) throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } });
    reply.header('docker-content-digest', digest.value).header('accept-ranges', 'bytes').type('application/octet-stream');
    const range = parseRange(request.headers.range, size);
    if (range) {
      reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`);
      reply.header('content-length', range.end - range.start + 1);
    } else {
      reply.header('content-length', size);
    }
    if (request.method === 'HEAD') return reply.send();
    if (size === 0) return reply.send('');
    return reply.send(await backend.openBlob(name, digest, range));
  };
  app.get('/v2/:name/blobs/:digest', serve);
  app.head('/v2/:name/blobs/:digest', serve);
}

/** Registers blob DELETE. */
export function blobDeleteRoutes(app: FastifyInstance, backend: RegistryBackend): void {
  app.delete('/v2/:name/blobs/:digest', async (request, reply) => {
    const name = nameParam(request);
    const digest = digestParam((request.params as { digest: string }).digest);
    if (!(await backend.deleteBlob(name, digest))) throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest: digest.value } });
    return reply.code(202).header('content-length', 0).send();
  });
}
