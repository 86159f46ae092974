// Manifests by tag or digest: GET and HEAD serve the stored bytes with their own media
// type; PUT stores them byte-exact after validation; DELETE removes a manifest or a tag.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { MAX_MANIFEST_SIZE } from '../../storage/index.js';
import type { RouteContext, WriteContext } from '../route-context.js';
import { RegistryError, parseReference } from '../../oci/index.js';
import { readBody } from '../http-util.js';

function referenceParam(request: FastifyRequest): string {
  return (request.params as { reference: string }).reference;
}

/** Registers manifest GET and HEAD. */
export function manifestReadRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const serve = async (request: FastifyRequest, reply: FastifyReply) => {
    const name = ctx.name(request);
    const reference = parseReference(referenceParam(request), 'read');
    const head = request.method === 'HEAD';
    const m = await ctx.backend.getManifest(name, reference, !head);
    if (!m) throw new RegistryError('MANIFEST_UNKNOWN', undefined, { detail: { name, reference: referenceParam(request) } });
    reply
      .type(m.mediaType)
      .header('docker-content-digest', m.digest.value)
      .header('etag', `"${m.digest.value}"`)
      .header('content-length', m.size);
    return reply.send(head ? undefined : m.body);
  };
  app.get('/v2/:name/manifests/:reference', serve);
  app.head('/v2/:name/manifests/:reference', serve);
}

/** Registers manifest PUT. */
export function manifestWriteRoutes(app: FastifyInstance, ctx: WriteContext): void {
  app.put('/v2/:name/manifests/:reference', async (request, reply) => {
    const name = ctx.name(request);
    const reference = parseReference(referenceParam(request), 'write');
    const body = await readBody(request, MAX_MANIFEST_SIZE);
    const result = await ctx.backend.putManifest(name, reference, body, request.headers['content-type']);
    reply
      .code(201)
      .header('location', `/v2/${name}/manifests/${result.digest.value}`)
      .header('docker-content-digest', result.digest.value)
      .header('content-length', 0);
    if (result.subject) reply.header('oci-subject', result.subject);
    return reply.send();
  });
}

/** Registers manifest DELETE (of a manifest by digest, or of a tag). */
export function manifestDeleteRoutes(app: FastifyInstance, ctx: WriteContext): void {
  app.delete('/v2/:name/manifests/:reference', async (request, reply) => {
    const name = ctx.name(request);
    const reference = parseReference(referenceParam(request), 'read');
    if (!(await ctx.backend.deleteManifest(name, reference))) {
      throw new RegistryError('MANIFEST_UNKNOWN', undefined, { detail: { name, reference: referenceParam(request) } });
    }
    return reply.code(202).header('content-length', 0).send();
  });
}
