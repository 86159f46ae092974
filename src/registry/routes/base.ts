// GET /v2/: the API version check every client starts with.
import type { FastifyInstance } from 'fastify';

/** Registers the base endpoint. */
export function baseRoutes(app: FastifyInstance): void {
  const handler = async (_req: unknown, reply: import('fastify').FastifyReply) => reply.type('application/json').send('{}');
  app.get('/v2/', handler);
  app.head('/v2/', handler);
}
