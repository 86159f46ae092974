// The server: one storage root, the registry port (writable) and the cache port (read-only)
// over it, started and stopped together.
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { openStorage, type Storage } from '../storage/index.js';
import { buildRegistryApp, BasicAuth } from '../registry/index.js';
import { parseAddress, urlOf } from './address.js';

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** HOST:PORT of the registry. Default 127.0.0.1:5000. */
  registryAddr?: string;
  /** HOST:PORT of the pull-through cache. Default 127.0.0.1:5001. */
  cacheAddr?: string;
  /** Storage root directory. */
  storage: string;
  /** htpasswd file enabling basic auth on both ports. */
  htpasswd?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** pino level: fatal, error, warn, info, debug, trace or silent. Default info. */
  logLevel?: string;
}

/** A started server. */
export interface RunningServer {
  registryUrl: string;
  cacheUrl: string;
  storage: Storage;
  registryApp: FastifyInstance;
  cacheApp: FastifyInstance;
  /** Stops accepting, drains in-flight requests, releases the storage. */
  close(): Promise<void>;
}

/** A listen failure as one line naming the flag to change. */
export class ListenError extends Error {
  constructor(message: string, readonly flag: string, readonly code: string | undefined) {
    super(message);
    this.name = 'ListenError';
  }
}

async function listen(app: FastifyInstance, value: string, flag: string): Promise<AddressInfo> {
  const { host, port } = parseAddress(value, flag);
  try {
    await app.listen({ host, port });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new ListenError(`${host}:${port} is already in use; choose another with ${flag}`, flag, code);
    if (code === 'EADDRNOTAVAIL' || code === 'EACCES') throw new ListenError(`cannot listen on ${host}:${port} (${code}); change ${flag}`, flag, code);
    throw err;
  }
  return app.server.address() as AddressInfo;
}

/** Opens the storage and starts both ports. */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const storage = await openStorage(opts.storage);
  const apps: FastifyInstance[] = [];
  try {
    const auth = opts.htpasswd ? BasicAuth.fromFile(opts.htpasswd) : undefined;
    const https = opts.tlsCert && opts.tlsKey ? { cert: await readFile(opts.tlsCert), key: await readFile(opts.tlsKey) } : undefined;
    const logger = { level: opts.logLevel ?? 'info' };
    const common = { ...(auth ? { auth } : {}), ...(https ? { https } : {}), logger };
    const registryApp = buildRegistryApp({ backend: storage.registry, writable: true, ...common });
    apps.push(registryApp);
    const cacheApp = buildRegistryApp({ backend: storage.registry, writable: false, ...common });
    apps.push(cacheApp);
    const r = await listen(registryApp, opts.registryAddr ?? '127.0.0.1:5000', '--registry-addr');
    const c = await listen(cacheApp, opts.cacheAddr ?? '127.0.0.1:5001', '--cache-addr');
    return {
      registryUrl: urlOf(r.address, r.port, !!https),
      cacheUrl: urlOf(c.address, c.port, !!https),
      storage,
      registryApp,
      cacheApp,
      close: async () => {
        await Promise.all(apps.map((a) => a.close()));
        await storage.close();
      },
    };
  } catch (err) {
    await Promise.all(apps.map((a) => a.close().catch(() => {})));
    await storage.close();
    throw err;
  }
}
