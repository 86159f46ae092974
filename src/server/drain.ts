// Closing the ports with a bounded drain, as distribution's `http.draintimeout`: the listeners
// stop accepting, requests in flight get until the drain timeout to finish, and what still runs
// then has its connection closed. An upload cut off that way keeps what it received (its
// session stays on disk) and is resumed by the client after a restart; `docker stop` sends
// SIGKILL 10 s after SIGTERM, so the default drain stays well below that.
import type { Server } from 'node:http';
import type { FastifyInstance } from 'fastify';

/** How long a shutdown waits for requests in flight unless told otherwise: 5 s. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 5_000;

/** Requests in flight, and the blob uploads among them. */
export interface InFlight {
  requests: number;
  uploads: number;
}

const UPLOAD_PATH = /\/blobs\/uploads(\/|\?|$)/;

/** Counts the requests in flight on a listener from now on; returns the counter. */
export function trackRequests(server: Server): () => InFlight {
  const now: InFlight = { requests: 0, uploads: 0 };
  server.on('request', (req, res) => {
    const upload = req.method !== 'GET' && req.method !== 'HEAD' && UPLOAD_PATH.test(req.url ?? '');
    now.requests++;
    if (upload) now.uploads++;
    res.once('close', () => {
      now.requests--;
      if (upload) now.uploads--;
    });
  });
  return () => ({ ...now });
}

/** "3 requests (1 upload)", for messages. */
export function describeInFlight(n: InFlight): string {
  const requests = `${n.requests} request${n.requests === 1 ? '' : 's'}`;
  return n.uploads > 0 ? `${requests} (${n.uploads} upload${n.uploads === 1 ? '' : 's'})` : requests;
}

/**
 * Closes `apps`: stops accepting, waits up to `timeoutMs` for the requests in flight, then
 * closes the connections still open and waits for the apps' close to finish. `notice` is told
 * what it waits for and what it cut off.
 */
export async function drainApps(apps: FastifyInstance[], inFlight: () => InFlight, timeoutMs: number, notice: (message: string) => void): Promise<void> {
  const closed = Promise.all(apps.map((a) => a.close()));
  const busy = inFlight();
  if (busy.requests > 0) notice(`waiting up to ${seconds(timeoutMs)} for ${describeInFlight(busy)} in flight`);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    closed.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    const left = inFlight();
    notice(`drain timeout (${seconds(timeoutMs)}): closing the connections of ${describeInFlight(left)} still in flight${left.uploads > 0 ? '; an upload cut off can be resumed after a restart' : ''}`);
    for (const a of apps) a.server.closeAllConnections();
  }
  await closed;
}

/** Milliseconds as seconds for messages: 12 s, 0.5 s. */
export function seconds(ms: number): string {
  return `${ms >= 10_000 ? Math.round(ms / 1000) : Math.round(ms / 100) / 10} s`;
}
