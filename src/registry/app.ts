// Builds the fastify application for one port (it does not listen): the registry port is
// writable, the cache port is read-only. Bodies are never parsed by the framework: every
// route reads the raw stream itself, with its own limits.
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { RegistryBackend } from '../storage/index.js';
import { RegistryError } from '../oci/index.js';
import { rewriteUrl } from './url-rewrite.js';
import { errorHandler, sendError } from './error-handler.js';
import type { BasicAuth } from './auth.js';
import { baseRoutes } from './routes/base.js';
import { blobDeleteRoutes, blobReadRoutes } from './routes/blobs.js';
import { uploadRoutes } from './routes/uploads.js';
import { manifestReadRoutes, manifestWriteRoutes } from './routes/manifests.js';
import { discoveryRoutes } from './routes/discovery.js';
import { readOnlyRoutes } from './routes/read-only.js';

/** Options of {@link buildRegistryApp}. */
export interface RegistryAppOptions {
  backend: RegistryBackend;
  /** False for the pull-through cache port: writes answer UNSUPPORTED. */
  writable: boolean;
  auth?: BasicAuth;
  logger?: FastifyServerOptions['logger'];
  https?: { cert: Buffer; key: Buffer };
  /** Extra routes (statistics endpoints of the cache port). */
  extraRoutes?: (app: FastifyInstance) => void;
}

/** The fastify application serving the OCI distribution API over `backend`. */
export function buildRegistryApp(opts: RegistryAppOptions): FastifyInstance {
  const app = Fastify({
    logger: opts.logger ?? false,
    logController: new LogController({ disableRequestLogging: true }),
    rewriteUrl: (req) => rewriteUrl(req.url ?? '/'),
    routerOptions: { maxParamLength: 4096, ignoreTrailingSlash: true },
    exposeHeadRoutes: false,
    forceCloseConnections: 'idle',
    keepAliveTimeout: 30_000,
    ...(opts.https ? { https: opts.https } : {}),
  }) as unknown as FastifyInstance;

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => sendError(new RegistryError('UNSUPPORTED', 'no such endpoint', { status: 404 }), request, reply));
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('docker-distribution-api-version', 'registry/2.0');
  });
  if (opts.auth) app.addHook('onRequest', opts.auth.hook);

  const { backend } = opts;
  baseRoutes(app);
  blobReadRoutes(app, backend);
  manifestReadRoutes(app, backend);
  discoveryRoutes(app, backend);
  if (opts.writable) {
    uploadRoutes(app, backend);
    manifestWriteRoutes(app, backend);
    blobDeleteRoutes(app, backend);
  } else {
    readOnlyRoutes(app);
  }
  opts.extraRoutes?.(app);
  return app;
}
