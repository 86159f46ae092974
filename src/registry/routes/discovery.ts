// Content discovery: tag listing, the repository catalog and the referrers API (paginated:
// a long list of referrers is split into pages that a client reads as one index each).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RouteContext } from '../route-context.js';
import { OCI_INDEX, RegistryError, type Descriptor } from '../../oci/index.js';
import { MAX_MANIFEST_SIZE } from '../../storage/index.js';
import { digestParam, nameParam, paginate, pagination, query } from '../http-util.js';

/** Options of {@link discoveryRoutes}. */
export interface DiscoveryOptions {
  /** Most referrers on one page (a client's `n` may ask for fewer); default: as many as fit in 4 MiB. */
  referrersPageSize?: number;
}

/** Registers tags/list, _catalog and referrers (paginated with `n`, `last` and a Link header, as tags are). */
export function discoveryRoutes(app: FastifyInstance, ctx: RouteContext, opts: DiscoveryOptions = {}): void {
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
    const q = query(request);
    const artifactType = q.artifactType || undefined;
    const { n, last } = pagination(request);
    const all = await ctx.backend.listReferrers(name, subject, artifactType);
    const limit = n === undefined ? opts.referrersPageSize : Math.min(n, opts.referrersPageSize ?? n);
    const { page, last: next } = referrersPage(all, limit, last);
    if (artifactType) reply.header('oci-filters-applied', 'artifactType');
    if (next !== undefined) reply.header('link', `<${nextPageUrl(request, subject.value, next)}>; rel="next"`);
    // A Buffer body keeps fastify from appending a charset: the spec fixes this header exactly.
    return reply.type(OCI_INDEX).send(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: page })));
  });
}

/** Bytes of descriptors on one referrers page: what clients read of an index (4 MiB), less the envelope. */
const REFERRERS_PAGE_BYTES = MAX_MANIFEST_SIZE - 1024;

/**
 * One page of referrers, in digest order, after digest `after`: at most `limit` descriptors and
 * {@link REFERRERS_PAGE_BYTES} of them; `last` is the page's last digest when more follow.
 */
function referrersPage(all: Descriptor[], limit: number | undefined, after: string | undefined): { page: Descriptor[]; last?: string } {
  const sorted = [...all].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  const rest = after === undefined ? sorted : sorted.filter((d) => d.digest > after);
  const page: Descriptor[] = [];
  let bytes = 0;
  for (const d of rest) {
    bytes += Buffer.byteLength(JSON.stringify(d)) + 1;
    if (page.length === limit || (page.length > 0 && bytes > REFERRERS_PAGE_BYTES)) break;
    page.push(d);
  }
  return page.length > 0 && page.length < rest.length ? { page, last: page[page.length - 1]!.digest } : { page };
}

/** This request's URL for the page after `last`: its name as sent and every query parameter kept (`ns`, `artifactType`, `n`). */
function nextPageUrl(request: FastifyRequest, subject: string, last: string): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query(request))) if (k !== 'last' && v !== undefined) params.set(k, v);
  params.set('last', last);
  return `/v2/${nameParam(request)}/referrers/${subject}?${params.toString()}`;
}
