// The setup the cache fault tests share: a fault proxy in front of a real upstream and a fresh
// pull-through cache (in-process, its own storage) behind it, all stopped after the test.
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { type RunningServer, type ServerOptions, startServer } from '../../src/server/index.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { tempDir } from '../helpers/proc.js';

/** A cache behind a fault proxy. */
export interface CacheBehindFaults {
  proxy: FaultProxy;
  server: RunningServer;
  /** The cache's storage root. */
  storage: string;
}

/** Starts a fault proxy before `upstreamUrl` and a cache (tag TTL 0) using it as docker.io. */
export async function cacheBehindFaults(t: TestContext, upstreamUrl: string, opts: Partial<ServerOptions> = {}): Promise<CacheBehindFaults> {
  const dir = await tempDir('rc-faults-');
  const proxy = await startFaultProxy(upstreamUrl);
  const storage = join(dir.path, 'storage');
  const server = await startServer({
    registryAddr: '127.0.0.1:0',
    cacheAddr: '127.0.0.1:0',
    storage,
    upstreams: [`docker.io=${proxy.url}`],
    tagTtlMs: 0,
    logLevel: 'silent',
    ...opts,
  });
  t.after(async () => {
    await server.close();
    await proxy.close();
    await dir.cleanup();
  });
  return { proxy, server, storage };
}
