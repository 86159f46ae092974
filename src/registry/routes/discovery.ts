// Content discovery: tag listing, the repository catalog and the referrers API.
import type { FastifyInstance } from 'fastify';
import type { RouteContext } from '../route-context.js';
import { OCI_INDEX, RegistryError } from '../../oci/index.js';
import { digestParam, nameParam, paginate, pagination, query } from '../http-util.js';

/** Registers tags/list, _catalog and referrers. */
export function discoveryRoutes(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/v2/:name/tags/list', async (request, reply) => {
    const name = nameParam(request);
    const { n, last } = pagination(request);
    const tags = await ctx.backend.listTags(ctx.name(request));
    if (tags === undefined) throw new RegistryError('NAME_UNKNOWN', undefined, { detail: { name } });
    const { page, link } = paginate(tags, `/v2/${name}/tags/list`, n, last);
    if (link) reply.header('link', link);
    return reply.type('application/json').send({ name, tags: page });
  });

  app.get('/v2/_catalog', async (request, reply) => {
    const { n, last } = pagination(request);
    const { page, link } = paginate(await ctx.backend.listRepositories(), '/v2/_catalog', n, last);
    if (link) reply.header('link', link);
    return reply.type('application/json').send({ repositories: page });
  });

  app.get('/v2/:name/referrers/:digest', async (request, reply) => {
    const name = ctx.name(request);
    const subject = digestParam((request.params as { digest: string }).digest);
    const artifactType = query(request).artifactType;
    const manifests = await ctx.backend.listReferrers(name, subject, artifactType || undefined);
    if (artifactType) reply.header('oci-filters-applied', 'artifactType');
    // A Buffer body keeps fastify from appending a charset: the spec fixes this header exactly.
    return reply.type(OCI_INDEX).send(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests })));
  });
}
