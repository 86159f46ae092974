// Builds the fastify application for one port (it does not listen): the registry port is
// writable, the cache port is read-only. Bodies are never parsed by the framework: every
// route reads the raw stream itself, with its own limits.
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { RegistryBackend, RegistryReader } from '../storage/index.js';
import { routeContext, type NameResolver } from './route-context.js';
import { RegistryError } from '../oci/index.js';
import { rewriteUrl } from './url-rewrite.js';
import { errorHandler, sendError, toRegistryError } from './error-handler.js';
import type { BasicAuth } from './auth.js';
import { baseRoutes } from './routes/base.js';
import { blobDeleteRoutes, blobReadRoutes } from './routes/blobs.js';
import { uploadRoutes } from './routes/uploads.js';
import { manifestDeleteRoutes, manifestReadRoutes, manifestWriteRoutes } from './routes/manifests.js';
import { discoveryRoutes } from './routes/discovery.js';
import { deletesRefusedRoutes, readOnlyRoutes } from './routes/read-only.js';
import { guardSlowBodies, httpServerOptions, resolveTimeouts, type ClientTimeouts } from './client-timeouts.js';
import { API_VERSION, answerUnroutable, clientErrorHandler, requireHost } from './protocol-errors.js';

/** Options of {@link buildRegistryApp}. */
export type RegistryAppOptions = CommonOptions &
  (
    /** The registry port; `deleteEnabled: false` answers deletes UNSUPPORTED (default: enabled). */
    | { writable: true; backend: RegistryBackend; deleteEnabled?: boolean }
    /** The pull-through cache port: writes answer UNSUPPORTED. */
    | { writable: false; backend: RegistryReader }
  );

interface CommonOptions {
  /** Maps request names to store names (the cache port's upstream routing). */
  resolveName?: NameResolver;
  auth?: BasicAuth;
  logger?: FastifyServerOptions['logger'];
  https?: { cert: Buffer; key: Buffer };
  /** Extra routes (statistics endpoints of the cache port). */
  extraRoutes?: (app: FastifyInstance) => void;
  /** Limits on slow and idle clients (defaults: DEFAULT_CLIENT_TIMEOUTS). */
  timeouts?: ClientTimeouts;
}

/** The fastify application serving the OCI distribution API over `backend`. */
export function buildRegistryApp(opts: RegistryAppOptions): FastifyInstance {
  const timeouts = resolveTimeouts(opts.timeouts);
  const serverOptions = httpServerOptions(timeouts);
  const app = Fastify({
    logger: opts.logger ?? false,
    logController: new LogController({ disableRequestLogging: true }),
    rewriteUrl: (req) => rewriteUrl(req.url ?? '/'),
    routerOptions: { maxParamLength: 4096, ignoreTrailingSlash: true },
    exposeHeadRoutes: false,
    forceCloseConnections: 'idle',
    keepAliveTimeout: 30_000,
    // A connection with no traffic either way; not a bound on a transfer's duration.
    connectionTimeout: timeouts.idleMs,
    requestTimeout: 0,
    // A malformed %-encoding or an over-long path parameter is answered before any hook
    // runs: give it the envelope and the version header like every other answer.
    frameworkErrors: (err, request, reply) => {
      reply.header('docker-distribution-api-version', API_VERSION);
      sendError(toRegistryError(err), request, reply);
    },
    // What node's HTTP parser refuses, and a missing Host (a hook below), get the envelope too.
    clientErrorHandler,
    // https.createServer takes http.createServer's options in the same object.
    ...(opts.https ? { https: { ...opts.https, ...serverOptions, requireHostHeader: false } } : { http: { ...serverOptions, requireHostHeader: false } }),
  }) as unknown as FastifyInstance;
  guardSlowBodies(app.server, timeouts, (req) =>
    app.log.warn({ method: req.method, url: req.url, remoteAddress: req.socket.remoteAddress }, 'request body stalled: connection closed'),
  );

  answerUnroutable(app.server);

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => sendError(new RegistryError('UNSUPPORTED', 'no such endpoint', { status: 404 }), request, reply));
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('docker-distribution-api-version', API_VERSION);
  });
  app.addHook('onRequest', requireHost);
  if (opts.auth) app.addHook('onRequest', opts.auth.hook);
  const closing = endConnectionsWhenClosing(app);
  opts.extraRoutes?.(app);

  const ctx = { ...routeContext<RegistryReader>(opts.backend, opts.resolveName), closing };
  baseRoutes(app);
  blobReadRoutes(app, ctx);
  manifestReadRoutes(app, ctx);
  discoveryRoutes(app, ctx);
  if (opts.writable) {
    const writeCtx = routeContext(opts.backend, opts.resolveName);
    uploadRoutes(app, writeCtx);
    manifestWriteRoutes(app, writeCtx);
    if (opts.deleteEnabled === false) {
      deletesRefusedRoutes(app);
    } else {
      manifestDeleteRoutes(app, writeCtx);
      blobDeleteRoutes(app, writeCtx);
    }
  } else {
    readOnlyRoutes(app);
  }
  return app;
}

/**
 * While the app closes, answers to requests still in flight end their connection: close()
 * only drops connections idle at that moment, and a keep-alive client (docker) would hold
 * the drain until its idle timeout. Returns whether the app is closing (for answers that
 * skip onSend: send-file.ts).
 */
function endConnectionsWhenClosing(app: FastifyInstance): () => boolean {
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    if (closing && !reply.raw.headersSent) reply.header('connection', 'close');
    return payload;
  });
  app.addHook('onResponse', async (request) => {
    if (closing) request.raw.socket?.end();
  });
  return () => closing;
}
