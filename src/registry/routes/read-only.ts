// The write half of the API for a read-only port (the pull-through cache): every write
// answers UNSUPPORTED instead of being routed; and deletes, on a registry started without them.
import type { FastifyInstance } from 'fastify';
import { RegistryError } from '../../oci/index.js';

/** Registers UNSUPPORTED answers for pushes and deletes. */
export function readOnlyRoutes(app: FastifyInstance): void {
  const refuse = async () => {
    throw new RegistryError('UNSUPPORTED', 'this port is a read-only pull-through cache; push to the registry port');
  };
  app.post('/v2/:name/blobs/uploads/', refuse);
  app.route({ method: ['GET', 'PATCH', 'PUT', 'DELETE'], url: '/v2/:name/blobs/uploads/:id', handler: refuse });
  app.put('/v2/:name/manifests/:reference', refuse);
  app.delete('/v2/:name/manifests/:reference', refuse);
  app.delete('/v2/:name/blobs/:digest', refuse);
}

/**
 * Registers UNSUPPORTED answers for manifest, tag and blob deletes on a writable port started
 * without deletion (distribution's default: 405 UNSUPPORTED, whether or not the target exists).
 */
export function deletesRefusedRoutes(app: FastifyInstance): void {
  const refuse = async () => {
    throw new RegistryError('UNSUPPORTED', 'deletion is disabled on this registry (start it with --delete, or storage.delete.enabled: true)');
  };
  app.delete('/v2/:name/manifests/:reference', refuse);
  app.delete('/v2/:name/blobs/:digest', refuse);
}
